"""The event types a webhook endpoint may subscribe to (a leaf: models and serializers read it)."""

# A message entering one of these statuses is the event next to it.
MESSAGE_EVENTS = {
    "sent": "message.sent",
    "delivered": "message.delivered",
    "failed": "message.failed",
    "bounced": "message.bounced",
    "complained": "message.complained",
    "expired": "message.expired",
    "read": "message.read",
}
NOTIFICATION_COMPLETED = "notification.completed"
SUPPRESSION_CREATED = "suppression.created"
# Sent by `POST /webhooks/{id}/test` to that endpoint only; nobody subscribes to it.
PING = "webhook.ping"

SUBSCRIBABLE = [*MESSAGE_EVENTS.values(), NOTIFICATION_COMPLETED, SUPPRESSION_CREATED]
EVENT_TYPES = [*SUBSCRIBABLE, PING]
