"""Sending: render, address, and send through the tenant's providers with failover and
circuit breakers (DESIGN section 3, steps 4 and 5).

Nothing here writes a message's status: each send ends in an `Outcome` that `state.settle`
turns into one. Failover follows whose fault a failure is, as the channel classified it
(`ProviderError.fault`): the provider's sends the message to the next provider, the address's
or the content's stops it. Never a bare exception.
"""

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from billiard.exceptions import SoftTimeLimitExceeded, Terminated
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alertflow import metrics
from alertflow.channels import CHANNELS, Channel
from alertflow.outbound import AddressNotAllowed
from notifications.models import DeliveryAttempt, Message
from preferences import suppressions
from preferences.models import Device, Suppression
from preferences.unsubscribe import unsubscribe_url
from templates_app.rendering import build_context, render_channel

from . import guards
from .channels import builtin_delivery, provider_class
from .channels.base import DEFAULT_TIMEOUT, Code, Fault, Outgoing, Provider, ProviderError
from .crypto import SecretsUnreadable
from .providers import ProviderSpec, providers_for
from .state import Outcome

logger = logging.getLogger(__name__)

# What stops a task from outside: its soft time limit, a revoke with terminate, a worker's
# shutdown (SystemExit) or Ctrl-C. None of them is a provider's answer or a bug, so none of
# them may be caught as one (and dead-letter the message).
INTERRUPTIONS = (SoftTimeLimitExceeded, Terminated, KeyboardInterrupt, SystemExit)


# A connection kept between batches is closed after this long unused: well under the 5 minutes
# an SMTP server waits for a command (RFC 5321 4.5.3.2.7), so it is rarely the server's close.
KEEP_IDLE_SECONDS = 60.0
# A kept connection unused for longer than this is checked (`Provider.check`, an SMTP NOOP)
# before it carries a message: under steady traffic no check, after a pause one round trip.
CHECK_AFTER_SECONDS = 1.0


