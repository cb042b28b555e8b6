"""The one preference decision the send pipeline calls: matrix, quiet hours across DST, cache."""

from datetime import UTC, datetime, time

import pytest
import redis
from django.core.cache import cache

from preferences import services
from preferences.models import Preference
from preferences.serializers import PreferencesSerializer
from preferences.services import Decision, cached_preferences, cached_preferences_many, decide
from tests.factories import CategoryFactory, RecipientFactory
from tests.notifications.conftest import EMAIL

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def set_prefs(recipient, document: dict) -> None:
    serializer = PreferencesSerializer(data=document, context={"tenant": recipient.tenant})
    serializer.is_valid(raise_exception=True)
    services.set_preferences(recipient, serializer.validated_data)


# --- the matrix ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["email", "sms", "push", "inapp"])
def test_everything_is_allowed_by_default(recipient, promo, channel):
    assert decide(recipient, promo, channel, at=NOON) == Decision("allowed")
    assert decide(recipient, None, channel, at=NOON) == Decision("allowed")


def test_channel_switch_off_blocks_the_channel_only(recipient, promo):
    set_prefs(recipient, {"channels": {"sms": False}})
    assert decide(recipient, promo, "sms", at=NOON) == Decision("blocked", "channel_opted_out")
    assert decide(recipient, None, "sms", at=NOON) == Decision("blocked", "channel_opted_out")
    assert decide(recipient, promo, "email", at=NOON).outcome == "allowed"


def test_category_opt_out_beats_an_enabled_channel(recipient, promo, tenant):
    set_prefs(recipient, {"categories": {"promo": {"email": False}}})
    assert decide(recipient, promo, "email", at=NOON) == Decision("blocked", "category_opted_out")
    assert decide(recipient, promo, "sms", at=NOON).outcome == "allowed"
    assert decide(recipient, CategoryFactory(tenant=tenant), "email", at=NOON).outcome == "allowed"


def test_category_opt_in_beats_a_disabled_channel(recipient, promo, tenant):
    set_prefs(recipient, {"channels": {"email": False}, "categories": {"promo": {"email": True}}})
    assert decide(recipient, promo, "email", at=NOON) == Decision("allowed")
    assert decide(recipient, CategoryFactory(tenant=tenant), "email", at=NOON).reason == "channel_opted_out"


def test_critical_category_ignores_opt_outs_and_quiet_hours(recipient, security):
    set_prefs(
        recipient,
        {
            "channels": {"sms": False},
            "categories": {"security": {"sms": False}},
            "quiet_hours": {"start": "00:00", "end": "23:59"},
        },
    )
    assert decide(recipient, security, "sms", at=NOON) == Decision("allowed", "critical")


def test_an_opt_out_blocks_rather_than_defers_in_quiet_hours(recipient):
    set_prefs(recipient, {"channels": {"sms": False}, "quiet_hours": {"start": "00:00", "end": "23:59"}})
    assert decide(recipient, None, "sms", at=NOON).outcome == "blocked"


def test_decide_refuses_an_unknown_channel_a_naive_time_and_a_foreign_category(recipient, outsider_tenant):
    with pytest.raises(ValueError):
        decide(recipient, None, "fax")
    with pytest.raises(ValueError):
        decide(recipient, None, "email", at=datetime(2026, 6, 1, 12))  # naive on purpose
    with pytest.raises(ValueError):
        decide(recipient, CategoryFactory(tenant=outsider_tenant), "email")


