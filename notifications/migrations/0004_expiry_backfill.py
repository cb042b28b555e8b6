"""Messages accepted before expiry existed and still waiting get one: a full default window
from now for their priority (not from their creation, which would expire a backlog at once)."""

from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone

WAITING = ["scheduled", "queued", "retrying", "sending"]


def give_waiting_messages_an_expiry(apps, schema_editor):
    Message = apps.get_model("notifications", "Message")
    now = timezone.now()
    for priority, seconds in settings.ALERTFLOW_EXPIRES_IN.items():
        Message.objects.filter(status__in=WAITING, expires_at__isnull=True, priority=priority).update(
            expires_at=now + timedelta(seconds=seconds)
        )


class Migration(migrations.Migration):
    dependencies = [("notifications", "0003_expiry")]

    # Backwards: the column goes with 0003; nothing to undo here.
    operations = [migrations.RunPython(give_waiting_messages_an_expiry, migrations.RunPython.noop)]
