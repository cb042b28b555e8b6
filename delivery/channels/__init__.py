"""Delivery registry: `(channel, kind) -> Provider class`, and `channel -> BuiltinDelivery`.

What a channel is (its addressing, content, queue) lives in alertflow/channels.py; this package
holds how it is sent, one module per channel. Adding a provider kind is one class in its
channel's module and one line in `_CLASSES`; so is the built-in delivery of a channel that needs
no provider (in-app). Kinds are unique within a channel, not across channels ("console" exists
for email, sms and push), so a kind is always looked up with its channel, as a stored provider
config names both.
"""

from __future__ import annotations

import copy

from django.conf import settings

from .base import BuiltinDelivery, Code, Inbound, Outgoing, Provider, ProviderError, Receipt, ReceiptRefused, Sent
from .email import (
    AmazonSesProvider,
    ConsoleEmailProvider,
    MailgunProvider,
    PostmarkProvider,
    SendGridProvider,
    SmtpProvider,
)
from .inapp import InboxDelivery
from .push import ApnsProvider, ConsolePushProvider, FcmProvider, WebPushProvider
from .sms import ConsoleSmsProvider, TwilioProvider

_CLASSES: list[type[Provider] | type[BuiltinDelivery]] = [
    SmtpProvider,
    SendGridProvider,
    MailgunProvider,
    PostmarkProvider,
    AmazonSesProvider,
    ConsoleEmailProvider,
    TwilioProvider,
    ConsoleSmsProvider,
    FcmProvider,
    ApnsProvider,
    WebPushProvider,
    ConsolePushProvider,
    InboxDelivery,
]

# {"email": {"smtp": SmtpProvider, ...}, "sms": {...}, "push": {...}}
PROVIDERS: dict[str, dict[str, type[Provider]]] = {}
# {"inapp": InboxDelivery()}
BUILTIN: dict[str, BuiltinDelivery] = {}
for _cls in _CLASSES:
    if issubclass(_cls, BuiltinDelivery):
        BUILTIN[_cls.channel] = _cls()
    else:
        PROVIDERS.setdefault(_cls.channel, {})[_cls.kind] = _cls


def provider_class(channel: str, kind: str) -> type[Provider]:
    """The Provider class for a channel's kind. Raises ValueError naming the kinds that exist."""
    try:
        return PROVIDERS[channel][kind]
    except KeyError:
        if channel not in PROVIDERS:
            raise ValueError(f"channel: no providers for {channel!r} (one of {', '.join(sorted(PROVIDERS))})") from None
        raise ValueError(
            f"kind: unknown {channel} provider {kind!r} (one of {', '.join(sorted(PROVIDERS[channel]))})"
        ) from None


def builtin_delivery(channel: str) -> BuiltinDelivery:
    """The delivery of a channel that needs no provider. Raises LookupError naming the channel
    when it has none (a channel marked `needs_provider = False` without its module here)."""
    try:
        return BUILTIN[channel]
    except KeyError:
        raise LookupError(f"channel {channel!r} has no built-in delivery in delivery/channels") from None


def kinds(channel: str) -> list[str]:
    """The provider kinds a channel offers, for API choices and docs."""
    return sorted(PROVIDERS.get(channel, {}))


def default_providers() -> list[dict]:
    """The deployment's providers from `settings.ALERTFLOW_DEFAULT_PROVIDERS`, validated.

    Returns `[{"channel", "kind", "config"}]` with each config normalised by its kind; a tenant
    without providers of its own for a channel sends through these. Raises ValueError (naming
    the entry) for a bad one, so a misconfigured deployment fails loudly.
    """
    result = []
    for index, entry in enumerate(copy.deepcopy(settings.ALERTFLOW_DEFAULT_PROVIDERS)):
        try:
            cls = provider_class(entry["channel"], entry["kind"])
            config = cls.validate_config(entry.get("config") or {})
        except (KeyError, ValueError) as exc:
            raise ValueError(f"ALERTFLOW_DEFAULT_PROVIDERS[{index}]: {exc}") from None
        result.append({"channel": cls.channel, "kind": cls.kind, "config": config})
    return result


__all__ = [
    "BUILTIN",
    "PROVIDERS",
    "BuiltinDelivery",
    "Code",
    "Inbound",
    "Outgoing",
    "Provider",
    "ProviderError",
    "Receipt",
    "ReceiptRefused",
    "Sent",
    "builtin_delivery",
    "default_providers",
    "kinds",
    "provider_class",
]