# --- quiet hours --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "start", "end", "at", "until"),
    [
        # Across midnight, in UTC.
        ("UTC", "22:00", "07:00", utc(2026, 6, 1, 23, 0), utc(2026, 6, 2, 7, 0)),
        ("UTC", "22:00", "07:00", utc(2026, 6, 1, 22, 0), utc(2026, 6, 2, 7, 0)),
        ("UTC", "22:00", "07:00", utc(2026, 6, 2, 6, 59), utc(2026, 6, 2, 7, 0)),
        ("UTC", "22:00", "07:00", utc(2026, 6, 2, 7, 0), None),
        ("UTC", "22:00", "07:00", utc(2026, 6, 1, 21, 59), None),
        # Within one day.
        ("UTC", "12:00", "14:00", utc(2026, 6, 1, 13, 0), utc(2026, 6, 1, 14, 0)),
        ("UTC", "12:00", "14:00", utc(2026, 6, 1, 14, 0), None),
        ("UTC", "12:00", "14:00", utc(2026, 6, 1, 11, 59), None),
        # The recipient's timezone, not UTC: 20:00 UTC is 22:00 in Paris in summer.
        ("Europe/Paris", "22:00", "07:00", utc(2026, 6, 1, 20, 30), utc(2026, 6, 2, 5, 0)),
        # New York springs forward on 2026-03-08 at 02:00 EST -> 03:00 EDT.
        ("America/New_York", "22:00", "07:00", utc(2026, 3, 8, 4, 0), utc(2026, 3, 8, 11, 0)),
        # 02:30 does not exist that night: the first valid instant after it, 03:00 EDT.
        ("America/New_York", "22:00", "02:30", utc(2026, 3, 8, 4, 0), utc(2026, 3, 8, 7, 0)),
        # New York falls back on 2026-11-01 at 02:00 EDT -> 01:00 EST.
        ("America/New_York", "22:00", "07:00", utc(2026, 11, 1, 3, 0), utc(2026, 11, 1, 12, 0)),
        # 01:30 happens twice: the first occurrence (EDT).
        ("America/New_York", "22:00", "01:30", utc(2026, 11, 1, 3, 0), utc(2026, 11, 1, 5, 30)),
        ("America/New_York", "01:00", "01:30", utc(2026, 11, 1, 5, 15), utc(2026, 11, 1, 5, 30)),
        # In the second pass of 01:00-01:30 (EST) the window already ended at its first occurrence.
        ("America/New_York", "01:00", "01:30", utc(2026, 11, 1, 6, 15), None),
        # Paris springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST) and falls back on
        # 2026-10-25 (03:00 CEST -> 02:00 CET).
        ("Europe/Paris", "22:00", "07:00", utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 5, 0)),
        ("Europe/Paris", "23:00", "02:30", utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 1, 0)),
        ("Europe/Paris", "23:00", "02:30", utc(2026, 10, 24, 21, 30), utc(2026, 10, 25, 0, 30)),
        ("Europe/Paris", "22:00", "07:00", utc(2026, 10, 24, 21, 30), utc(2026, 10, 25, 6, 0)),
    ],
)
def test_quiet_hours_defer_to_the_end_of_the_window_in_the_recipients_timezone(tenant, tz, start, end, at, until):
    recipient = RecipientFactory(tenant=tenant, timezone=tz)
    set_prefs(recipient, {"quiet_hours": {"start": start, "end": end}})
    expected = Decision("deferred", "quiet_hours", until) if until else Decision("allowed")
    decision = decide(recipient, None, "email", at=at)
    assert decision == expected
    if decision.until:
        assert decision.until.utcoffset().total_seconds() == 0


def test_quiet_hours_apply_to_non_critical_categories(recipient, promo):
    set_prefs(recipient, {"quiet_hours": {"start": "12:00", "end": "14:00"}})
    decision = decide(recipient, promo, "push", at=utc(2026, 6, 1, 13, 0))
    assert decision == Decision("deferred", "quiet_hours", utc(2026, 6, 1, 14, 0))


# --- the cache ----------------------------------------------------------------------------------


def test_warm_cache_answers_without_a_query(recipient, promo, security, django_assert_num_queries):
    # Written as a committed write leaves it (set_prefs's invalidation would wait for the commit of
    # the test's transaction, which never comes, and keep the entry out of the cache meanwhile).
    Preference.objects.create(recipient=recipient, channels={"sms": False}, quiet_start=time(22), quiet_end=time(7))
    decide(recipient, promo, "email", at=NOON)  # warms
    with django_assert_num_queries(0):
        assert decide(recipient, promo, "sms", at=NOON).reason == "channel_opted_out"
        assert decide(recipient, None, "email", at=utc(2026, 6, 1, 23)).outcome == "deferred"
        assert decide(recipient, security, "sms", at=NOON).outcome == "allowed"


def test_recipients_without_preferences_are_cached_too(recipient, django_assert_num_queries):
    decide(recipient, None, "email")
    with django_assert_num_queries(0):
        assert decide(recipient, None, "email").outcome == "allowed"


