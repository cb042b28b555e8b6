"""What a channel is, in one place: every layer asks the channel object, none branches on a name.

A channel says how it reaches a recipient (a contact field, the recipient's devices, or the
recipient itself), which content fields a template gives it, which queue carries its messages,
and whether a tenant must configure a provider for it. Planning (`notifications`), content
validation (`templates_app`), preferences, the queues and the send pipeline (`delivery`) all
read these objects from `CHANNELS`.

Adding a channel (the extension point):

1. Here: a subclass of `Channel` and one line in `CHANNELS`. Its name becomes a value of
   `alertflow.choices.Channel`, a preference switch, a content key and a queue.
2. In `delivery/channels/<name>.py`: its provider classes (one per kind) when it
   `needs_provider`; otherwise one `BuiltinDelivery` subclass, which delivers without any
   tenant configuration. Either way one line in that package's registry (`_CLASSES`).

For example the in-app channel is addressed by the recipient itself (`address` is the inbox,
no contact field), has content `title`, `body`, `action_url`, and `needs_provider = False`:
`delivery/channels/inapp.py` holds its built-in delivery (the stored message is the delivery;
the websocket publish belongs there).

This module is a leaf of the kernel: it imports no Django model, so settings, the Celery
queues and every app may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Destination:
    """One place a message goes now: an email address, an E.164 number, a device token (with its
    platform), or the recipient's own id for channels that address the recipient itself."""

    to: str
    platform: str = ""


class Channel:
    """One channel. Subclass it, set the class attributes, add an instance to `CHANNELS`.

    A recipient is anything with the contact attributes (`email`, `phone`, `pk`): this module
    does not import the `preferences` models. A device is anything with `token` and `platform`.
    """

    name: ClassVar[str]  # the stored value: Message.channel, preference switches, content keys
    label: ClassVar[str]  # for choices and docs
    # The content a template or an inline send gives this channel. `data` is an object whose string
    # values are templates; every other field is one template string.
    content_fields: ClassVar[tuple[str, ...]]
    # Each group needs at least one non-blank field (email: a subject, and html or text).
    required_content: ClassVar[tuple[tuple[str, ...], ...]]
    # Fields rendered with HTML autoescaping: only HTML is escaped, an SMS saying "Tom &amp; Jerry"
    # is a bug, not safety.
    escaped_fields: ClassVar[frozenset[str]] = frozenset()
    # The recipient attribute that holds this channel's address, when it is one contact field.
    contact_field: ClassVar[str | None] = None
    # True when the channel reaches a recipient through its active push devices.
    uses_devices: ClassVar[bool] = False
    # False for a channel AlertFlow delivers itself (no tenant provider, no failover, no breaker).
    needs_provider: ClassVar[bool] = True
    # True for a channel whose messages carry a one-click unsubscribe link (email's
    # List-Unsubscribe, RFC 8058): the send pipeline then hands each message its link.
    one_click_unsubscribe: ClassVar[bool] = False

    @property
    def queue(self) -> str:
        """The Celery queue that carries this channel's sends (one worker pool per channel)."""
        return self.name

    def address(self, recipient: Any, has_device: bool) -> str | None:
        """What `Message.to` records for `recipient`, or None when the channel cannot reach them.

        `has_device` says whether the recipient has an active device (read only for channels
        that `uses_devices`).
        """
        return getattr(recipient, self.contact_field) or None

    def destinations(self, recipient: Any, devices: list) -> list[Destination]:
        """Where to send a message to `recipient` now (read at send time: addresses change after
        accept). `devices` are the recipient's active devices in registration order. An empty
        list means the recipient has no address on this channel any more."""
        address = self.address(recipient, bool(devices))
        return [Destination(address)] if address else []

    def __repr__(self) -> str:
        return f"<Channel {self.name}>"


class Email(Channel):
    name, label = "email", "Email"
    content_fields = ("subject", "html", "text")
    required_content = (("subject",), ("html", "text"))
    escaped_fields = frozenset({"html"})
    contact_field = "email"
    one_click_unsubscribe = True


class Sms(Channel):
    name, label = "sms", "Sms"
    content_fields = ("text",)
    required_content = (("text",),)
    contact_field = "phone"


class Push(Channel):
    name, label = "push", "Push"
    content_fields = ("title", "body", "data", "image")
    required_content = (("title", "body"),)
    uses_devices = True

    def address(self, recipient: Any, has_device: bool) -> str | None:
        return "devices" if has_device else None

    def destinations(self, recipient: Any, devices: list) -> list[Destination]:
        return [Destination(device.token, device.platform) for device in devices]


class InApp(Channel):
    name, label = "inapp", "Inapp"
    content_fields = ("title", "body", "action_url", "data")
    required_content = (("title", "body"),)
    needs_provider = False

    def address(self, recipient: Any, has_device: bool) -> str | None:
        return "inbox"  # every recipient has an inbox

    def destinations(self, recipient: Any, devices: list) -> list[Destination]:
        return [Destination(str(recipient.pk))]


# The registry, in the order channels are listed (choices, content, preferences).
CHANNELS: dict[str, Channel] = {channel.name: channel for channel in (Email(), Sms(), Push(), InApp())}
