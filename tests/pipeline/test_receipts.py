"""Provider receipts: Twilio status callbacks and the ESPs' tracking webhooks (through anymail)
move sent messages on, verified with the provider account's own secret, forward only."""

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from delivery import pipeline
from notifications.models import Message
from tests.factories import RecipientFactory, TenantFactory
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN

from .conftest import accept, add_provider

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://alertflow.example.com"
WEBHOOK_SECRET = "receipts:Zr8pQ2wLk9"
MAILGUN_SIGNING_KEY = "key-mailgun-signing-0123456789"


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.ALERTFLOW_PUBLIC_URL = PUBLIC_URL


def path_of(provider) -> str:
    return f"/webhooks/providers/{provider.pk}/receipts"


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


# --- Twilio ---------------------------------------------------------------------------------------


def twilio_account(tenant, fake, name="twilio"):
    config = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15005550006"}
    return add_provider(tenant, "sms", "twilio", config, name=name)


def sent_sms(admin, tenant, twilio_fake):
    provider = twilio_account(tenant, twilio_fake)
    [message] = accept(admin, ["sms"])
    pipeline.deliver([message.id])
    message = reload(message)
    assert message.status == "sent"
    return provider, message


def twilio_callback(provider, sid, status, *, token=AUTH_TOKEN, signature=None, **extra):
    """POST a status callback as Twilio does: form-encoded, signed over the public URL."""
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
              "AccountSid": ACCOUNT_SID, "To": "+14155552671", "From": "+15005550006", "ApiVersion": "2010-04-01",
              **extra}  # fmt: skip
    if signature is None:
        signature = RequestValidator(token).compute_signature(PUBLIC_URL + path_of(provider), params)
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return Client().post(
        path_of(provider), urlencode(params), content_type="application/x-www-form-urlencoded", **headers
    )


def test_each_sms_carries_its_providers_receipt_url(admin, tenant, ada, twilio_fake):
    provider, message = sent_sms(admin, tenant, twilio_fake)
    [request] = twilio_fake.sent
    assert request.form()["StatusCallback"] == PUBLIC_URL + path_of(provider) + f"?message={message.id}"


def test_the_provider_api_shows_the_receipt_url(admin, tenant, twilio_fake):
    provider = twilio_account(tenant, twilio_fake)
    body = admin.get(f"/api/v1/providers/{provider.pk}").json()
    assert body["receipt_url"] == PUBLIC_URL + path_of(provider)


def test_a_signed_delivered_callback_delivers_the_message(admin, tenant, ada, twilio_fake):
    provider, message = sent_sms(admin, tenant, twilio_fake)

    response = twilio_callback(provider, message.provider_message_id, "delivered")

    assert response.status_code == 200
    message = reload(message)
    assert message.status == "delivered"
    assert message.delivered is not None


def test_undelivered_fails_the_message_with_twilios_error_code(admin, tenant, ada, twilio_fake):
    provider, message = sent_sms(admin, tenant, twilio_fake)

    assert twilio_callback(provider, message.provider_message_id, "undelivered", ErrorCode="30003").status_code == 200

    message = reload(message)
    assert (message.status, message.reason, message.error) == ("failed", "twilio_30003", "Twilio error 30003")
    assert message.failed is not None


@pytest.mark.parametrize(
    ("signature", "token", "status"),
    [
        ("", AUTH_TOKEN, 401),  # unsigned
        ("bm90IGEgc2lnbmF0dXJl", AUTH_TOKEN, 403),  # forged
        (None, "another-accounts-token", 403),  # signed with a key that is not this account's
    ],
)
def test_an_unsigned_or_forged_callback_is_refused_and_changes_nothing(
    admin, tenant, ada, twilio_fake, signature, token, status
):
    provider, message = sent_sms(admin, tenant, twilio_fake)

    response = twilio_callback(provider, message.provider_message_id, "delivered", token=token, signature=signature)

    assert response.status_code == status
    assert response.json()["error"]["code"] == "receipt_refused"
    assert reload(message).status == "sent"


