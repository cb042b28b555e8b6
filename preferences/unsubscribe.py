"""One-click unsubscribe links (RFC 8058, RFC 2369): what goes in a mail's `List-Unsubscribe`.

A link names one recipient of one tenant, at one email address, and one category (or none, for
mail sent without a category: the link then turns the recipient's email off altogether, the only
switch that governs such mail). It is signed, so nothing in it can be changed or made up: the
page behind it (`preferences.pages`) acts on exactly what it names and nothing else.

The link carries no expiry on purpose. Mail sits in inboxes for years, and RFC 8058 asks that the
unsubscribe still works whenever the recipient finally presses it; a link that stopped working
would leave a person no way out but the spam button. What ends a link instead: the recipient is
erased, their address changes (the person at the old address no longer gets the mail), the
category is deleted, or the deployment's SECRET_KEY is rotated without keeping the old one in
SECRET_KEY_FALLBACKS (Django's signing checks those too).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

logger = logging.getLogger(__name__)

# The salt keeps these signatures apart from every other use of SECRET_KEY (sessions, recipient
# tokens): a value signed for something else never reads as an unsubscribe link.
SALT = "alertflow.unsubscribe.v1"
_public_url_warned = False


class BadLink(Exception):
    """The token was not signed by this deployment, or has been altered."""


@dataclass(frozen=True)
class Link:
    """What a valid token names: `category` is a category key, or "" for mail without one."""

    tenant_id: str
    recipient_id: int
    category: str
    address_digest: str

    def matches(self, address: str) -> bool:
        """Whether the link was made for this address (the recipient's current one)."""
        return bool(address) and address_digest(address) == self.address_digest


def address_digest(address: str) -> str:
    """A short digest of an address, enough to tell a changed address from the one a link was
    made for without putting the address itself in the URL."""
    digest = hashlib.sha256(address.strip().lower().encode()).digest()[:8]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_token(tenant_id, recipient_id: int, category_key: str | None, address: str) -> str:
    """The signed, URL-safe token for one recipient, address and category (None: no category)."""
    payload = [str(tenant_id), int(recipient_id), category_key or "", address_digest(address)]
    # sign_object gives URL-safe base64 and a base64 HMAC-SHA256 joined by ":", all path-safe.
    return signing.Signer(salt=SALT, algorithm="sha256").sign_object(payload)


def read_token(token: str) -> Link:
    """The link a token names. Raises `BadLink` for anything this deployment did not sign."""
    try:
        payload = signing.Signer(salt=SALT, algorithm="sha256").unsign_object(token)
    except (signing.BadSignature, ValueError, UnicodeError):
        raise BadLink("invalid unsubscribe token") from None
    # A signature we made always covers this shape; checked anyway so a future format change
    # reads as a bad link, never as a crash.
    if not (
        isinstance(payload, list)
        and len(payload) == 4
        and all(isinstance(payload[i], str) for i in (0, 2, 3))
        and isinstance(payload[1], int)
    ):
        raise BadLink("unreadable unsubscribe token")
    return Link(*payload)


def unsubscribe_url(recipient, category, address: str) -> str:
    """The one-click unsubscribe URL for mail of `category` (a Category or None) sent to
    `recipient` at `address`, or "" when the mail must carry none.

    None for a critical category: it ignores opt-outs (`services.decide`), so offering a way out
    of it would be a lie. None without `ALERTFLOW_PUBLIC_URL` either: a worker has no request to
    learn the public host from, and a link to the wrong host is worse than no link (logged once
    per process, so a misconfigured deployment is seen, not flooded).
    """
    if category is not None and category.critical:
        return ""
    base = settings.ALERTFLOW_PUBLIC_URL.rstrip("/")
    if not base:
        _warn_no_public_url()
        return ""
    token = make_token(recipient.tenant_id, recipient.pk, category.key if category is not None else None, address)
    before, after = _path_around_token()
    return base + before + token + after


@functools.cache
def _path_around_token() -> tuple[str, str]:
    """The unsubscribe page's path before and after its token, reversed once per process:
    `reverse` for every email was 18 us of the ~70 a link costs a bulk email (timeit). A token
    (URL-safe base64 and `:`) is a path segment `reverse` leaves as it is."""
    marker = "TOKEN"
    before, _, after = reverse("unsubscribe", kwargs={"token": marker}).partition(marker)
    return before, after


def _warn_no_public_url() -> None:
    global _public_url_warned
    if not _public_url_warned:
        _public_url_warned = True
        logger.warning(
            "ALERTFLOW_PUBLIC_URL is not set: emails go out without List-Unsubscribe "
            "(one-click unsubscribe needs the public URL of this deployment)"
        )
