"""A paused campaign run: its waiting messages are `paused` with their real times, nothing sends,
queues or expires them, and its resume moves them on by the pause's length."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from delivery import pipeline, state
from delivery.timers import enqueue_due, sweep_stale
from delivery.webhooks.models import WebhookEvent
from notifications import services
from notifications.models import CampaignRun, Message, Notification
from preferences.services import opt_out
from tests.factories import RecipientFactory
from tests.fakes.fixtures import *  # noqa: F403
from tests.pipeline.conftest import add_provider, smtp_config
from tests.webhooks.conftest import subscribe

from .test_campaigns import create, digest, messages_of, recipients  # noqa: F401 (digest: a fixture)

# Every test has the campaign's template, `digest`.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("digest")]

HOLD = timedelta(days=365 * 100)  # what the previous code added to a paused run's times


def first_page(admin, tenant, monkeypatch, size=3) -> tuple[str, CampaignRun, list[Message]]:
    """A run of a campaign to 5 recipients at 1 a minute, its first page of `size` written: the
    first message queued (its task in the broker), the others scheduled a minute apart. The run
    is still fanning out."""
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", size)
    recipients(tenant, 5)
    campaign_id = create(admin, rate=1).json()["id"]
    run = CampaignRun.objects.get(pk=admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"])
    assert services.fan_out_chunk(run.notification_id).written == size
    messages = list(messages_of(run).order_by("recipient__external_id"))
    assert [m.status for m in messages] == ["queued"] + ["scheduled"] * (size - 1)
    return campaign_id, run, messages


def retrying(message, next_attempt) -> None:
    """As a transient failure of its first attempt leaves it."""
    Message.objects.filter(pk=message.pk).update(
        status="retrying", attempts=1, reason="transient_failure", next_attempt=next_attempt
    )


def times(run) -> dict:
    return {m.pk: (m.next_attempt, m.expires_at) for m in messages_of(run)}


def url(campaign_id, run, verb) -> str:
    return f"/api/v1/campaigns/{campaign_id}/runs/{run.pk}/{verb}"


def test_a_paused_runs_messages_show_their_real_times_and_only_to_their_tenant(admin, outsider, tenant, monkeypatch):
    campaign_id, run, _ = first_page(admin, tenant, monkeypatch)
    before = times(run)

    assert admin.post(url(campaign_id, run, "pause")).status_code == 200

    listed = admin.get(f"/api/v1/messages?notification={run.notification_id}").json()["results"]
    assert {m["status"] for m in listed} == {"paused"}
    assert {
        m["id"]: (m["next_attempt"] and parse_datetime(m["next_attempt"]), parse_datetime(m["expires_at"]))
        for m in listed
    } == {str(pk): value for pk, value in before.items()}
    assert len(admin.get("/api/v1/messages?status=paused").json()["results"]) == 3
    [progress] = admin.get(f"/api/v1/campaigns/{campaign_id}/runs").json()["results"]
    assert (progress["state"], progress["queued"], progress["sent"]) == ("paused", 3, 0)
    # The outsider neither sees the run's messages nor resumes, pauses or cancels it.
    assert outsider.get(f"/api/v1/messages?notification={run.notification_id}").json()["results"] == []
    assert outsider.get(f"/api/v1/messages/{listed[0]['id']}").status_code == 404
    for verb in ("resume", "pause", "cancel"):
        assert outsider.post(url(campaign_id, run, verb)).status_code == 404
    assert Notification.objects.get(pk=run.notification_id).status == "paused"
    assert set(messages_of(run).values_list("status", flat=True)) == {"paused"}


def test_cancelling_a_paused_run_cancels_its_held_messages_keeping_their_real_expiry(admin, tenant, monkeypatch):
    campaign_id, run, _ = first_page(admin, tenant, monkeypatch)
    before = times(run)
    admin.post(url(campaign_id, run, "pause"))

    response = admin.post(url(campaign_id, run, "cancel"))

    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert {m.pk: (m.status, m.expires_at) for m in messages_of(run)} == {
        pk: ("cancelled", expires_at) for pk, (_, expires_at) in before.items()
    }
    assert admin.post(url(campaign_id, run, "resume")).status_code == 409
    assert enqueue_due(now=timezone.now() + timedelta(days=30)) == 0
    assert services.fan_out(run.notification_id) == 0


@pytest.mark.sqlite  # the due poller and the resume's time arithmetic, on `make run`'s database too
def test_resume_moves_every_held_message_on_by_the_pause(admin, tenant, monkeypatch):
    campaign_id, run, (queued, scheduled, failed_once) = first_page(admin, tenant, monkeypatch)
    retrying(failed_once, timezone.now() + timedelta(seconds=30))
    before = times(run)
    admin.post(url(campaign_id, run, "pause"))
    # While paused: nothing goes due, nothing expires, however late it gets.
    assert enqueue_due(now=timezone.now() + timedelta(days=30)) == 0
    assert set(messages_of(run).values_list("status", flat=True)) == {"paused"}
    CampaignRun.objects.filter(pk=run.pk).update(paused_at=timezone.now() - timedelta(minutes=10))
    # Something else touches one meanwhile: its recipient unsubscribes from email (the link's write).
    assert opt_out(failed_once.recipient, None, "email", source="unsubscribe_link")

    resumed = admin.post(url(campaign_id, run, "resume"))

    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    now = timezone.now()
    after = {m.pk: m for m in messages_of(run)}
    pause = pytest.approx(timedelta(minutes=10), abs=timedelta(seconds=5))
    # The queued one was due at the pause: it is due at the resume.
    assert after[queued.pk].status == "scheduled"
    assert after[queued.pk].next_attempt == pytest.approx(now, abs=timedelta(seconds=5))
    assert after[queued.pk].expires_at - before[queued.pk][1] == pause
    assert (after[scheduled.pk].status, after[scheduled.pk].reason) == ("scheduled", "")
    assert after[scheduled.pk].next_attempt - before[scheduled.pk][0] == pause
    assert after[scheduled.pk].expires_at - before[scheduled.pk][1] == pause
    assert (after[failed_once.pk].status, after[failed_once.pk].attempts) == ("cancelled", 1)
    assert after[failed_once.pk].reason == "channel_opted_out"
    assert enqueue_due(now=now + timedelta(seconds=5)) == 1  # the formerly queued one, alone


def test_a_retry_comes_back_retrying_after_the_pause(admin, tenant, monkeypatch):
    campaign_id, run, (_, _, failed_once) = first_page(admin, tenant, monkeypatch)
    retrying(failed_once, timezone.now() + timedelta(seconds=30))
    before = times(run)[failed_once.pk]
    admin.post(url(campaign_id, run, "pause"))
    CampaignRun.objects.filter(pk=run.pk).update(paused_at=timezone.now() - timedelta(minutes=10))

    admin.post(url(campaign_id, run, "resume"))

    message = Message.objects.get(pk=failed_once.pk)
    assert (message.status, message.attempts, message.reason) == ("retrying", 1, "transient_failure")
    pause = pytest.approx(timedelta(minutes=10), abs=timedelta(seconds=5))
    assert (message.next_attempt - before[0], message.expires_at - before[1]) == (pause, pause)


@pytest.mark.sqlite  # the due poller and the resume's time arithmetic, on `make run`'s database too
def test_nothing_of_a_paused_run_is_sent_by_a_redelivered_task_the_due_poller_or_the_sweeper(
    admin, tenant, monkeypatch, smtp_server
):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    campaign_id, run, (queued, scheduled, failed_once, claimed) = first_page(admin, tenant, monkeypatch, size=4)
    retrying(failed_once, timezone.now() - timedelta(seconds=1))  # due already
    # A worker claimed this one and died: its lease runs out during the pause.
    Message.objects.filter(pk=claimed.pk).update(
        status="sending", attempts=1, lease_until=timezone.now() + timedelta(seconds=5)
    )
    ids = [m.pk for m in (queued, scheduled, failed_once, claimed)]

    assert admin.post(url(campaign_id, run, "pause")).status_code == 200

    assert pipeline.deliver(ids) == 0  # the queued one's task, redelivered
    later = timezone.now() + timedelta(days=1)
    assert enqueue_due(now=later) == 0
    assert sweep_stale(now=later)["messages"] == 0
    assert pipeline.deliver(ids) == 0
    assert smtp_server.messages == []
    # The lapsed claim came back and is held with the others.
    assert set(messages_of(run).values_list("status", flat=True)) == {"paused"}

    admin.post(url(campaign_id, run, "resume"))

    # Each due in its time again: the lapsed claim's retry from when the poller found it.
    assert enqueue_due(now=later + timedelta(minutes=15)) == 4  # the lapsed claim's retry: `later` + the pause
    assert pipeline.deliver(ids) == 4
    assert len(smtp_server.messages) == 4


def test_a_paused_runs_messages_are_neither_rescheduled_nor_replayed(admin, tenant, monkeypatch):
    campaign_id, run, (_, _, dead) = first_page(admin, tenant, monkeypatch)
    Message.objects.filter(pk=dead.pk).update(status="failed", attempts=6, reason="retries_exhausted")
    admin.post(url(campaign_id, run, "pause"))
    send_at = (timezone.now() + timedelta(hours=1)).isoformat()

    rescheduled = admin.patch(f"/api/v1/notifications/{run.notification_id}", {"send_at": send_at}, format="json")
    retried = admin.post(f"/api/v1/messages/{dead.pk}/retry")
    replayed = admin.post("/api/v1/messages/retry", {"status": "failed"}, format="json")

    assert (rescheduled.status_code, rescheduled.json()["error"]["code"]) == (409, "run_paused")
    assert (retried.status_code, retried.json()["error"]["code"]) == (409, "run_paused")
    assert (replayed.status_code, replayed.json()["replayed"]) == (202, 0)
    assert sorted(messages_of(run).values_list("status", flat=True)) == ["failed", "paused", "paused"]
    assert enqueue_due(now=timezone.now() + timedelta(days=30)) == 0


def test_the_migration_takes_the_hold_off_paused_runs_and_back(admin, tenant, monkeypatch):
    migration = importlib.import_module("notifications.migrations.0015_paused_runs_without_hold")
    campaign_id, run, (queued, scheduled, rescheduled) = first_page(admin, tenant, monkeypatch)
    real = times(run)
    admin.post(url(campaign_id, run, "pause"))
    paused_at = CampaignRun.objects.get(pk=run.pk).paused_at
    # What the previous code left: its scheduled messages HOLD away, its queued one as it was,
    # and one an operator rescheduled meanwhile to a real time.
    messages = Message.objects.filter(pk__in=[scheduled.pk, rescheduled.pk])
    for message in messages:
        message.status, message.next_attempt, message.expires_at = (
            "scheduled",
            message.next_attempt + HOLD,
            message.expires_at + HOLD,
        )
    Message.objects.bulk_update(messages, ["status", "next_attempt", "expires_at"])
    Message.objects.filter(pk=queued.pk).update(status="queued")
    moved_to = timezone.now() + timedelta(hours=1)
    Message.objects.filter(pk=rescheduled.pk).update(next_attempt=moved_to)
    untouched = Notification.objects.create(tenant=tenant, status="accepted")
    other = Message.objects.create(
        tenant=tenant,
        notification=untouched,
        recipient=queued.recipient,
        channel="email",
        status="scheduled",
        next_attempt=moved_to,
    )

    migration.take_hold_off(apps, None)

    after = {m.pk: (m.status, m.next_attempt, m.expires_at) for m in messages_of(run)}
    assert after == {
        queued.pk: ("paused", *real[queued.pk]),
        scheduled.pk: ("paused", *real[scheduled.pk]),
        rescheduled.pk: ("paused", moved_to, real[rescheduled.pk][1]),
    }
    assert Message.objects.get(pk=other.pk).status == "scheduled"

    migration.put_hold_back(apps, None)

    back = {m.pk: (m.status, m.next_attempt, m.expires_at) for m in messages_of(run)}
    assert back == {
        queued.pk: ("scheduled", paused_at + HOLD, real[queued.pk][1] + HOLD),
        scheduled.pk: ("scheduled", real[scheduled.pk][0] + HOLD, real[scheduled.pk][1] + HOLD),
        rescheduled.pk: ("scheduled", moved_to + HOLD, real[rescheduled.pk][1] + HOLD),
    }


# --- A run whose fan-out is done, with messages still waiting (a rate-paced run) ---------------


def fanned_out(admin, tenant, count=5) -> tuple[str, CampaignRun, list[Message]]:
    """A run of a campaign to `count` recipients at 1 a minute, its fan-out done (the run
    `completed`): the first message queued, the others scheduled a minute apart, for minutes."""
    recipients(tenant, count)
    campaign_id = create(admin, rate=1).json()["id"]
    run = CampaignRun.objects.get(pk=admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"])
    services.fan_out(run.notification_id)
    messages = list(messages_of(run).order_by("recipient__external_id"))
    assert [m.status for m in messages] == ["queued"] + ["scheduled"] * (count - 1)
    assert progress_of(admin, campaign_id)["state"] == "completed"
    return campaign_id, run, messages


def progress_of(client, campaign_id) -> dict:
    [run] = client.get(f"/api/v1/campaigns/{campaign_id}/runs").json()["results"]
    return run


def test_a_completed_run_with_messages_waiting_is_paused_and_sends_nothing_until_resumed(
    admin, tenant, monkeypatch, smtp_server
):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    campaign_id, run, (queued, scheduled, failed_once, claimed, last) = fanned_out(admin, tenant)
    retrying(failed_once, timezone.now() - timedelta(seconds=1))  # due already
    # A worker claimed this one and died: its lease runs out during the pause.
    Message.objects.filter(pk=claimed.pk).update(
        status="sending", attempts=1, lease_until=timezone.now() + timedelta(seconds=5)
    )
    finished_at = progress_of(admin, campaign_id)["finished_at"]
    before = times(run)
    ids = [m.pk for m in (queued, scheduled, failed_once, claimed, last)]

    paused = admin.post(url(campaign_id, run, "pause"))

    assert paused.status_code == 200, paused.content
    assert (paused.json()["state"], paused.json()["finished_at"]) == ("paused", finished_at)
    assert pipeline.deliver(ids) == 0  # the queued one's task, redelivered
    later = timezone.now() + timedelta(days=1)
    assert enqueue_due(now=later) == 0
    assert sweep_stale(now=later) == {"messages": 0, "fan_outs": 0}
    assert pipeline.deliver(ids) == 0
    assert smtp_server.messages == []
    # The lapsed claim came back and is held with the others.
    assert set(messages_of(run).values_list("status", flat=True)) == {"paused"}
    body = progress_of(admin, campaign_id)
    assert (body["state"], body["queued"], body["sent"], body["finished_at"]) == ("paused", 5, 0, finished_at)
    assert admin.get(f"/api/v1/notifications/{run.notification_id}").json()["status"] == "scheduled"
    CampaignRun.objects.filter(pk=run.pk).update(paused_at=timezone.now() - timedelta(minutes=10))
    # A newcomer to the audience: the run's fan-out is over, it gets nothing.
    RecipientFactory(tenant=tenant, external_id="newcomer", email="newcomer@example.com")

    resumed = admin.post(url(campaign_id, run, "resume"))

    assert resumed.status_code == 200, resumed.content
    assert (resumed.json()["state"], resumed.json()["finished_at"]) == ("completed", finished_at)
    assert Notification.objects.get(pk=run.notification_id).status == "accepted"
    now = timezone.now()
    after = {m.pk: m for m in messages_of(run)}
    pause = pytest.approx(timedelta(minutes=10), abs=timedelta(seconds=5))
    assert (after[queued.pk].status, after[queued.pk].next_attempt) == (
        "scheduled",
        pytest.approx(now, abs=timedelta(seconds=5)),
    )
    for message in (scheduled, last):
        assert after[message.pk].status == "scheduled"
        assert after[message.pk].next_attempt - before[message.pk][0] == pause
        assert after[message.pk].expires_at - before[message.pk][1] == pause
    assert (after[failed_once.pk].status, after[failed_once.pk].next_attempt - before[failed_once.pk][0]) == (
        "retrying",
        pause,
    )
    assert sweep_stale(now=later)["fan_outs"] == 0
    assert services.fan_out(run.notification_id) == 0
    assert enqueue_due(now=now + timedelta(seconds=5)) == 1  # the formerly queued one, alone
    assert enqueue_due(now=later + timedelta(minutes=15)) == 4  # the lapsed claim's retry: `later` + the pause
    assert pipeline.deliver(ids) == 5
    assert len(smtp_server.messages) == 5 and messages_of(run).count() == 5
    assert progress_of(admin, campaign_id)["sent"] == 5


def test_cancelling_a_run_paused_after_its_fan_out_cancels_what_waits(admin, tenant):
    campaign_id, run, _ = fanned_out(admin, tenant)
    Message.objects.filter(notification_id=run.notification_id, status="queued").update(
        status="sent", sent=timezone.now()
    )
    assert admin.post(url(campaign_id, run, "pause")).status_code == 200

    response = admin.post(url(campaign_id, run, "cancel"))

    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["sent"]) == ("cancelled", 1)
    assert sorted(messages_of(run).values_list("status", flat=True)) == ["cancelled"] * 4 + ["sent"]
    assert admin.post(url(campaign_id, run, "resume")).json()["error"]["code"] == "not_paused"
    assert enqueue_due(now=timezone.now() + timedelta(days=30)) == 0


def nothing_left(admin, tenant) -> tuple[str, CampaignRun, Message]:
    """A completed run (`fanned_out`, 3 recipients) with nothing left to send: every message
    sent. The campaign's id, the run, its first message."""
    campaign_id, run, (first, *rest) = fanned_out(admin, tenant, count=3)
    Message.objects.filter(pk__in=[first.pk, *(m.pk for m in rest)]).update(status="sent", attempts=1)
    return campaign_id, run, first