def test_a_callback_signed_for_another_url_is_refused(admin, tenant, ada, twilio_fake):
    provider, message = sent_sms(admin, tenant, twilio_fake)
    params = {"MessageSid": message.provider_message_id, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + "/elsewhere", params)

    response = Client().post(
        path_of(provider), urlencode(params), content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )  # fmt: skip

    assert response.status_code == 403
    assert reload(message).status == "sent"


def test_receipts_arrive_out_of_order_and_twice_without_moving_back(admin, tenant, ada, twilio_fake):
    provider, message = sent_sms(admin, tenant, twilio_fake)
    sid = message.provider_message_id

    assert twilio_callback(provider, sid, "delivered").status_code == 200
    delivered_at = reload(message).delivered
    # A late `sent`, a repeated `delivered`, a stray `undelivered`: all answered 200, none applied.
    for status in ("sent", "delivered", "undelivered", "queued"):
        assert twilio_callback(provider, sid, status, ErrorCode="30005").status_code == 200

    message = reload(message)
    assert (message.status, message.delivered, message.reason) == ("delivered", delivered_at, "")


def test_an_unknown_message_id_answers_200(admin, tenant, twilio_fake):
    provider = twilio_account(tenant, twilio_fake)
    assert twilio_callback(provider, "SM" + "f" * 32, "delivered").status_code == 200


def test_a_receipt_url_moves_only_its_own_tenants_messages(admin, tenant, ada, twilio_fake):
    _provider, message = sent_sms(admin, tenant, twilio_fake)
    # Another tenant with the same Twilio account (a reseller's subaccount shared by mistake):
    # its receipt URL, correctly signed, names our message's SID.
    other = TenantFactory()
    other_provider = twilio_account(other, twilio_fake)

    assert twilio_callback(other_provider, message.provider_message_id, "delivered").status_code == 200

    assert reload(message).status == "sent"


def test_an_unknown_receipt_url_is_404():
    response = Client().post("/webhooks/providers/8f0e5b8e-3c55-4d6c-9f7e-0a7b3f4f1e2d/receipts", {})
    assert response.status_code == 404


def test_a_console_provider_posts_no_receipts(tenant):
    provider = add_provider(tenant, "sms", "console", {})
    assert Client().post(path_of(provider), {}).status_code == 403


# --- ESPs through anymail -------------------------------------------------------------------------


def basic_auth(secret=WEBHOOK_SECRET) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def esp_account(tenant, fake, kind, **config):
    secrets = {"postmark": {"server_token": "pm-token"}, "mailgun": {"api_key": "mg-key"},
               "sendgrid": {"api_key": "SG.key"}}[kind]  # fmt: skip
    config = {**secrets, "from_email": "noreply@acme.test", "api_url": fake.api_url(kind), **config}
    return add_provider(tenant, "email", kind, config, name=kind)


def sent_email(admin, tenant, fake, kind, **config):
    provider = esp_account(tenant, fake, kind, webhook_secret=WEBHOOK_SECRET, **config)
    [message] = accept(admin, ["email"])
    pipeline.deliver([message.id])
    message = reload(message)
    assert message.status == "sent", message.error
    assert message.provider_message_id
    return provider, message


def post_json(provider, body, **headers):
    return Client().post(path_of(provider), json.dumps(body), content_type="application/json", **headers)


def postmark_event(message_id, record_type, **fields):
    return {"RecordType": record_type, "MessageID": message_id, "Recipient": "ada@example.com",
            "Email": "ada@example.com", "DeliveredAt": "2026-12-01T10:00:00Z", **fields}  # fmt: skip


def test_postmark_delivery_and_complaint_move_the_message(admin, tenant, ada, sendgrid_fake):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")

    assert (
        post_json(provider, postmark_event(message.provider_message_id, "Delivery"), **basic_auth()).status_code == 200
    )
    assert reload(message).status == "delivered"

    complaint = postmark_event(message.provider_message_id, "SpamComplaint", Type="SpamComplaint")
    assert post_json(provider, complaint, **basic_auth()).status_code == 200
    message = reload(message)
    assert (message.status, message.reason) == ("complained", "complaint")


