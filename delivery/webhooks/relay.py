"""POST due deliveries to their endpoints (DESIGN section 3, step 7).

The relay is a due poller like delivery/timers.py: beat runs `relay_due` every second on the
webhooks queue, and each run claims due deliveries one at a time with `SELECT ... FOR UPDATE
SKIP LOCKED` (several relays never take the same one), pushes the claimed delivery's
`next_attempt` one lease ahead and commits, then POSTs outside any transaction and records the
answer. A relay killed mid-POST leaves its delivery due again when the lease runs out: the event
is sent again with the same id, which receivers de-duplicate on.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from alertflow import outbound
from delivery import crypto

from . import events, signing
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent, plain_http_refused

logger = logging.getLogger(__name__)

USER_AGENT = "AlertFlow-Webhooks/1"
# What an attempt row keeps of an answer.
EXCERPT_CHARS = 500
# One relay run stops claiming after this long, so beat's next tick finds a worker free.
RUN_SECONDS = 20


@dataclass
class Result:
    status_code: int | None
    response: str
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def relay_due(now: datetime | None = None, *, limit: int = 200) -> int:
    """Claim and POST due deliveries until none is due, `limit` were sent or the run's time is
    up; return how many were POSTed."""
    started = time.monotonic()
    sent = 0
    while sent < limit and time.monotonic() - started < RUN_SECONDS:
        delivery = claim(now)
        if delivery is None:
            break
        send(delivery)
        sent += 1
    return sent


def claim(now: datetime | None = None) -> WebhookDelivery | None:
    """The most overdue pending delivery of an enabled endpoint, leased to this relay (its
    `next_attempt` pushed a lease ahead, committed), or None."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt__lte=now, endpoint__enabled=True)
            .order_by("next_attempt")
            .first()
        )
        if delivery is None:
            return None
        delivery.next_attempt = now + timedelta(seconds=settings.ALERTFLOW_WEBHOOK_LEASE_SECONDS)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt=delivery.next_attempt, updated=now)
    return delivery


def send(delivery: WebhookDelivery) -> Result:
    """POST the delivery's event and record the answer."""
    endpoint, event = delivery.endpoint, delivery.event
    body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True).encode()
    started = timezone.now()
    try:
        secrets = endpoint.signing_secrets()
    except crypto.SecretsUnreadable:
        result = Result(None, "", "secret_unreadable: the encryption keys changed; rotate the secret", 0)
    else:
        result = post(endpoint.url, body, secrets, event_type=event.type, event_id=str(event.pk))
    record(delivery, result, started)
    return result


def post(url: str, body: bytes, secrets: list[str], *, event_type: str, event_id: str) -> Result:
    """One POST through the outbound guard; never raises for the endpoint's failures."""
    refused = plain_http_refused(url)
    if refused is not None:  # saved while http was allowed: a failed attempt, nothing sent
        return Result(None, "", f"https_required: {refused}", 0)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-AlertFlow-Event-Id": event_id,
        "X-AlertFlow-Event-Type": event_type,
        signing.HEADER: signing.signature(body, secrets, int(time.time())),
    }
    timeout = settings.ALERTFLOW_WEBHOOK_TIMEOUT_SECONDS
    clock = time.monotonic()
    session = requests.Session()
    outbound.guard_session(session)
    try:
        # No redirects: a 3xx is the endpoint's answer (a failure), never a second destination.
        with session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True) as r:
            excerpt = next(r.iter_content(EXCERPT_CHARS * 2), b"")
            status_code = r.status_code
        error = "" if 200 <= status_code < 300 else f"HTTP {status_code}"
    except Exception as exc:  # whatever the endpoint or the network did, it is this attempt's outcome
        refused = outbound.refusal_in(exc)
        if refused is not None:
            error = f"address_not_allowed: {refused}"
        elif isinstance(exc, requests.Timeout):
            error = f"timeout after {timeout}s"
        elif isinstance(exc, requests.ConnectionError):
            error = "connection failed"
        else:
            error = type(exc).__name__
        status_code, excerpt = None, b""
    finally:
        session.close()
    duration_ms = int((time.monotonic() - clock) * 1000)
    return Result(status_code, sanitize(excerpt), error, duration_ms)


def sanitize(raw: bytes) -> str:
    """Printable text of the answer's first bytes, whitespace collapsed: what the attempt log and
    the API show of an endpoint's answer (never its headers)."""
    text = raw.decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:EXCERPT_CHARS]


def retry_delay(attempts: int) -> float:
    """Exponential backoff from `ALERTFLOW_WEBHOOK_RETRY_BASE_SECONDS`, five times longer each
    try, capped, with +-25 % jitter so endpoints that failed together do not retry together."""
    ceiling = settings.ALERTFLOW_WEBHOOK_RETRY_MAX_SECONDS
    delay = min(settings.ALERTFLOW_WEBHOOK_RETRY_BASE_SECONDS * 5 ** (attempts - 1), ceiling)
    return delay * random.uniform(0.75, 1.25)


