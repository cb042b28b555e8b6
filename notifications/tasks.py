from celery import shared_task

from alertflow.queues import CAMPAIGN_TASK, FAN_OUT_TASK

from . import campaigns, services


@shared_task(name=FAN_OUT_TASK)
def fan_out(notification_id: str, after: int | None = None) -> int | None:
    """One step of a bulk or topic send's fan-out: one chunk of messages, then the next step."""
    return services.fan_out_step(notification_id, after)


@shared_task(name=CAMPAIGN_TASK)
def run_campaign(campaign_id: str) -> str | None:
    """Beat's tick for a campaign: start the run of the slot due now (once per slot)."""
    run = campaigns.trigger(campaign_id)
    return str(run.pk) if run else None