def in_a_workers_hands(message) -> None:
    """As a worker's claim leaves it: a transient failure or a lapsed lease may bring it back."""
    Message.objects.filter(pk=message.pk).update(status="sending")


def assert_nothing_to(verb: str, refused) -> None:
    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "not_running",
        "message": f"This run is completed and none of its messages waits to be sent or is in a worker's hands: "
        f"nothing to {verb}.",
        "details": {},
    }


def test_a_completed_run_is_paused_only_while_something_of_it_is_left_to_send(admin, tenant):
    campaign_id, run, first = nothing_left(admin, tenant)

    refused = admin.post(url(campaign_id, run, "pause"))

    assert_nothing_to("pause", refused)
    assert Notification.objects.get(pk=run.notification_id).status == "accepted"
    assert CampaignRun.objects.get(pk=run.pk).paused_at is None
    assert sorted(messages_of(run).values_list("status", flat=True)) == ["sent", "sent", "sent"]
    # One in a worker's hands may come back (then paused when it comes due): the run is paused.
    in_a_workers_hands(first)
    assert admin.post(url(campaign_id, run, "pause")).json()["state"] == "paused"
    again = admin.post(url(campaign_id, run, "pause"))
    assert (again.status_code, again.json()["error"]["code"]) == (409, "not_running")


