"""The in-app channel: AlertFlow delivers it itself, with no provider to configure.

The delivery is the inbox item (delivery/inbox.py): stored in the transaction that records the
message sent, and pushed to the recipient's open sockets after it commits.
"""

from .. import inbox
from .base import BuiltinDelivery, Outgoing, Sent


class InboxDelivery(BuiltinDelivery):
    channel = "inapp"
    name = "inbox"

    def send(self, out: Outgoing) -> Sent:
        return Sent(provider_message_id=out.message_id)

    def recorded(self, messages: list) -> None:
        inbox.store(messages)
