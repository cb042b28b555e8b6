import django.utils.timezone
from django.db import migrations, models


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
    ]