def test_the_outsider_cannot_pause_resume_or_cancel_a_completed_run(admin, outsider, tenant):
    campaign_id, run, _ = fanned_out(admin, tenant)
    statuses = sorted(messages_of(run).values_list("status", flat=True))

    for verb in ("pause", "resume", "cancel"):
        assert outsider.post(url(campaign_id, run, verb)).status_code == 404
    assert Notification.objects.get(pk=run.notification_id).status == "accepted"
    assert sorted(messages_of(run).values_list("status", flat=True)) == statuses
    assert admin.post(url(campaign_id, run, "pause")).status_code == 200
    for verb in ("resume", "pause", "cancel"):
        assert outsider.post(url(campaign_id, run, verb)).status_code == 404
    assert Notification.objects.get(pk=run.notification_id).status == "paused"
    assert set(messages_of(run).values_list("status", flat=True)) == {"paused"}
    assert CampaignRun.objects.get(pk=run.pk).paused_at is not None


def test_a_run_whose_paused_messages_were_all_withdrawn_completes_at_its_resume(admin, tenant, webhook_receiver):
    subscribe(admin, webhook_receiver.endpoint, ["notification.completed"])
    campaign_id, run, messages = fanned_out(admin, tenant, count=2)
    admin.post(url(campaign_id, run, "pause"))
    for message in messages:  # each recipient unsubscribes meanwhile
        assert opt_out(message.recipient, None, "email", source="unsubscribe_link")
    assert not WebhookEvent.objects.filter(type="notification.completed").exists()  # paused: not done

    assert admin.post(url(campaign_id, run, "resume")).json()["state"] == "completed"

    [completed] = WebhookEvent.objects.filter(type="notification.completed")
    assert completed.payload["data"]["notification_id"] == str(run.notification_id)
    assert completed.payload["data"]["counts"] == {"cancelled": 2}


