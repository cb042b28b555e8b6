"""A preference write Redis cannot hear of is refused (preferences.services.PreferencesUnavailable,
the same refusal as a suppression's: alertflow.redis.WriteRefused): committed unheard, an opt-out
would be ignored by every process still holding the old document, for up to 15 minutes."""

import pytest
import redis
from django.core.cache import cache
from django.test import override_settings

from preferences import services
from preferences.models import Preference
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db

OPT_OUT = {"channels": {"email": False}}


def redis_unreachable():
    """The versions' Redis out of reach (nothing listens on port 1)."""
    return override_settings(REDIS_URL="redis://127.0.0.1:1/0")


@pytest.fixture
def cache_unreachable(monkeypatch):
    """The preferences cache's Redis fails a delete, the versions' Redis still answers."""

    def refuse(*args, **kwargs):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(cache, "delete", refuse)


def assert_refused(response) -> None:
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "preferences_unavailable"


def test_a_put_redis_cannot_hear_of_is_a_503_and_writes_nothing(admin, recipient):
    with redis_unreachable():
        assert_refused(admin.put("/api/v1/recipients/u1/preferences", OPT_OUT, format="json"))
    assert not Preference.objects.exists()
    # Redis back: the client's retry is taken, and the next decision sees it.
    assert admin.put("/api/v1/recipients/u1/preferences", OPT_OUT, format="json").status_code == 200
    assert services.decide(recipient, None, "email").reason == services.Reason.CHANNEL_OPTED_OUT


def test_a_put_whose_cache_delete_fails_is_a_503_and_writes_nothing(admin, recipient, cache_unreachable):
    assert services.cached_preferences(recipient)["preferences"]["channels"]["email"] is True  # cached
    assert_refused(admin.put("/api/v1/recipients/u1/preferences", OPT_OUT, format="json"))
    assert not Preference.objects.exists()


def test_a_refused_put_keeps_the_previous_document(admin, recipient, promo):
    before = {"categories": {"promo": {"email": False}}}
    assert admin.put("/api/v1/recipients/u1/preferences", before, format="json").status_code == 200
    with redis_unreachable():
        assert_refused(admin.put("/api/v1/recipients/u1/preferences", OPT_OUT, format="json"))
    stored = Preference.objects.get(recipient=recipient)
    assert (stored.channels["email"], stored.categories) == (True, {"promo": {"email": False}})


def test_an_outsider_cannot_reach_the_recipient_with_redis_down_either(outsider, recipient, outsider_tenant):
    with redis_unreachable():
        assert outsider.put("/api/v1/recipients/u1/preferences", OPT_OUT, format="json").status_code == 404
        RecipientFactory(tenant=outsider_tenant, external_id="u1")  # its own u1: refused like any
        assert_refused(outsider.put("/api/v1/recipients/u1/preferences", OPT_OUT, format="json"))
    assert not Preference.objects.exists()


def test_the_adapters_channel_switches_are_refused_too(recipient):
    with redis_unreachable(), pytest.raises(services.PreferencesUnavailable):
        services.switch_channels(recipient, {"sms": False})
    assert not Preference.objects.exists()


def test_an_opt_out_redis_cannot_hear_of_is_refused(recipient, promo):
    with redis_unreachable(), pytest.raises(services.PreferencesUnavailable):
        services.opt_out(recipient, promo, "email", source="test")
    assert not Preference.objects.exists()
    assert services.opt_out(recipient, promo, "email", source="test")  # Redis back
    assert services.decide(recipient, promo, "email").reason == services.Reason.CATEGORY_OPTED_OUT
