import uuid

from celery import shared_task
from celery.signals import worker_init, worker_process_shutdown, worker_shutdown
from django.core.validators import validate_email

from alertflow.queues import PRUNE_WEBHOOKS_TASK, RELAY_WEBHOOKS_TASK, SEND_BATCH_TASK, SEND_MESSAGE_TASK

from . import pipeline, sending, timers
from .receipts import receipt_url
from .webhooks import relay


@worker_init.connect
def warm_up(**kwargs) -> None:
    """Do once, in the worker's main process before its pool forks, what every pool process did
    on its first email: compile Django's email validator's regexes (a provider's config is
    validated when it is made) and fill the URL resolver (its receipt URL). That was 0.1 s of
    CPU per pool process, the largest part (17%) of the worker's CPU in a 1,000-single
    bench.e2e run with 4 processes."""
    validate_email("warm-up@example.com")
    receipt_url(str(uuid.UUID(int=0)))  # any provider row id: the URL pattern takes a UUID


@worker_process_shutdown.connect
@worker_shutdown.connect
def close_kept_connections(**kwargs) -> None:
    """Say goodbye (SMTP QUIT) on the connections kept between batches: a prefork pool
    process's at its exit, the worker's own with the solo or threads pool."""
    sending.kept.close_all()


@shared_task(name=SEND_MESSAGE_TASK)
def send_message(message_id: str) -> int:
    """One transactional message, its own task so it never waits behind a batch."""
    return pipeline.deliver([message_id])


@shared_task(name=SEND_BATCH_TASK)
def send_batch(message_ids: list[str]) -> int:
    """A chunk of a bulk send: one provider connection, results written in bulk."""
    return pipeline.deliver(message_ids)


@shared_task(name="delivery.enqueue_due")
def enqueue_due() -> int:
    return timers.enqueue_due()


@shared_task(name="delivery.sweep_stale")
def sweep_stale() -> dict:
    return timers.sweep_stale()


@shared_task(name=RELAY_WEBHOOKS_TASK)
def relay_webhooks() -> int:
    """Beat's due-webhook poller, on the webhooks queue: POST what is due."""
    return relay.relay_due()


@shared_task(name=PRUNE_WEBHOOKS_TASK)
def prune_webhooks() -> int:
    """Beat's hourly retention prune of webhook events, deliveries and attempts."""
    return relay.prune()