def test_django_admin_pauses_a_completed_run_with_messages_waiting(admin_client, admin, tenant):
    campaign_id, run, _ = fanned_out(admin, tenant)
    done_id = admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"]
    services.fan_out(CampaignRun.objects.get(pk=done_id).notification_id)
    Message.objects.filter(notification__campaign_run=done_id).update(status="sent")  # nothing waits
    changelist = "/admin/notifications/campaign/"

    response = admin_client.post(changelist, {"action": "pause", "_selected_action": [campaign_id]}, follow=True)

    assert ("info", "Paused 1 campaign(s) and 1 run(s).") in [
        (m.level_tag, m.message) for m in response.context["messages"]
    ]
    assert set(messages_of(run).values_list("status", flat=True)) == {"paused"}
    assert Notification.objects.get(campaign_run=done_id).status == "accepted"
    admin_client.post(changelist, {"action": "resume", "_selected_action": [campaign_id]})
    assert Notification.objects.get(pk=run.notification_id).status == "accepted"
    assert "paused" not in set(messages_of(run).values_list("status", flat=True))


# --- Cancel of a run whose fan-out is done, with messages still waiting -------------------------


def test_cancelling_a_completed_run_cancels_its_waiting_messages_and_none_is_sent_after(
    admin, tenant, smtp_server, webhook_receiver
):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    subscribe(admin, webhook_receiver.endpoint, ["notification.completed"])
    campaign_id, run, (queued, scheduled, failed_once, claimed, sent) = fanned_out(admin, tenant)
    retrying(failed_once, timezone.now() - timedelta(seconds=1))  # due already
    # In a worker's hands (its lease lasts beyond the checks below).
    Message.objects.filter(pk=claimed.pk).update(
        status="sending", attempts=1, lease_until=timezone.now() + timedelta(days=2)
    )
    Message.objects.filter(pk=sent.pk).update(status="sent", sent=timezone.now())
    finished_at = progress_of(admin, campaign_id)["finished_at"]
    ids = [m.pk for m in (queued, scheduled, failed_once, claimed, sent)]

    response = admin.post(url(campaign_id, run, "cancel"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["queued"], body["sent"]) == ("cancelled", 5, 1)
    assert body["finished_at"] not in (None, finished_at)  # the cancel's time
    statuses = {m.pk: m.status for m in messages_of(run)}
    assert statuses == {
        queued.pk: "cancelled",
        scheduled.pk: "cancelled",
        failed_once.pk: "cancelled",
        claimed.pk: "sending",  # a claim is left to its worker (forward only)
        sent.pk: "sent",
    }
    assert pipeline.deliver(ids) == 0  # the queued one's task, redelivered
    later = timezone.now() + timedelta(days=1)
    assert enqueue_due(now=later) == 0
    assert sweep_stale(now=later) == {"messages": 0, "fan_outs": 0}
    assert services.fan_out(run.notification_id) == 0
    assert smtp_server.messages == []
    # The claimed one's worker records its send: counted, and the cancelled run is not `completed`.
    Message.objects.filter(pk=claimed.pk).move("sent", sent=timezone.now())
    detail = admin.get(f"/api/v1/notifications/{run.notification_id}").json()
    assert (detail["status"], detail["counts"]) == ("cancelled", {"cancelled": 3, "sent": 2})
    assert progress_of(admin, campaign_id)["sent"] == 2
    assert not WebhookEvent.objects.filter(type="notification.completed").exists()
    for verb, code in (("resume", "not_paused"), ("pause", "not_running"), ("cancel", "not_running")):
        refused = admin.post(url(campaign_id, run, verb))
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, code)
    assert refused.json()["error"]["message"] == (
        "Only a running, paused or completed run can be cancelled; this one is cancelled."
    )