def record(delivery: WebhookDelivery, result: Result, started: datetime) -> None:
    """Log the attempt; settle the delivery (delivered, due again later, or failed for good) if
    this relay still holds its lease; keep the endpoint's failure streak and disable it when it
    keeps failing."""
    now = timezone.now()
    attempts = delivery.attempts + 1
    if result.ok:
        changes = {"status": WebhookDelivery.Status.DELIVERED, "delivered": now, "next_attempt": None}
    elif attempts >= settings.ALERTFLOW_WEBHOOK_MAX_ATTEMPTS:
        changes = {"status": WebhookDelivery.Status.FAILED, "next_attempt": None}
    else:
        changes = {"next_attempt": now + timedelta(seconds=retry_delay(attempts))}
    with transaction.atomic():
        # Locked first: a tenant who deletes the endpoint during the POST deletes its deliveries
        # too, and an attempt logged against one that is gone would fail this commit.
        if not list(WebhookDelivery.objects.select_for_update().filter(pk=delivery.pk).values_list("pk")):
            return
        WebhookAttempt.objects.create(
            delivery=delivery,
            started=started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            response=result.response,
            error=result.error[:500],
        )
        # The lease is the claim's token: a relay whose lease ran out (and whose delivery another
        # relay claimed since) only logs its attempt.
        held = WebhookDelivery.objects.filter(
            pk=delivery.pk, status=WebhookDelivery.Status.PENDING, next_attempt=delivery.next_attempt
        ).update(attempts=attempts, last_status_code=result.status_code, updated=now, **changes)
        if not held:
            return
        for name, value in changes.items():
            setattr(delivery, name, value)
        delivery.attempts, delivery.last_status_code = attempts, result.status_code
        endpoints = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
        if result.ok:
            endpoints.filter(Q(failing_since__isnull=False) | Q(failed_deliveries__gt=0)).update(
                failing_since=None, failed_deliveries=0
            )
            return
        gave_up = int(changes.get("status") == WebhookDelivery.Status.FAILED)
        endpoints.update(
            failing_since=Coalesce(F("failing_since"), now), failed_deliveries=F("failed_deliveries") + gave_up
        )
        disable_if_failing(delivery.endpoint_id, now)


def disable_if_failing(endpoint_id, now: datetime) -> bool:
    """Disable the endpoint when `ALERTFLOW_WEBHOOK_DISABLE_AFTER_FAILED_DELIVERIES` deliveries in
    a row gave up, or every attempt failed for `ALERTFLOW_WEBHOOK_DISABLE_AFTER_SECONDS`."""
    window = timedelta(seconds=settings.ALERTFLOW_WEBHOOK_DISABLE_AFTER_SECONDS)
    limit = settings.ALERTFLOW_WEBHOOK_DISABLE_AFTER_FAILED_DELIVERIES
    failing = WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True)
    reason = None
    if failing.filter(failed_deliveries__gte=limit).exists():
        reason = f"{limit} deliveries in a row failed every attempt"
    elif failing.filter(failing_since__lte=now - window).exists():
        reason = f"every attempt failed for {int(window.total_seconds() // 3600)} hours"
    if reason is None:
        return False
    if not failing.update(enabled=False, disabled_reason=f"Disabled on {now:%Y-%m-%d %H:%M} UTC: {reason}."):
        return False
    tenant_id = WebhookEndpoint.objects.filter(pk=endpoint_id).values_list("tenant_id", flat=True).first()
    events.invalidate(tenant_id)
    logger.warning("Webhook endpoint %s disabled: %s", endpoint_id, reason)
    return True


# --- replay ---------------------------------------------------------------------------------------


def replayable(deliveries):
    """Make these deliveries due again now, with a fresh budget of tries; returns how many.
    Pending ones are left alone (they are due already, or leased to a relay right now)."""
    now = timezone.now()
    return deliveries.exclude(status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt=now, updated=now
    )


# --- retention ------------------------------------------------------------------------------------

PRUNE_BATCH = 1000


def prune(now: datetime | None = None) -> int:
    """Delete events older than `ALERTFLOW_WEBHOOK_RETENTION_DAYS` with their deliveries and
    attempts, except those with a delivery still pending (it may yet be sent); returns how many
    events went. A batch at a time, so no transaction holds many rows for long."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.ALERTFLOW_WEBHOOK_RETENTION_DAYS)
    pruned = 0
    while True:
        with transaction.atomic():
            batch = list(
                WebhookEvent.objects.filter(created__lt=cutoff)
                .exclude(deliveries__status=WebhookDelivery.Status.PENDING)
                .order_by("created")
                .values_list("pk", flat=True)[:PRUNE_BATCH]
            )
            if not batch:
                return pruned
            WebhookEvent.objects.filter(pk__in=batch).delete()
        pruned += len(batch)
