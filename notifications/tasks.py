from celery import shared_task

from alertflow.queues import FAN_OUT_TASK

from . import services


@shared_task(name=FAN_OUT_TASK)
def fan_out(notification_id: str, after: int | None = None) -> int | None:
    """One step of a bulk or topic send's fan-out: one chunk of messages, then the next step."""
    return services.fan_out_step(notification_id, after)