def fingerprint(spec: ProviderSpec) -> str:
    """What a kept connection was made with: its kind and whole config, secrets included (as a
    digest). A changed config or a rotated secret gives another fingerprint, so the old
    connection (logged in with the old password, to the old host) is never used again."""
    material = json.dumps([spec.kind, spec.guarded, spec.config], sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


class KeptProviders:
    """Open providers kept between the batches of one worker process, one per provider row: a
    single send reuses the SMTP session of the previous one instead of connecting, saying EHLO
    and QUIT each time.

    A batch takes the instance out (no two batches ever share one) and gives it back when it
    ends well. An instance is made again when its provider's fingerprint changed, closed after
    `KEEP_IDLE_SECONDS` unused (a deleted provider's too: checked whenever a batch takes or
    gives back one) and at the worker process's shutdown (delivery/tasks.py).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[str, Provider, float]] = {}

    def take(self, spec: ProviderSpec) -> Provider:
        """An open provider for `spec`: the kept one if it was made with the same config, else a new one."""
        now = time.monotonic()
        with self._lock:
            entry = self._kept.pop(spec.id, None)
            idle = self._idle(now)
        if entry is not None:
            made_with, provider, last_used = entry
            if made_with == fingerprint(spec) and now - last_used < KEEP_IDLE_SECONDS:
                if now - last_used > CHECK_AFTER_SECONDS:
                    provider.check()
                self._close(idle)
                return provider
            idle.append(provider)
        self._close(idle)
        provider = spec.provider()
        provider.open()
        return provider

    def give_back(self, spec: ProviderSpec, provider: Provider) -> None:
        """Keep `provider` (open, between sends) for the next batch, or close it if its kind
        is not worth keeping."""
        if not provider.keep_between_batches:
            self._close([provider])
            return
        now = time.monotonic()
        with self._lock:
            replaced = self._kept.pop(spec.id, None)
            self._kept[spec.id] = (fingerprint(spec), provider, now)
            idle = self._idle(now)
        self._close(idle + ([replaced[1]] if replaced else []))

    def close_all(self) -> None:
        with self._lock:
            providers = [provider for _made_with, provider, _last_used in self._kept.values()]
            self._kept.clear()
        self._close(providers)

    def _idle(self, now: float) -> list[Provider]:
        """Take out the entries unused for too long (under the lock); the caller closes them."""
        idle = [
            key
            for key, (_made_with, _provider, last_used) in self._kept.items()
            if now - last_used >= KEEP_IDLE_SECONDS
        ]
        return [self._kept.pop(key)[1] for key in idle]

    @staticmethod
    def _close(providers: list[Provider]) -> None:
        for provider in providers:
            try:
                provider.close()
            except Exception:
                logger.warning("Closing a provider connection failed", exc_info=True)


kept = KeptProviders()


class ProviderPool:
    """What one batch shares: each provider opened once, on first use (or taken from those the
    process kept, `kept`), given back at the end; each tenant's provider list read once; each
    breaker asked once while its provider keeps working, and told of the successes once, at the
    end (per message, that was three Redis round trips), and only when it had state to reset.
    A breaker that had none when the batch asked it is not reset at the end: that saves the
    batch a Redis round trip, and a failure another worker counted meanwhile stays counted (this
    batch's success does not outweigh a later failure; the count ages out with the breaker's
    window), where the reset used to erase it."""

    def __init__(self, before_call: Callable[[float], None] = lambda seconds: None):
        # Told the longest a provider call about to start may take (its timeout), so the batch's
        # claim can be kept that long (state.Lease.cover).
        self.before_call = before_call
        self.open_providers: dict[str, tuple[ProviderSpec, Provider]] = {}
        self.specs: dict[tuple, list[ProviderSpec]] = {}
        self.allowed: set[str] = set()
        self.succeeded: set[str] = set()
        # Providers whose breaker had state (counted failures, open, half-open) when last asked.
        self.to_reset: set[str] = set()
        # Providers whose send raised something unclassified: their connection's state is unknown.
        self.unsure: set[str] = set()

    def providers_for(self, tenant_id, channel: str) -> list[ProviderSpec]:
        key = (tenant_id, channel)
        if key not in self.specs:
            self.specs[key] = providers_for(tenant_id, channel)
        return self.specs[key]

    def get(self, spec: ProviderSpec) -> Provider:
        if spec.id not in self.open_providers:
            self.open_providers[spec.id] = (spec, kept.take(spec))
        return self.open_providers[spec.id][1]

    def breaker_allows(self, spec: ProviderSpec) -> bool:
        if spec.id in self.allowed:
            return True
        allowed, has_state = guards.breaker_check(spec.id)
        if has_state:
            self.to_reset.add(spec.id)
        if allowed:
            self.allowed.add(spec.id)
        return allowed

    def record_success(self, spec: ProviderSpec) -> None:
        self.succeeded.add(spec.id)

    def record_failure(self, spec: ProviderSpec) -> None:
        # Ask the breaker again before the next send: this failure may have opened it. A
        # success earlier in the batch no longer speaks for the provider either.
        self.allowed.discard(spec.id)
        self.succeeded.discard(spec.id)
        self.to_reset.add(spec.id)
        guards.record_failure(spec.id)

    def close(self, keep: bool = True):
        """End the batch: its providers are given back to `kept`, or closed when `keep` is False
        (the batch was interrupted or raised: a connection may be mid-message)."""
        for spec, provider in self.open_providers.values():
            if keep and spec.id not in self.unsure:
                kept.give_back(spec, provider)
            else:
                KeptProviders._close([provider])
        self.open_providers.clear()
        for provider_id in self.succeeded & self.to_reset:
            guards.record_success(provider_id)
        self.succeeded.clear()
        self.to_reset.clear()


def active_devices(recipient_ids: list) -> dict:
    """The push devices of a batch's recipients, read once now (not at accept: tokens change),
    in the order they registered: `{recipient_id: [Device, ...]}`."""
    devices = defaultdict(list)
    if recipient_ids:
        for device in Device.objects.active().filter(recipient_id__in=recipient_ids).order_by("pk"):
            devices[device.recipient_id].append(device)
    return devices


def suppressions_for(messages: list[Message], devices: dict) -> dict:
    """The suppressions that name a batch's addresses, as they are now (the fan-out checked
    them at accept; a bounce or a STOP may have come since): one query per tenant in the batch,
    `{tenant_id: suppressions.blocked(...)}`."""
    pairs, categories = defaultdict(set), defaultdict(set)
    for message in messages:
        channel = CHANNELS[message.channel]
        for destination in channel.destinations(message.recipient, devices.get(message.recipient_id, [])):
            pairs[message.tenant_id].add((channel.name, destination.to))
        categories[message.tenant_id].add(message.notification.category_id)
    return {tenant: suppressions.blocked(tenant, pairs[tenant], categories[tenant]) for tenant in pairs}


def unsuppressed(message: Message, channel: Channel, devices: list, found: dict) -> tuple[list, str]:
    """The recipient's devices that are not suppressed, and the message's suppression reason
    when every address it has is (`found` from `suppressions_for`)."""
    category = message.notification.category_id
    found = found.get(message.tenant_id, {})
    addresses = [d.to for d in channel.destinations(message.recipient, devices)]
    reason = suppressions.reason_for_all(found, channel.name, addresses, category)
    if channel.uses_devices and not reason:
        devices = [d for d in devices if not suppressions.reason_for(found, channel.name, d.token, category)]
    return devices, reason or ""


def send_one(message: Message, pool: ProviderPool, devices: dict, found: dict) -> Outcome:
    """Send one claimed message; `found` holds the batch's suppressions (`suppressions_for`)."""
    channel = CHANNELS[message.channel]
    recipient_devices, suppressed = unsuppressed(message, channel, devices.get(message.recipient_id, []), found)
    if suppressed:
        return Outcome(suppressed=suppressed)
    try:
        message.rendered = render(message)
    except INTERRUPTIONS:
        raise
    except Exception as exc:  # a template that validated at save but cannot render now
        logger.exception("Rendering message %s failed", message.id)
        return Outcome(permanent=True, error=f"render_failed: {exc}")
    outgoing = outgoing_for(message, channel, recipient_devices)
    if not outgoing:
        return Outcome(permanent=True, error="no_address: the recipient has no address for this channel now")
    if not channel.needs_provider:
        return send_builtin(message, outgoing)
    try:
        specs = pool.providers_for(message.tenant_id, message.channel)
    except SecretsUnreadable as exc:
        # The deployment's fault (a missing encryption key), not the message's: no provider can
        # be tried until it is fixed, so the message waits (spending no attempt) until it expires.
        logger.error("Provider secrets unreadable for tenant %s: %s", message.tenant_id, exc)
        return Outcome(
            error=f"provider_config_unreadable: {exc}", retry_after=settings.ALERTFLOW_BREAKER_COOLDOWN_SECONDS
        )
    outcomes = [send_with_failover(message, out, specs, pool) for out in outgoing]
    return combine(outcomes)


