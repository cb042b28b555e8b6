"""Runs paused before `paused` was a message status: their scheduled messages were pushed out of
the due poller's reach by adding HOLD (100 years) to `next_attempt` and `expires_at`. Forwards,
every message of a paused run that waits to be sent becomes `paused` with its real times (HOLD
taken off where it is still on: a reschedule or a cancel may have written a real time since).
Backwards, a paused run's `paused` messages become `scheduled` with HOLD added again, which the
previous code's resume takes off (a message that had no time, a queued one, gets its run's
pause time: due at the resume)."""

from datetime import timedelta

from django.db import migrations
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

# The offset the previous code added (notifications/campaigns.py, HOLD): no real time is half
# as far away.
HOLD = timedelta(days=365 * 100)
WAITING = ["scheduled", "queued", "retrying"]


def take_hold_off(apps, schema_editor):
    Message = apps.get_model("notifications", "Message")
    held = Message.objects.filter(notification__status="paused")
    far = timezone.now() + HOLD / 2
    for field in ("next_attempt", "expires_at"):
        held.filter(status="scheduled", **{f"{field}__gt": far}).update(**{field: F(field) - HOLD})
    held.filter(status__in=WAITING).update(status="paused")


def put_hold_back(apps, schema_editor):
    Message = apps.get_model("notifications", "Message")
    CampaignRun = apps.get_model("notifications", "CampaignRun")
    now = timezone.now()
    runs = CampaignRun.objects.filter(notification__status="paused").values_list("notification_id", "paused_at")
    for notification_id, paused_at in runs:
        Message.objects.filter(notification_id=notification_id, status="paused").update(
            status="scheduled",
            next_attempt=Coalesce(F("next_attempt"), Value(paused_at or now)) + HOLD,
            expires_at=F("expires_at") + HOLD,
        )


class Migration(migrations.Migration):
    dependencies = [("notifications", "0014_message_paused")]

    operations = [migrations.RunPython(take_hold_off, put_hold_back)]
