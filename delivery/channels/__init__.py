"""Provider registry: `(channel, kind) -> Provider class`.

Adding a provider kind is one class in its channel's module and one line here. Kinds are
unique within a channel, not across channels ("console" exists for email, sms and push), so
a kind is always looked up with its channel, as a stored provider config names both.
"""

from __future__ import annotations

import copy

from django.conf import settings

from .base import Code, Outgoing, Provider, ProviderError, Sent
from .email import (
    AmazonSesProvider,
    ConsoleEmailProvider,
    MailgunProvider,
    PostmarkProvider,
    SendGridProvider,
    SmtpProvider,
)
from .push import ApnsProvider, ConsolePushProvider, FcmProvider, WebPushProvider
from .sms import ConsoleSmsProvider, TwilioProvider

_CLASSES: list[type[Provider]] = [
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
]

# {"email": {"smtp": SmtpProvider, ...}, "sms": {...}, "push": {...}}
PROVIDERS: dict[str, dict[str, type[Provider]]] = {}
for _cls in _CLASSES:
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
    "PROVIDERS",
    "Code",
    "Outgoing",
    "Provider",
    "ProviderError",
    "Sent",
    "default_providers",
    "kinds",
    "provider_class",
]