def render(message: Message) -> dict:
    notification = message.notification
    if message.template_version_id:
        content = message.template_version.channels[message.channel]
        cache_key = (message.template_version_id, message.channel)
    else:
        content = notification.content[message.channel]
        cache_key = None
    recipient = message.recipient
    recipient_context = {
        "id": recipient.external_id,
        "name": recipient.name,
        "email": recipient.email,
        "phone": recipient.phone,
        "locale": recipient.locale,
        "data": recipient.data,
    }
    context = build_context(notification.tenant.name, recipient_context, notification.data)
    return render_channel(content, message.channel, context, cache_key=cache_key, passthrough=INTERRUPTIONS).fields


def outgoing_for(message: Message, channel: Channel, devices: list) -> list[Outgoing]:
    """The destinations to send to, read now: the recipient may have changed since accept."""
    recipient = message.recipient
    destinations = channel.destinations(recipient, devices)
    if destinations:
        message.to = channel.address(recipient, bool(devices))
    return [
        Outgoing(
            message_id=str(message.id),
            to=d.to,
            content=message.rendered,
            platform=d.platform,
            unsubscribe_url=unsubscribe_url(recipient, message.notification.category, d.to)
            if channel.one_click_unsubscribe
            else "",
        )
        for d in destinations
    ]


