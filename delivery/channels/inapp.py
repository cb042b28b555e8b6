"""The in-app channel: AlertFlow delivers it itself, with no provider to configure.

The rendered `Message` row is the delivery: the recipient's inbox reads it from PostgreSQL.
"""

from .base import BuiltinDelivery, Outgoing, Sent


class InboxDelivery(BuiltinDelivery):
    channel = "inapp"
    name = "inbox"

    def send(self, out: Outgoing) -> Sent:
        return Sent(provider_message_id=out.message_id)
