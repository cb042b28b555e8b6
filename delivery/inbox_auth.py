"""Who reads an inbox: a recipient, proven by a recipient token or by the tenant's own HMAC.

Two credentials, both bound to one tenant and one recipient (DESIGN section 5):

- a **recipient token** (`rt_…`), from `POST /api/v1/recipients/{external_id}/token` with an API
  key: signed with SECRET_KEY, short-lived (`ALERTFLOW_RECIPIENT_TOKEN_SECONDS`, default 1 h);
- the recipient's **external id with an HMAC-SHA256 of it** under the tenant's inbox secret,
  computed by the tenant's backend, so a page needs no call to us per view. It lasts until the
  secret is rotated (`POST /api/v1/inbox-secret`).

The REST inbox takes either as headers (`Authorization: Bearer rt_…`, or `X-Inbox-Tenant`,
`X-Inbox-Recipient`, `X-Inbox-HMAC`); the websocket as query parameters (`token`, or `tenant`,
`recipient`, `hmac`). Every failure reads the same from outside: unknown, expired, forged,
another tenant's or an erased recipient.

An open websocket outlives the check it passed at connect, so it is checked again (delivery/
consumers.py): on every frame, through a per-process cache that every change of what a
credential stands on outdates (`still_valid`, `credentials_changed`); at once when such a change
commits (the sockets are told to check); and when its token expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core import signing
from django.db import transaction
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from alertflow.auth import bearer_credential
from alertflow.versioned_cache import VersionedCache
from preferences.models import Recipient
from tenants.models import Tenant

from . import crypto, inbox
from .models import InboxSecret

TOKEN_PREFIX = "rt_"  # noqa: S105 (a prefix, not a secret)
TOKEN_SALT = "alertflow.delivery.recipient-token"  # noqa: S105 (a namespace, not a secret)


@dataclass(frozen=True)
class InboxReader:
    """DRF's `request.user` on inbox endpoints: one recipient of one tenant."""

    recipient: Recipient
    # When the credential stops being valid (seconds since the epoch): a token's expiry; None
    # for an HMAC, which lasts until the secret is rotated.
    expires: float | None = None

    is_authenticated = True
    is_anonymous = False

    @property
    def tenant(self) -> Tenant:  # the per-tenant throttle and serializers read it
        return self.recipient.tenant

    @property
    def pk(self):
        return self.recipient.pk


# --- Recipient tokens --------------------------------------------------------------------------


def issue_token(recipient: Recipient, *, now: float | None = None) -> tuple[str, datetime]:
    """A signed token for `recipient` and the aware UTC instant it expires."""
    expires = int((now or time.time()) + settings.ALERTFLOW_RECIPIENT_TOKEN_SECONDS)
    payload = {"t": str(recipient.tenant_id), "r": recipient.pk, "e": expires}
    token = TOKEN_PREFIX + signing.dumps(payload, salt=TOKEN_SALT)
    return token, datetime.fromtimestamp(expires, tz=UTC)


def reader_from_token(token: str) -> InboxReader | None:
    """The reader a recipient token names, or None when it is malformed, forged, expired, or its
    recipient (or tenant) is gone."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    try:
        payload = signing.loads(token.removeprefix(TOKEN_PREFIX), salt=TOKEN_SALT)
        tenant_id, recipient_id, expires = uuid.UUID(payload["t"]), int(payload["r"]), int(payload["e"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    if expires <= time.time():
        return None
    return _reader(tenant_id, expires, pk=recipient_id)


# --- External id + HMAC ------------------------------------------------------------------------


def sign_external_id(secret: str, external_id: str) -> str:
    """What a tenant's backend computes: hex HMAC-SHA256 of the external id under the inbox secret."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def reader_from_hmac(tenant_id: str, external_id: str, signature: str) -> InboxReader | None:
    """The reader an (tenant id, external id, HMAC) triple names, or None when it does not verify."""
    try:
        tenant_uuid = uuid.UUID(tenant_id)
    except (TypeError, ValueError, AttributeError):
        return None
    row = InboxSecret.objects.filter(tenant_id=tenant_uuid).first()
    if row is None or not external_id or not signature:
        return None
    try:
        expected = sign_external_id(row.reveal(), external_id)
    except crypto.SecretsUnreadable:
        return None
    if not hmac.compare_digest(expected, signature.strip().lower()):
        return None
    return _reader(tenant_uuid, None, external_id=external_id)