def test_postmark_hard_bounce_bounces_the_message(admin, tenant, ada, sendgrid_fake):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")
    bounce = postmark_event(message.provider_message_id, "Bounce", Type="HardBounce", Description="Unknown user")

    assert post_json(provider, bounce, **basic_auth()).status_code == 200

    message = reload(message)
    assert (message.status, message.reason, message.error) == ("bounced", "hard_bounce", "Unknown user")


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (basic_auth("receipts:wrong"), 403)],
)
def test_an_esp_webhook_without_the_providers_basic_auth_is_refused(admin, tenant, ada, sendgrid_fake, headers, status):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")

    response = post_json(provider, postmark_event(message.provider_message_id, "Delivery"), **headers)

    assert response.status_code == status
    assert reload(message).status == "sent"


def test_an_esp_without_a_webhook_secret_takes_no_receipts(admin, tenant, ada, sendgrid_fake):
    provider = esp_account(tenant, sendgrid_fake, "postmark")
    [message] = accept(admin, ["email"])
    pipeline.deliver([message.id])
    message = reload(message)

    response = post_json(provider, postmark_event(message.provider_message_id, "Delivery"), **basic_auth())

    assert response.status_code == 403
    assert reload(message).status == "sent"


def test_an_authentic_but_unreadable_esp_payload_is_a_400(tenant, sendgrid_fake):
    provider = esp_account(tenant, sendgrid_fake, "postmark", webhook_secret=WEBHOOK_SECRET)
    response = Client().post(path_of(provider), b"{not json", content_type="application/json", **basic_auth())
    assert response.status_code == 400


def mailgun_event(message_id, event, *, key=MAILGUN_SIGNING_KEY, **data):
    timestamp, token = str(int(time.time())), "a" * 50
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    event_data = {"event": event, "timestamp": time.time(), "id": "evt-1", "recipient": "ada@example.com",
                  "message": {"headers": {"message-id": message_id.strip("<>")}}, **data}  # fmt: skip
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event_data}


def test_mailgun_permanent_failure_bounces_the_message(admin, tenant, ada, sendgrid_fake):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "mailgun", webhook_signing_key=MAILGUN_SIGNING_KEY)

    event = mailgun_event(message.provider_message_id, "failed", severity="permanent")
    assert post_json(provider, event, **basic_auth()).status_code == 200

    assert reload(message).status == "bounced"


def test_mailgun_checks_its_signature_too(admin, tenant, ada, sendgrid_fake):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "mailgun", webhook_signing_key=MAILGUN_SIGNING_KEY)

    event = mailgun_event(message.provider_message_id, "delivered", key="not-the-signing-key")
    assert post_json(provider, event, **basic_auth()).status_code == 403

    assert reload(message).status == "sent"


def test_sendgrid_events_name_the_message_by_anymails_id(admin, tenant, ada, sendgrid_fake):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "sendgrid")
    events = [{"event": "delivered", "email": "ada@example.com", "timestamp": int(time.time()),
               "anymail_id": message.provider_message_id, "sg_event_id": "e1"}]  # fmt: skip

    assert post_json(provider, events, **basic_auth()).status_code == 200

    assert reload(message).status == "delivered"


def test_an_esp_receipt_for_another_tenants_message_changes_nothing(admin, tenant, ada, sendgrid_fake):
    _provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")
    other = TenantFactory()
    RecipientFactory(tenant=other, external_id="eve")
    other_provider = esp_account(other, sendgrid_fake, "postmark", webhook_secret=WEBHOOK_SECRET)

    response = post_json(other_provider, postmark_event(message.provider_message_id, "Delivery"), **basic_auth())

    assert response.status_code == 200
    assert reload(message).status == "sent"


def test_a_signed_callback_whose_message_sid_holds_a_nul_is_dropped_not_a_500(admin, tenant, ada, twilio_fake):
    # Signed with the account's own token, so only its holder (the tenant) can send one: a 500
    # would still be ours. It names no message we could have stored, so it is an unknown id.
    provider, message = sent_sms(admin, tenant, twilio_fake)

    response = twilio_callback(provider, message.provider_message_id + "\x00", "undelivered", ErrorCode="30003")

    assert response.status_code == 200
    assert reload(message).status == "sent"
