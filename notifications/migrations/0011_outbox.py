import django.utils.timezone
from django.db import migrations, models

# Statement level: one NOTIFY per INSERT statement, however many rows it wrote, and no extra
# round trip for the request (the trigger runs inside its INSERT). PostgreSQL delivers it at
# commit, and not at all on rollback: the relay is woken exactly when there is something to publish.
CREATE_TRIGGER = """
CREATE FUNCTION notifications_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('alertflow_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER notifications_outbox_notify AFTER INSERT ON notifications_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notifications_outbox_notify();
"""
DROP_TRIGGER = """
DROP TRIGGER IF EXISTS notifications_outbox_notify ON notifications_outbox;
DROP FUNCTION IF EXISTS notifications_outbox_notify();
"""


def create_trigger(apps, schema_editor):
    # SQLite (`make run`) has no LISTEN/NOTIFY: its relay polls instead.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_TRIGGER)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0010_delivery_stats"),
    ]

    operations = [
        migrations.CreateModel(
            name="Outbox",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("task", models.CharField(max_length=64)),
                ("queue", models.CharField(max_length=32)),
                ("step", models.PositiveSmallIntegerField()),
                ("args", models.JSONField()),
                ("queued_at", models.FloatField()),
                ("request_id", models.CharField(blank=True, max_length=200)),
                ("created", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