def inbox_secret(tenant: Tenant) -> str:
    """The tenant's inbox secret, created on first use."""
    row = InboxSecret.objects.filter(tenant=tenant).first()
    return row.reveal() if row is not None else rotate_inbox_secret(tenant)


@transaction.atomic
def rotate_inbox_secret(tenant: Tenant) -> str:
    """Replace the tenant's inbox secret with a new random one and return it."""
    secret = "is_" + secrets.token_urlsafe(32)
    InboxSecret.objects.update_or_create(tenant=tenant, defaults={"secret": crypto.encrypt_json({"secret": secret})})
    return secret


def _reader(tenant_id: uuid.UUID, expires: float | None, **lookup) -> InboxReader | None:
    recipient = (
        Recipient.objects.select_related("tenant").filter(tenant_id=tenant_id, tenant__active=True, **lookup).first()
    )
    return InboxReader(recipient, expires) if recipient is not None else None


def reader_from_credentials(
    token: str = "", tenant: str = "", recipient: str = "", signature: str = ""
) -> InboxReader | None:
    """Either credential, as the websocket's query string or the inbox's headers carry it."""
    if token:
        return reader_from_token(token)
    if tenant or recipient or signature:
        return reader_from_hmac(tenant, recipient, signature)
    return None


# --- Open sockets ------------------------------------------------------------------------------

# Close reasons, with code 4401: a credential refused at connect, and an open socket's that no
# longer holds.
INVALID = "invalid_credentials"
EXPIRED = "token_expired"
REVOKED = "credentials_revoked"

# What a credential was found to name (its recipient's id), per process, checked on every use
# against a per-tenant version that `credentials_changed` bumps (alertflow/versioned_cache.py):
# a socket's frames then cost one Redis GET, not the credential's queries (and for an HMAC, a
# decryption), and still see a revocation at the next frame.
_checked = VersionedCache("inbox-credentials")


def still_valid(reader: InboxReader, credentials: dict) -> str:
    """Whether the credential an open socket connected with (`credentials`, as
    `reader_from_credentials` takes them, which named `reader`) still names the same recipient:
    "" when it does, else the close reason (`EXPIRED`, `REVOKED`)."""
    if reader.expires is not None and reader.expires <= time.time():
        return EXPIRED

    def load():
        found = reader_from_credentials(**credentials)
        return found.recipient.pk if found is not None else None

    key = tuple(sorted(credentials.items()))
    return "" if _checked.get(reader.recipient.tenant_id, key, load) == reader.recipient.pk else REVOKED


def credentials_changed(tenant_id, recipient_id=None, *, kind: str = "") -> None:
    """A row that inbox credentials stand on changed or went (a recipient, the tenant, its inbox
    secret): every process checks its sockets' credentials again at their next frame, and once
    the change commits, the open sockets of the recipient (or of the whole tenant, when
    `recipient_id` is None; only those connected with an HMAC when `kind` is "hmac") check theirs
    at once, so a revoked one is closed without waiting for a frame.

    Call it inside the writing transaction. Neither part raises: without Redis there is neither
    cache (every frame reads PostgreSQL) nor channel layer to tell the sockets through."""
    _checked.changed(tenant_id)
    transaction.on_commit(lambda: inbox.announce_recheck(tenant_id, recipient_id, kind=kind))


# --- DRF ---------------------------------------------------------------------------------------


class RecipientAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer rt_…`, or `X-Inbox-Tenant` + `X-Inbox-Recipient` + `X-Inbox-HMAC`."""

    def authenticate(self, request):
        token = bearer_credential(request, "recipient token") or ""
        tenant = request.headers.get("X-Inbox-Tenant", "").strip()
        recipient = request.headers.get("X-Inbox-Recipient", "").strip()
        signature = request.headers.get("X-Inbox-HMAC", "").strip()
        if not (token or tenant or recipient or signature):
            return None
        reader = reader_from_credentials(token, tenant, recipient, signature)
        if reader is None:
            raise exceptions.AuthenticationFailed("Invalid or expired recipient credentials.")
        return reader, None

    def authenticate_header(self, request):
        return 'Bearer realm="inbox"'


class RecipientTokenScheme(OpenApiAuthenticationExtension):
    target_class = RecipientAuthentication
    name = "RecipientToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A recipient token (`rt_…`) from `POST /api/v1/recipients/{external_id}/token`, "
            "or the headers X-Inbox-Tenant, X-Inbox-Recipient and X-Inbox-HMAC.",
        }
