import pytest

from preferences.models import Preference

DEFAULTS = {
    "channels": {"email": True, "sms": True, "push": True, "inapp": True},
    "categories": {},
    "quiet_hours": None,
}


def test_preferences_default_to_every_channel_on(member, recipient):
    response = member.get("/api/v1/recipients/u1/preferences")
    assert response.status_code == 200
    assert response.json() == DEFAULTS


def test_put_replaces_the_whole_document(admin, recipient, promo):
    document = {
        "channels": {"sms": False},
        "categories": {"promo": {"email": False}},
        "quiet_hours": {"start": "22:00", "end": "07:00"},
    }
    response = admin.put("/api/v1/recipients/u1/preferences", document, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "channels": {"email": True, "sms": False, "push": True, "inapp": True},
        "categories": {"promo": {"email": False}},
        "quiet_hours": {"start": "22:00", "end": "07:00"},
    }

    # Keys left out go back to their defaults.
    response = admin.put("/api/v1/recipients/u1/preferences", {"channels": {"push": False}}, format="json")
    assert response.json() == DEFAULTS | {"channels": DEFAULTS["channels"] | {"push": False}}
    assert admin.get("/api/v1/recipients/u1/preferences").json() == response.json()


@pytest.mark.parametrize(
    ("document", "field", "named"),
    [
        ({"channels": {"fax": False}}, "channels", "fax"),
        ({"categories": {"promo": {"pigeon": False}}}, "categories", "pigeon"),
        ({"categories": {"nope": {"email": False}}}, "categories", "nope"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours", "equal"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours", "start"),
        ({"chanels": {"email": False}}, "chanels", "Unknown field"),
    ],
)
def test_invalid_preferences_are_refused_naming_the_problem(admin, recipient, promo, document, field, named):
    response = admin.put("/api/v1/recipients/u1/preferences", document, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"]
    assert named in str(error["details"]["fields"][field])
    assert not Preference.objects.exists()


def test_a_category_of_another_tenant_is_unknown(admin, recipient, outsider_tenant):
    from tests.factories import CategoryFactory

    CategoryFactory(tenant=outsider_tenant, key="theirs")
    response = admin.put(
        "/api/v1/recipients/u1/preferences", {"categories": {"theirs": {"email": False}}}, format="json"
    )
    assert response.status_code == 400


def test_member_reads_but_cannot_write_preferences(member, admin, recipient):
    assert member.get("/api/v1/recipients/u1/preferences").status_code == 200
    response = member.put("/api/v1/recipients/u1/preferences", {"channels": {"email": False}}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert (
        admin.put("/api/v1/recipients/u1/preferences", {"channels": {"email": False}}, format="json").status_code == 200
    )


def test_outsider_gets_404_on_preferences(outsider, recipient):
    assert outsider.get("/api/v1/recipients/u1/preferences").status_code == 404
    response = outsider.put("/api/v1/recipients/u1/preferences", {"channels": {"email": False}}, format="json")
    assert response.status_code == 404
    assert not Preference.objects.exists()


def test_a_deleted_categorys_opt_out_survives_a_get_then_put_round_trip(admin, recipient, promo, tenant):
    """A recipient's document keeps an opt-out of a category the tenant deleted afterwards (an
    unsubscribe must outlive a category recreated later): sending it back is not an unknown key."""
    document = {"channels": {}, "categories": {"promo": {"email": False}}, "quiet_hours": None}
    assert admin.put("/api/v1/recipients/u1/preferences", document, format="json").status_code == 200
    assert admin.delete("/api/v1/categories/promo").status_code == 204

    shown = admin.get("/api/v1/recipients/u1/preferences").json()
    shown["channels"]["sms"] = False
    response = admin.put("/api/v1/recipients/u1/preferences", shown, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["categories"] == {"promo": {"email": False}}
    assert response.json()["channels"]["sms"] is False
    # Adding a key that is no category, and was not there, is still refused.
    shown["categories"]["gone"] = {"email": False}
    assert admin.put("/api/v1/recipients/u1/preferences", shown, format="json").status_code == 400


def test_a_seed_clients_channel_switch_works_after_a_category_the_recipient_opted_out_of_is_deleted(
    admin, recipient, promo
):
    document = {"categories": {"promo": {"email": False}}}
    assert admin.put("/api/v1/recipients/u1/preferences", document, format="json").status_code == 200
    assert admin.delete("/api/v1/categories/promo").status_code == 204

    # The Kafka service's and HNG's PUT change one channel and keep the rest of the document.
    kafka = admin.put("/api/v1/users/u1/preferences", {"channels": {"sms": False}}, format="json")
    hng = admin.put("/api/v1/users/u1/preferences", {"push": False}, format="json")
    alertora = admin.post("/preferences", {"recipient_id": "u1", "channels": {"inapp": False}}, format="json")
    # The FastAPI system's user service sets the email and push switches with the user.
    fastapi = admin.put("/api/v1/users/u1", {"preferences": {"email": False, "push": False}}, format="json")

    assert [r.status_code for r in (kafka, hng, alertora, fastapi)] == [200] * 4, fastapi.content
    stored = Preference.objects.get(recipient=recipient)
    assert stored.categories == {"promo": {"email": False}}
    assert stored.channels == {"email": False, "sms": False, "push": False, "inapp": False}
