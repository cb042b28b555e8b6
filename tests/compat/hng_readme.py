"""The requests of the HNG README (shared/seeds/002), copied as written, for the compat tests."""

USER_ID = "123e4567-e89b-12d3-a456-426614174000"

# "3. Send a Notification", as written in the README.
SEND = {
    "notification_type": "email",
    "user_id": "123e4567-e89b-12d3-a456-426614174000",
    "template_code": "welcome_email",
    "variables": {
        "name": "John Doe",
        "company_name": "Acme Inc",
        "verification_link": "https://example.com/verify/abc123",
    },
    "request_id": "req_unique_12345",
    "priority": 5,
    "metadata": {"campaign_id": "welcome_campaign_2025"},
}
