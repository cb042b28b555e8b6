from celery import shared_task

from alertflow.queues import SEND_BATCH_TASK, SEND_MESSAGE_TASK

from . import pipeline, timers


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