def test_what_was_in_a_workers_hands_at_the_cancel_is_cancelled_when_it_comes_back(admin, tenant, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    campaign_id, run, (died, failing, *waiting) = fanned_out(admin, tenant, count=4)
    Message.objects.filter(pk=failing.pk).update(status="queued")
    lease = state.claim([died.pk, failing.pk])  # two workers' claims (one call here)
    assert admin.post(url(campaign_id, run, "cancel")).json()["state"] == "cancelled"
    # One worker's send fails for now (its providers are unavailable): a retry is due soon.
    failing = Message.objects.get(pk=failing.pk)
    state.settle(failing, state.Outcome(retry_after=1))
    state.record([failing], [], lease)
    assert Message.objects.get(pk=failing.pk).status == "retrying"

    # The other's worker died: its lease runs out, and it would be retried too.
    assert enqueue_due(now=timezone.now() + timedelta(hours=1)) == 0

    assert {m.pk: (m.status, m.reason) for m in messages_of(run)} == {
        m.pk: ("cancelled", "cancelled") for m in (died, failing, *waiting)
    }
    assert pipeline.deliver([m.pk for m in (died, failing, *waiting)]) == 0
    assert smtp_server.messages == []


def test_a_completed_run_is_cancelled_only_while_something_of_it_is_left_to_send(admin, tenant):
    campaign_id, run, first = nothing_left(admin, tenant)
    before = progress_of(admin, campaign_id)

    refused = admin.post(url(campaign_id, run, "cancel"))

    assert_nothing_to("cancel", refused)
    notification = Notification.objects.get(pk=run.notification_id)
    assert (notification.status, notification.cancelled) == ("accepted", None)
    assert sorted(messages_of(run).values_list("status", flat=True)) == ["sent", "sent", "sent"]
    assert progress_of(admin, campaign_id) == before
    # One in a worker's hands may come back as a retry: the run is cancelled, and so is the retry.
    in_a_workers_hands(first)
    assert admin.post(url(campaign_id, run, "cancel")).json()["state"] == "cancelled"
    retrying(first, timezone.now() - timedelta(seconds=1))
    assert enqueue_due() == 0
    assert sorted(messages_of(run).values_list("status", flat=True)) == ["cancelled", "sent", "sent"]


def test_the_outsider_cannot_cancel_a_completed_run_with_messages_waiting(admin, outsider, tenant):
    campaign_id, run, _ = fanned_out(admin, tenant)
    statuses = sorted(messages_of(run).values_list("status", flat=True))

    assert outsider.post(url(campaign_id, run, "cancel")).status_code == 404

    assert Notification.objects.get(pk=run.notification_id).status == "accepted"
    assert sorted(messages_of(run).values_list("status", flat=True)) == statuses
    assert progress_of(admin, campaign_id)["state"] == "completed"
    # Its own tenant cancels it; the outsider still neither sees nor touches it.
    assert admin.post(url(campaign_id, run, "cancel")).json()["state"] == "cancelled"
    for verb in ("cancel", "resume", "pause"):
        assert outsider.post(url(campaign_id, run, verb)).status_code == 404
    assert outsider.get(f"/api/v1/campaigns/{campaign_id}/runs").status_code == 404
    assert outsider.get(f"/api/v1/messages?notification={run.notification_id}").json()["results"] == []


def test_django_admin_deleting_a_campaign_cancels_its_completed_run_with_messages_waiting(admin_client, admin, tenant):
    campaign_id, run, _ = fanned_out(admin, tenant)
    done_id = admin.post(f"/api/v1/campaigns/{campaign_id}/run").json()["id"]
    done = Notification.objects.get(campaign_run=done_id)
    services.fan_out(done.pk)
    Message.objects.filter(notification=done).update(status="sent")  # nothing of it waits

    response = admin_client.post(f"/admin/notifications/campaign/{campaign_id}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not CampaignRun.objects.filter(campaign_id=campaign_id).exists()
    notification = Notification.objects.get(pk=run.notification_id)
    assert notification.status == "cancelled"
    assert set(Message.objects.filter(notification=notification).values_list("status", flat=True)) == {"cancelled"}
    assert enqueue_due(now=timezone.now() + timedelta(days=30)) == 0
    # The run with nothing left to send stays as it was: completed, its messages sent.
    done.refresh_from_db()
    assert (done.status, done.cancelled) == ("accepted", None)
    assert set(Message.objects.filter(notification=done).values_list("status", flat=True)) == {"sent"}
