from celery import shared_task

from alertflow.queues import FAN_OUT_TASK

from . import services


@shared_task(name=FAN_OUT_TASK)
def fan_out(notification_id: str) -> int:
    """Write a bulk or topic send's messages in chunks and queue them in batches."""
    return services.fan_out(notification_id)