def send_builtin(message: Message, outgoing: list[Outgoing]) -> Outcome:
    """A channel AlertFlow delivers itself (in-app): no provider, failover or breaker."""
    delivery = builtin_delivery(message.channel)
    try:
        sent = [delivery.send(out) for out in outgoing]
    except ProviderError as exc:
        error = f"{exc.code}: {exc}" if exc.code else str(exc)
        return Outcome(permanent=exc.permanent, retry_after=exc.retry_after, provider=delivery.name, error=error)
    provider_message_id = ",".join(s.provider_message_id for s in sent)[:255]
    return Outcome(sent=True, provider=delivery.name, provider_message_id=provider_message_id)


def send_with_failover(message: Message, out: Outgoing, specs: list[ProviderSpec], pool: ProviderPool) -> Outcome:
    """Try each provider in priority order; a failure that is the provider's moves on to the next."""
    outcome = Outcome()
    candidates = [s for s in specs if not out.platform or out.platform in provider_class(s.channel, s.kind).platforms]
    if not candidates:
        outcome.permanent = True
        outcome.error = f"no_provider: none configured for {message.channel} {out.platform}".strip()
        return outcome
    for spec in candidates:
        if not pool.breaker_allows(spec):
            outcome.error, outcome.provider = "circuit_open: provider skipped while its breaker is open", spec.name
            outcome.retry_after = max(outcome.retry_after or 0, settings.ALERTFLOW_BREAKER_COOLDOWN_SECONDS)
            continue
        wait = guards.acquire_send(spec.id, spec.rate_limit)
        if wait is not None:
            outcome.error, outcome.provider = f"rate_limited: next send slot in {wait:.1f}s", spec.name
            outcome.retry_after = max(outcome.retry_after or 0, wait)
            continue
        pool.before_call(float(spec.config.get("timeout") or DEFAULT_TIMEOUT))
        started = timezone.now()
        clock = time.monotonic()
        try:
            result = pool.get(spec).send(out)
        except (ProviderError, AddressNotAllowed) as raised:
            exc = pool.get(spec).failure(raised)
            kind = DeliveryAttempt.Outcome.PERMANENT if exc.permanent else DeliveryAttempt.Outcome.TRANSIENT
            outcome.attempts.append(
                attempt(message, spec, started, clock, kind, error=str(exc), fault=(exc.fault, exc.code))
            )
            outcome.error, outcome.provider = f"{exc.code}: {exc}" if exc.code else str(exc), spec.name
            if exc.deactivate_device:
                dead_token(message, out.to, exc.code or "provider_rejected_token")
            elif exc.code == Code.UNSUBSCRIBED:
                # The address opted out with the provider (Twilio 21610: the number replied STOP
                # before we heard it): suppress it, so the next send stops before any call.
                with suppression_or_warning():
                    suppressions.suppress_one(message.tenant_id, message.channel, out.to, Suppression.Reason.SMS_STOP)
            outcome.retry_after = max(outcome.retry_after or 0, exc.retry_after or 0) or None
            if exc.fault == Fault.PROVIDER:
                # Credentials, account, configuration, rate or outage: the next provider may take
                # the message now, and this one's breaker counts the failure.
                pool.record_failure(spec)
                continue
            # The address's or the content's fault: every provider would answer the same, and
            # none of them is to blame, so the breaker does not count it.
            outcome.permanent = exc.permanent
            return outcome
        except INTERRUPTIONS:
            raise  # the task is being stopped: not the provider's answer, nor a bug
        except Exception as exc:
            # A bug, not a provider answer: dead-letter it (visible, replayable) instead of
            # retrying blindly, and log it for whoever fixes the bug.
            logger.exception("Provider %s raised an unclassified error for message %s", spec.kind, message.id)
            pool.unsure.add(spec.id)
            failed = DeliveryAttempt.Outcome.PERMANENT
            # Its type only: the text of an unexpected exception may quote anything (a response
            # body, a credential); the log above has it for whoever fixes the bug.
            error = f"provider_error: {type(exc).__name__}"
            outcome.attempts.append(
                attempt(message, spec, started, clock, failed, error=error, fault=("bug", "provider_error"))
            )
            outcome.permanent, outcome.error, outcome.provider = True, error, spec.name
            return outcome
        pool.record_success(spec)
        sent = DeliveryAttempt.Outcome.SENT
        outcome.attempts.append(
            attempt(message, spec, started, clock, sent, provider_message_id=result.provider_message_id)
        )
        outcome.sent, outcome.provider, outcome.provider_message_id, outcome.error = (
            True,
            spec.name,
            result.provider_message_id,
            "",
        )
        return outcome
    return outcome


