"""Campaigns: schedules in django-celery-beat's tables, runs fanned out by the shared fan-out."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from delivery.timers import enqueue_due
from notifications import campaigns, services
from notifications.models import Campaign, CampaignRun, Message, Notification
from tests.factories import CategoryFactory, RecipientFactory, TopicFactory

from .conftest import EMAIL

pytestmark = pytest.mark.django_db

WEEKLY = {"cron": "0 9 * * MON", "timezone": "Europe/Paris"}


@pytest.fixture
def digest(admin):
    response = admin.post("/api/v1/templates", {"code": "digest", "name": "Digest", "channels": EMAIL}, format="json")
    assert response.status_code == 201, response.content
    return "digest"


def create(client, **body):
    body = {"name": "Weekly", "template": "digest", "channels": ["email"], "audience": {"all": True}, **body}
    body.setdefault("schedule", WEEKLY)
    return client.post("/api/v1/campaigns", body, format="json")


def recipients(tenant, count, **fields):
    return [
        RecipientFactory(tenant=tenant, external_id=f"r{n}", email=f"r{n}@example.com", **fields) for n in range(count)
    ]


def messages_of(run):
    return Message.objects.filter(notification_id=run.notification_id)


def run_with_first_page(admin, tenant, monkeypatch) -> tuple[str, CampaignRun]:
    """A run of a campaign to 5 recipients, in pages of 2, with its first page written."""
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 2)
    recipients(tenant, 5)
    campaign_id = create(admin).json()["id"]
    run = CampaignRun.objects.get(pk=admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"])
    assert services.fan_out_chunk(run.notification_id).written == 2
    return campaign_id, run


# --- Schedules in django-celery-beat's tables ---------------------------------------------------


def test_a_cron_campaign_is_a_periodic_task_with_a_timezone_crontab(admin, digest):
    response = create(admin)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["next_run_at"] is not None
    assert datetime.fromisoformat(body["next_run_at"]).astimezone(ZoneInfo("Europe/Paris")).strftime("%a %H:%M") == (
        "Mon 09:00"
    )
    task = PeriodicTask.objects.get(name=f"campaign:{body['id']}")
    assert task.task == "notifications.run_campaign" and task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "9", "MON")
    assert str(task.crontab.timezone) == "Europe/Paris"
    assert task.args == f'["{body["id"]}"]'


def test_updating_the_schedule_updates_the_periodic_task(admin, digest):
    campaign_id = create(admin).json()["id"]

    response = admin.patch(
        f"/api/v1/campaigns/{campaign_id}",
        {"schedule": {"cron": "30 7 * * *", "timezone": "Asia/Tokyo"}},
        format="json",
    )

    assert response.status_code == 200, response.content
    task = PeriodicTask.objects.get(name=f"campaign:{campaign_id}")
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("30", "7", "Asia/Tokyo")
    assert PeriodicTask.objects.filter(name__startswith="campaign:").count() == 1


def test_a_one_off_campaign_is_a_clocked_one_off_task_and_can_become_a_cron(admin, digest):
    at = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    response = create(admin, schedule={"at": at.isoformat()})

    assert response.status_code == 201, response.content
    assert datetime.fromisoformat(response.json()["next_run_at"]) == at
    task = PeriodicTask.objects.get(name=f"campaign:{response.json()['id']}")
    assert task.one_off and task.clocked.clocked_time == at and task.crontab is None

    admin.patch(f"/api/v1/campaigns/{response.json()['id']}", {"schedule": WEEKLY}, format="json")

    task.refresh_from_db()
    assert task.crontab is not None and task.clocked is None and not task.one_off
    assert not ClockedSchedule.objects.exists()


def test_pausing_disables_the_task_and_clears_next_run_at(admin, digest):
    campaign_id = create(admin).json()["id"]

    response = admin.patch(f"/api/v1/campaigns/{campaign_id}", {"paused": True}, format="json")

    assert response.status_code == 200
    assert response.json()["next_run_at"] is None
    assert not PeriodicTask.objects.get(name=f"campaign:{campaign_id}").enabled
    response = admin.patch(f"/api/v1/campaigns/{campaign_id}", {"paused": False}, format="json")
    assert response.json()["next_run_at"] is not None
    assert PeriodicTask.objects.get(name=f"campaign:{campaign_id}").enabled


def test_deleting_the_campaign_deletes_its_periodic_task(admin, digest):
    one_off = create(admin, schedule={"at": (timezone.now() + timedelta(days=1)).isoformat()}).json()["id"]
    weekly = create(admin).json()["id"]

    assert admin.delete(f"/api/v1/campaigns/{one_off}").status_code == 204
    assert admin.delete(f"/api/v1/campaigns/{weekly}").status_code == 204

    assert not PeriodicTask.objects.filter(name__startswith="campaign:").exists()
    assert not ClockedSchedule.objects.exists()
    assert not Campaign.objects.exists()


def test_next_run_keeps_local_time_across_a_dst_change(admin, digest, tenant):
    campaign = Campaign(tenant=tenant, schedule={"cron": "0 9 * * *", "timezone": "Europe/Paris"})
    # Paris moves from UTC+1 to UTC+2 on Sunday 29 March 2026 at 02:00.
    saturday = datetime(2026, 3, 28, 10, 0, tzinfo=UTC)

    sunday = campaigns.next_run(campaign, after=saturday)
    monday = campaigns.next_run(campaign, after=sunday)

    assert sunday == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert monday == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert campaigns.next_run(campaign, after=datetime(2026, 3, 27, 10, 0, tzinfo=UTC)) == datetime(
        2026, 3, 28, 8, 0, tzinfo=UTC
    )  # 09:00 CET
    # Beat reads the same row the same way: due at 09:00 Paris time after the change.
    crontab = CrontabSchedule(minute="0", hour="9", timezone="Europe/Paris").schedule
    crontab.nowfun = lambda: datetime(2026, 3, 29, 7, 0, 5, tzinfo=UTC)
    assert crontab.is_due(datetime(2026, 3, 28, 8, 0, tzinfo=UTC)).is_due


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"cron": "61 9 * * *", "timezone": "UTC"}, "cron"),
        ({"cron": "0 9 * *", "timezone": "UTC"}, "cron"),
        ({"cron": "0 9 1 * MON", "timezone": "UTC"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": "0 9 * * *", "timezone": "../etc/passwd"}, "timezone"),
        ({"cron": "0 9 * * *", "timezone": "Etc"}, "timezone"),
    ],
)
def test_invalid_cron_or_timezone_is_400_naming_the_field(admin, digest, schedule, field):
    response = create(admin, schedule=schedule)

    assert response.status_code == 400
    assert field in response.json()["error"]["message"] or field in str(response.json()["error"]["details"])
    assert not Campaign.objects.exists() and not PeriodicTask.objects.filter(name__startswith="campaign:").exists()


@pytest.mark.parametrize(
    "audience",
    [
        {"topic": "nope"},
        {"all": False},
        {"recipients": ["ghost"]},
        {"filter": {"password": "x"}},
        {"filter": {"data.a__b": 1}},
        {},
    ],
)
def test_invalid_audience_is_400(admin, digest, audience):
    response = create(admin, audience=audience)

    assert response.status_code == 400
    assert "audience" in str(response.json()["error"])


def test_a_campaign_of_a_stored_category_with_an_unknown_channel_is_400_naming_the_category(admin, digest, tenant):
    CategoryFactory(tenant=tenant, key="legacy", channels=["email", "fax"])

    body = {"name": "Weekly", "template": "digest", "category": "legacy", "audience": {"all": True}, "schedule": WEEKLY}
    response = admin.post("/api/v1/campaigns", body, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["details"]["fields"]) == ["category"]
    assert not Campaign.objects.exists()


# --- Runs ---------------------------------------------------------------------------------------


def test_run_now_fans_out_through_the_bulk_path_at_low_priority(admin, digest, tenant):
    recipients(tenant, 3)
    opted_out = RecipientFactory(tenant=tenant, external_id="no", email="no@example.com")
    admin.put(f"/api/v1/recipients/{opted_out.external_id}/preferences", {"channels": {"email": False}}, format="json")
    campaign_id = create(admin).json()["id"]

    response = admin.post(f"/api/v1/campaigns/{campaign_id}/run")

    assert response.status_code == 202, response.content
    run = CampaignRun.objects.get(pk=response.json()["id"])
    assert run.audience_size == 4
    services.fan_out(run.notification_id)
    statuses = dict(messages_of(run).values_list("recipient__external_id", "status"))
    assert statuses == {"r0": "queued", "r1": "queued", "r2": "queued", "no": "suppressed"}
    assert set(messages_of(run).values_list("priority", "batched")) == {("low", True)}
    runs = admin.get(f"/api/v1/campaigns/{campaign_id}/runs").json()["results"]
    assert runs[0]["state"] == "completed"
    assert (runs[0]["audience_size"], runs[0]["queued"], runs[0]["suppressed"], runs[0]["sent"]) == (4, 3, 1, 0)
    assert runs[0]["finished_at"] is not None


def test_topic_and_filter_audiences(admin, digest, tenant):
    fr = recipients(tenant, 4)
    for n, recipient in enumerate(fr):
        recipient.locale, recipient.data = ("fr" if n % 2 else "en"), {"plan": "pro" if n < 2 else "free"}
        recipient.save()
    TopicFactory(tenant=tenant, key="news").recipients.add(fr[0], fr[3])

    def run_of(audience):
        campaign_id = create(admin, audience=audience).json()["id"]
        run = CampaignRun.objects.get(pk=admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"])
        services.fan_out(run.notification_id)
        return sorted(messages_of(run).values_list("recipient__external_id", flat=True))

    assert run_of({"topic": "news"}) == ["r0", "r3"]
    assert run_of({"filter": {"locale": "fr", "data.plan": "pro"}}) == ["r1"]
    assert run_of({"filter": {"data.plan": ["free", "gold"]}}) == ["r2", "r3"]
    assert run_of({"recipients": ["r3", "r0"]}) == ["r0", "r3"]


def test_two_ticks_for_one_slot_start_one_run(admin, digest, tenant):
    recipients(tenant, 2)
    campaign = Campaign.objects.get(pk=create(admin).json()["id"])
    tick = datetime(2026, 3, 30, 7, 0, 1, tzinfo=UTC)  # Monday 09:00:01 in Paris

    first = campaigns.trigger(campaign.pk, now=tick)
    second = campaigns.trigger(campaign.pk, now=tick + timedelta(seconds=20))

    assert first is not None and second is None
    assert first.slot == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert CampaignRun.objects.count() == 1 and Notification.objects.count() == 1
    # The next week's tick is a new slot.
    assert campaigns.trigger(campaign.pk, now=tick + timedelta(days=7)) is not None


def test_a_paused_campaign_ignores_beat_ticks(admin, digest):
    campaign_id = create(admin, paused=True).json()["id"]

    assert campaigns.trigger(campaign_id, now=datetime(2026, 3, 30, 7, 0, 1, tzinfo=UTC)) is None
    assert not CampaignRun.objects.exists()


def test_recipient_local_time_sends_each_at_nine_in_their_timezone(admin, digest, tenant):
    zones = {"paris": "Europe/Paris", "tokyo": "Asia/Tokyo", "ny": "America/New_York"}
    for name, zone in zones.items():
        RecipientFactory(tenant=tenant, external_id=name, email=f"{name}@example.com", timezone=zone)
    response = create(admin, schedule={"cron": "0 9 * * *", "timezone": "recipient"})
    task = PeriodicTask.objects.get(name=f"campaign:{response.json()['id']}")
    assert str(task.crontab.timezone) == "Etc/GMT-14"  # triggers at the earliest 09:00 on Earth
    slot_tick = datetime(2030, 6, 3, 19, 0, 2, tzinfo=UTC)  # 09:00 on 4 June at UTC+14

    run = campaigns.trigger(response.json()["id"], now=slot_tick)
    services.fan_out(run.notification_id)

    local = {
        m.recipient.external_id: m.next_attempt.astimezone(ZoneInfo(zones[m.recipient.external_id]))
        for m in messages_of(run).select_related("recipient")
    }
    assert {name: (at.date().isoformat(), at.hour, at.minute) for name, at in local.items()} == dict.fromkeys(
        zones, ("2030-06-04", 9, 0)
    )
    assert set(messages_of(run).values_list("status", flat=True)) == {"scheduled"}
    # Each waits for its own 09:00: expiry counts from there, not from the run's start.
    expires_in = timedelta(seconds=run.notification.expires_in)
    assert all(m.expires_at == m.next_attempt + expires_in for m in messages_of(run))


def test_a_crash_mid_fan_out_resumes_from_the_checkpoint_without_duplicates(admin, digest, tenant, monkeypatch):
    _, run = run_with_first_page(admin, tenant, monkeypatch)
    real_plan = services.plan

    def crash(*args, **kwargs):
        real_plan(*args, **kwargs)
        raise SystemExit("worker killed mid-page")

    monkeypatch.setattr(services, "plan", crash)
    with pytest.raises(SystemExit):
        services.fan_out_chunk(run.notification_id)  # the page's transaction never commits
    monkeypatch.setattr(services, "plan", real_plan)

    assert services.fan_out(run.notification_id) == 3
    per_recipient = list(messages_of(run).values_list("recipient__external_id", flat=True))
    assert sorted(per_recipient) == ["r0", "r1", "r2", "r3", "r4"]
    run.refresh_from_db()
    assert run.planned == 5


def test_pause_stops_the_fan_out_and_resume_continues_from_the_checkpoint(admin, digest, tenant, monkeypatch):
    campaign_id, run = run_with_first_page(admin, tenant, monkeypatch)
    run_id = run.pk

    paused = admin.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/pause")

    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert services.fan_out(run.notification_id) == 0  # a redelivered fan-out task does nothing
    assert messages_of(run).count() == 2
    assert admin.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/pause").status_code == 409

    resumed = admin.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/resume")

    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    assert services.fan_out(run.notification_id) == 3
    assert messages_of(run).count() == 5
    assert admin.get(f"/api/v1/campaigns/{campaign_id}/runs").json()["results"][0]["state"] == "completed"


def test_pause_holds_scheduled_messages_and_resume_shifts_them_by_the_pause(admin, digest, tenant):
    recipients(tenant, 4)
    campaign_id = create(admin, rate=2).json()["id"]
    run_id = admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"]
    run = CampaignRun.objects.get(pk=run_id)
    services.fan_out(run.notification_id)
    scheduled = messages_of(run).filter(status="scheduled")
    before = sorted(scheduled.values_list("next_attempt", flat=True))
    ids = list(scheduled.values_list("pk", flat=True))
    assert len(before) == 2
    Notification.objects.filter(pk=run.notification_id).update(status="fanning_out")  # still running

    admin.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/pause")

    assert enqueue_due(now=timezone.now() + timedelta(days=30)) == 0  # held: nothing goes due
    CampaignRun.objects.filter(pk=run_id).update(paused_at=timezone.now() - timedelta(minutes=10))
    admin.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/resume")
    after = sorted(Message.objects.filter(pk__in=ids).values_list("next_attempt", flat=True))
    assert [b - a for a, b in zip(before, after, strict=True)] == [
        pytest.approx(timedelta(minutes=10), abs=timedelta(seconds=5))
    ] * 2


def test_cancel_stops_the_run_and_cancels_what_is_not_sent(admin, digest, tenant, monkeypatch):
    campaign_id, run = run_with_first_page(admin, tenant, monkeypatch)
    run_id = run.pk

    response = admin.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/cancel")

    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert response.json()["finished_at"] is not None
    assert services.fan_out(run.notification_id) == 0
    assert set(messages_of(run).values_list("status", flat=True)) == {"cancelled"}
    assert admin.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/resume").status_code == 409


def test_the_rate_cap_paces_messages_per_minute(admin, digest, tenant):
    recipients(tenant, 5)
    campaign_id = create(admin, rate=2).json()["id"]
    run = CampaignRun.objects.get(pk=admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"])

    services.fan_out(run.notification_id)

    start = run.started
    by_minute = {}
    for message in messages_of(run):
        minute = 0 if message.status == "queued" else round((message.next_attempt - start).total_seconds() / 60)
        by_minute[minute] = by_minute.get(minute, 0) + 1
    assert by_minute == {0: 2, 1: 2, 2: 1}
    assert enqueue_due(now=start + timedelta(seconds=61)) == 2
    assert enqueue_due(now=start + timedelta(seconds=121)) == 1


def test_outsider_gets_404_for_campaigns_and_runs(admin, outsider, digest, tenant):
    recipients(tenant, 1)
    campaign_id = create(admin).json()["id"]
    run_id = admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"]

    assert outsider.get(f"/api/v1/campaigns/{campaign_id}").status_code == 404
    assert outsider.patch(f"/api/v1/campaigns/{campaign_id}", {"paused": True}, format="json").status_code == 404
    assert outsider.post(f"/api/v1/campaigns/{campaign_id}/run").status_code == 404
    assert outsider.get(f"/api/v1/campaigns/{campaign_id}/runs").status_code == 404
    for verb in ("pause", "resume", "cancel"):
        assert outsider.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/{verb}").status_code == 404
    assert outsider.delete(f"/api/v1/campaigns/{campaign_id}").status_code == 404
    assert outsider.get("/api/v1/campaigns").json()["count"] == 0
    assert admin.post(f"/api/v1/campaigns/{campaign_id}/runs/not-a-uuid/pause").status_code == 404
    assert Campaign.objects.get(pk=campaign_id).paused is False
    assert CampaignRun.objects.count() == 1


def test_a_member_reads_but_cannot_write(member, admin, digest):
    campaign_id = create(admin).json()["id"]

    assert member.get(f"/api/v1/campaigns/{campaign_id}").status_code == 200
    assert create(member).status_code == 403
    assert member.post(f"/api/v1/campaigns/{campaign_id}/run").status_code == 403


def test_django_admin_lists_runs_with_progress_and_runs_pauses_and_resumes(admin_client, admin, digest, tenant):
    recipients(tenant, 2)
    campaign_id = create(admin).json()["id"]
    changelist = "/admin/notifications/campaign/"

    admin_client.post(changelist, {"action": "run_now", "_selected_action": [campaign_id]})

    run = CampaignRun.objects.get(campaign_id=campaign_id)
    page = admin_client.get(f"{changelist}{campaign_id}/change/")
    assert page.status_code == 200
    assert "queued 0" in page.content.decode() and "running" in page.content.decode()
    admin_client.post(changelist, {"action": "pause", "_selected_action": [campaign_id]})
    run.notification.refresh_from_db()
    assert run.notification.status == "paused"
    assert not PeriodicTask.objects.get(name=f"campaign:{campaign_id}").enabled
    admin_client.post(changelist, {"action": "resume", "_selected_action": [campaign_id]})
    run.notification.refresh_from_db()
    assert run.notification.status == "fanning_out"
    assert PeriodicTask.objects.get(name=f"campaign:{campaign_id}").enabled


def test_django_admin_cancels_the_runs_with_anything_left_and_keeps_the_campaign(
    admin_client, admin, outsider, outsider_tenant, digest, tenant
):
    recipients(tenant, 2)
    campaign_id = create(admin).json()["id"]
    done = CampaignRun.objects.get(pk=admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"])
    services.fan_out(done.notification_id)
    messages_of(done).update(status="sent")  # nothing left of it
    running = CampaignRun.objects.get(pk=admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"])
    services.fan_out(running.notification_id)  # its messages are queued
    # Another tenant's running campaign, not selected.
    RecipientFactory(tenant=outsider_tenant, external_id="o1", email="o1@example.com")
    outsider.post("/api/v1/templates", {"code": "digest", "name": "Digest", "channels": EMAIL}, format="json")
    outsiders_id = create(outsider).json()["id"]
    outsiders_run = outsider.post(f"/api/v1/campaigns/{outsiders_id}/run").json()["id"]

    response = admin_client.post(
        "/admin/notifications/campaign/", {"action": "cancel_runs", "_selected_action": [campaign_id]}, follow=True
    )

    assert response.status_code == 200
    shown = [(m.level_tag, m.message) for m in response.context["messages"]]
    assert shown == [("info", "Cancelled 1 run(s) of 1 campaign(s).")]
    states = {run["id"]: run["state"] for run in admin.get(f"/api/v1/campaigns/{campaign_id}/runs").json()["results"]}
    assert states == {str(running.pk): "cancelled", str(done.pk): "completed"}
    assert set(messages_of(running).values_list("status", flat=True)) == {"cancelled"}
    assert set(messages_of(done).values_list("status", flat=True)) == {"sent"}
    assert admin.get(f"/api/v1/campaigns/{campaign_id}").status_code == 200
    assert PeriodicTask.objects.get(name=f"campaign:{campaign_id}").enabled
    [outsiders] = outsider.get(f"/api/v1/campaigns/{outsiders_id}/runs").json()["results"]
    assert (outsiders["id"], outsiders["state"]) == (outsiders_run, "running")


def test_django_admin_pause_names_a_run_that_finished_meanwhile(
    admin_client, admin, outsider, digest, tenant, monkeypatch
):
    recipients(tenant, 2)
    campaign_id = create(admin).json()["id"]
    finishing = CampaignRun.objects.get(pk=admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"])
    pause = campaigns.pause

    def fanned_out_first(run):
        # Its fan-out writes the last page after the admin read the run as running, and its
        # messages are sent: nothing of it is left to pause.
        monkeypatch.setattr(campaigns, "pause", pause)
        services.fan_out(run.notification_id)
        messages_of(run).update(status="sent")
        return pause(run)

    monkeypatch.setattr(campaigns, "pause", fanned_out_first)

    response = admin_client.post(
        "/admin/notifications/campaign/", {"action": "pause", "_selected_action": [campaign_id]}, follow=True
    )

    assert response.status_code == 200
    shown = [(m.level_tag, m.message) for m in response.context["messages"]]
    assert (
        "warning",
        f"Left as they were: {finishing}: This run is completed and none of its messages waits to be sent "
        "or is in a worker's hands: nothing to pause.",
    ) in shown
    assert ("info", "Paused 1 campaign(s) and 0 run(s).") in shown
    assert Campaign.objects.get(pk=campaign_id).paused is True
    assert admin.get(f"/api/v1/campaigns/{campaign_id}/runs").json()["results"][0]["state"] == "completed"
    assert outsider.get(f"/api/v1/campaigns/{campaign_id}").status_code == 404


def test_django_admin_deletes_a_campaign_whose_run_the_api_cancelled_meanwhile(
    admin_client, admin, outsider, digest, tenant, monkeypatch
):
    recipients(tenant, 2)
    campaign_id = create(admin).json()["id"]
    run_id = admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"]
    cancel = campaigns.cancel
    raced_by_the_api = []

    def cancelled_by_the_api_first(run):
        # The API's cancel commits after the delete read the run as running.
        if not raced_by_the_api:
            raced_by_the_api.append(None)  # the API's own call below goes straight to `cancel`
            raced_by_the_api[0] = admin.post(f"/api/v1/campaigns/{campaign_id}/runs/{run_id}/cancel").status_code
        return cancel(run)

    monkeypatch.setattr(campaigns, "cancel", cancelled_by_the_api_first)

    response = admin_client.post(f"/admin/notifications/campaign/{campaign_id}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert raced_by_the_api == [200]
    assert not Campaign.objects.filter(pk=campaign_id).exists()
    assert not PeriodicTask.objects.filter(name=f"campaign:{campaign_id}").exists()
    assert outsider.get(f"/api/v1/campaigns/{campaign_id}").status_code == 404


def test_recipient_local_time_reads_a_stored_timezone_that_is_not_one_as_utc(admin, outsider, digest, tenant):
    # "America" is a folder of the zone database (IsADirectoryError): the fan-out raised it.
    RecipientFactory(tenant=tenant, external_id="odd", email="odd@example.com", timezone="America")
    response = create(admin, schedule={"cron": "0 9 * * *", "timezone": "recipient"})
    slot_tick = datetime(2030, 6, 3, 19, 0, 2, tzinfo=UTC)

    run = campaigns.trigger(response.json()["id"], now=slot_tick)
    services.fan_out(run.notification_id)

    assert messages_of(run).get().next_attempt == datetime(2030, 6, 4, 9, 0, tzinfo=UTC)
    assert outsider.get(f"/api/v1/campaigns/{response.json()['id']}").status_code == 404
