"""Claim, render, send, record, settle: DESIGN section 3, steps 3 to 6.

`deliver` takes message ids (one for a transactional send, up to a batch for bulk sends),
claims them, sends each through `sending` and writes what happened through `state`: the
message's row (`state`) and the provider calls (`sending`) are kept apart, and this module
only puts them in order.
"""

from alertflow import versioned_cache
from alertflow.channels import CHANNELS
from alertflow.compiled import CompiledLoad
from notifications.models import Message

from .sending import INTERRUPTIONS, ProviderPool, active_devices, send_one, suppressions_for
from .state import claim, record, release, settle

# A batch writes its results every this many messages: few round trips, and a worker killed
# mid-batch leaves at most this many sent-but-unrecorded messages, which are sent again once its
# lease runs out (the duplicates a crash can cost, counted by bench/drill.py).
FLUSH_EVERY = 25

# A batch's messages with everything rendering and sending read, in one query, compiled once per
# batch size (alertflow/compiled.py: compiling it was a fifth of a single send's worker CPU).
load = CompiledLoad(
    Message,
    lambda ids: (
        Message.objects.filter(pk__in=ids)
        .select_related(
            "recipient", "notification", "notification__tenant", "notification__category", "template_version"
        )
        # A bulk send's target list and stored response can be large; rendering needs neither.
        .defer("notification__targets", "notification__response")
    ),
)


def deliver(message_ids: list) -> int:
    """Send the given messages if this call claims them; return how many were sent."""
    # The batch reads what it needs of each tenant from Redis (the suppressions fact, the
    # providers' and webhook subscriptions' cache versions) in one MGET at its first use, the
    # suppressions check just before the provider calls, and keeps it to its end, as a web request
    # does: a change made meanwhile is seen by the next batch. The fact and the providers were
    # read once a batch already; the subscriptions, once a record.
    with versioned_cache.scope():
        return _deliver(message_ids)


def _deliver(message_ids: list) -> int:
    lease = claim(message_ids)
    if not lease:
        return 0
    messages = load(lease.ids)
    devices = active_devices([m.recipient_id for m in messages if CHANNELS[m.channel].uses_devices])
    # Checked again here, just before the provider calls: an address suppressed after the
    # fan-out (a bounce, a complaint, a STOP) is not sent to. One query for the batch.
    found = suppressions_for(messages, devices)
    pool = ProviderPool(before_call=lease.cover)
    done, attempts, sent = [], [], 0
    settled = set()
    finished = False
    try:
        for message in messages:
            lease.cover()
            outcome = send_one(message, pool, devices, found)
            settle(message, outcome)
            settled.add(message.pk)
            done.append(message)
            attempts.extend(outcome.attempts)
            sent += outcome.sent
            if len(done) >= FLUSH_EVERY:
                record(done, attempts, lease)
                done, attempts = [], []
        finished = True
    except INTERRUPTIONS as exc:
        # Put back what this batch holds and has not settled, then let the interruption go on.
        unsettled = [m for m in messages if m.pk not in settled]
        error = f"interrupted: {type(exc).__name__} while sending; the send may have left"
        release(unsettled[:1], unsettled[1:], error, lease)
        raise
    finally:
        # Connections go back for the next batch only after a batch that ended well.
        pool.close(keep=finished)
        record(done, attempts, lease)
    return sent