@contextlib.contextmanager
def suppression_or_warning():
    """A suppression from a provider's answer, or a warning when Redis cannot take it
    (preferences.suppressions.SuppressionsUnavailable: nothing was written). The send's outcome
    stands either way; the provider gives the same answer at the next send to that address."""
    try:
        yield
    except suppressions.SuppressionsUnavailable:
        logger.warning("Suppression from a provider's answer not written: Redis unreachable", exc_info=True)


def dead_token(message: Message, token: str, reason: str) -> None:
    """A provider said this push token will never work: deactivate its device and suppress the
    token (a `dead_token` row the tenant sees in GET /suppressions, and that its
    `suppression.created` webhook announces), together. Re-registering the token through the
    API reactivates the device and lifts this suppression (preferences.services.register_device)."""
    with suppression_or_warning(), transaction.atomic():
        for device in Device.objects.filter(recipient=message.recipient, token=token):
            device.deactivate(reason)
        suppressions.suppress(message.tenant_id, message.channel, [token], Suppression.Reason.DEAD_TOKEN)


def attempt(
    message, spec, started, clock, outcome, *, error="", provider_message_id="", fault: tuple = ()
) -> DeliveryAttempt:
    """The attempt row of one provider call, which is also measured and logged here: the log line
    carries the request id of the send (alertflow/task_context.py) and never the address, the
    content or the provider's error text (which may quote either): `fault` is (whose fault, code)."""
    seconds = time.monotonic() - clock
    metrics.PROVIDER_CALLS.labels(spec.kind, outcome).observe(seconds)
    if fault:
        metrics.PROVIDER_ERRORS.labels(spec.kind, fault[0]).inc()
    logger.info(
        "provider_call: message %s channel %s provider %s (%s) %s in %d ms%s",
        message.id,
        message.channel,
        spec.kind,
        spec.id,
        outcome,
        seconds * 1000,
        f" ({fault[0]} fault: {fault[1] or 'unclassified'})" if fault else "",
    )
    return DeliveryAttempt(
        message=message,
        provider=spec.name,
        outcome=outcome,
        started=started,
        duration_ms=int(seconds * 1000),
        error=error[:2000],
        provider_message_id=provider_message_id,
    )


def combine(outcomes: list[Outcome]) -> Outcome:
    """A push to several devices is sent if any device got it."""
    if len(outcomes) == 1:
        return outcomes[0]
    combined = Outcome(attempts=[a for o in outcomes for a in o.attempts])
    delivered = [o for o in outcomes if o.sent]
    if delivered:
        combined.sent, combined.provider = True, delivered[0].provider
        combined.provider_message_id = ",".join(o.provider_message_id for o in delivered)[:255]
        return combined
    combined.permanent = all(o.permanent for o in outcomes)
    combined.error = "; ".join(o.error for o in outcomes if o.error)
    combined.retry_after = max((o.retry_after or 0 for o in outcomes), default=0) or None
    return combined