def test_preferences_put_invalidates_the_cache(admin, recipient, promo):
    assert decide(recipient, promo, "email", at=NOON).outcome == "allowed"
    response = admin.put("/api/v1/recipients/u1/preferences", {"channels": {"email": False}}, format="json")
    assert response.status_code == 200
    assert decide(recipient, promo, "email", at=NOON) == Decision("blocked", "channel_opted_out")


def test_recipient_put_invalidates_the_cached_timezone(admin, recipient):
    set_prefs(recipient, {"quiet_hours": {"start": "22:00", "end": "07:00"}})
    late = utc(2026, 6, 1, 23, 0)
    assert decide(recipient, None, "email", at=late).outcome == "deferred"
    # 23:00 UTC is 08:00 in Tokyo: outside the window.
    assert admin.put("/api/v1/recipients/u1", {"timezone": "Asia/Tokyo"}, format="json").status_code == 200
    assert decide(recipient, None, "email", at=late) == Decision("allowed")


def test_a_refused_send_leaves_its_inline_recipients_change_out_of_the_cache(admin, recipient):
    """A send's inline recipient is written, and its preferences read, in the send's transaction:
    when the send is then refused (403 here, 429 over quota) and rolled back, the timezone it
    carried stayed cached for PREFERENCES_CACHE_SECONDS, and later sends read quiet hours in a
    timezone the recipient never had."""
    Preference.objects.create(recipient=recipient, channels={"email": False})
    body = {"recipient": {"id": "u1", "timezone": "Asia/Tokyo"}, "channels": ["email"], "content": EMAIL}

    assert admin.post("/api/v1/notifications", body, format="json").status_code == 403

    recipient.refresh_from_db()
    assert recipient.timezone == "UTC"
    assert cached_preferences(recipient)["timezone"] == "UTC"


class BrokenCache:
    """Redis down: every call raises what redis-py raises."""

    def __init__(self):
        self.calls = 0

    def _fail(self, *args, **kwargs):
        self.calls += 1
        raise redis.exceptions.ConnectionError("Connection refused")

    get = set = delete = _fail


def test_decide_falls_back_to_the_database_when_the_cache_is_down(admin, recipient, promo, monkeypatch):
    response = admin.put("/api/v1/recipients/u1/preferences", {"channels": {"email": False}}, format="json")
    assert response.status_code == 200
    broken = BrokenCache()
    monkeypatch.setattr(services, "cache", broken)

    # Writes are refused, nothing written (tests/preferences/test_writes_without_redis.py) ...
    response = admin.put("/api/v1/recipients/u1/preferences", {"channels": {"sms": False}}, format="json")
    assert response.status_code == 503
    # ... and sends still get the right answer, from PostgreSQL.
    assert decide(recipient, promo, "email", at=NOON) == Decision("blocked", "channel_opted_out")
    assert decide(recipient, promo, "sms", at=NOON) == Decision("allowed")


def test_after_a_cache_error_decide_stops_asking_redis_for_a_while(recipient, monkeypatch):
    broken = BrokenCache()
    monkeypatch.setattr(services, "cache", broken)
    decide(recipient, None, "email")
    calls = broken.calls
    for _ in range(5):
        decide(recipient, None, "email")
    assert broken.calls == calls == 1  # each message would otherwise wait for a connect timeout


def test_cache_is_filled_under_the_tenant_and_recipient_key(recipient):
    decide(recipient, None, "email")
    entry = cache.get(services.cache_key(recipient.tenant_id, recipient.pk))
    assert entry == {"timezone": "UTC", "preferences": services.default_document()}


@pytest.mark.django_db
def test_batched_preferences_cost_three_round_trips_and_match_single_lookups(tenant, django_assert_max_num_queries):
    recipients = [RecipientFactory(tenant=tenant) for _ in range(20)]
    opted_out = recipients[3]
    Preference.objects.create(recipient=opted_out, channels={"email": False})

    with django_assert_max_num_queries(1):
        entries = cached_preferences_many(recipients)
    with django_assert_max_num_queries(0):
        assert cached_preferences_many(recipients) == entries  # now all from the cache

    assert entries[opted_out.pk] == cached_preferences(opted_out)
    assert entries[opted_out.pk]["preferences"]["channels"]["email"] is False
    assert decide(opted_out, None, "email", entry=entries[opted_out.pk]).outcome == "blocked"
