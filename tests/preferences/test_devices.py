import pytest

from preferences.models import Device
from tests.factories import DeviceFactory, RecipientFactory

SUBSCRIPTION = {
    "endpoint": "https://push.example.com/send/abc123",
    "keys": {
        "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
        "auth": "tBHItJI5svbpez7KI4CCXg",
    },
}


def test_posting_a_new_token_creates_a_device(admin, recipient):
    response = admin.post("/api/v1/recipients/u1/devices", {"platform": "fcm", "token": "tok-1"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["platform"], body["token"], body["active"]) == ("fcm", "tok-1", True)
    assert Device.objects.get().tenant_id == recipient.tenant_id


def test_reposting_a_token_is_idempotent_and_reactivates_the_device(admin, recipient):
    first = admin.post("/api/v1/recipients/u1/devices", {"platform": "fcm", "token": "tok-1"}, format="json").json()
    Device.objects.get().deactivate("unregistered")

    again = admin.post("/api/v1/recipients/u1/devices", {"platform": "fcm", "token": "tok-1"}, format="json")

    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["active"] is True
    assert Device.objects.count() == 1


def test_a_token_reposted_for_another_recipient_moves_to_them(admin, tenant, recipient):
    device = DeviceFactory(recipient=recipient, token="tok-1")
    RecipientFactory(tenant=tenant, external_id="u2")
    response = admin.post("/api/v1/recipients/u2/devices", {"platform": "fcm", "token": "tok-1"}, format="json")
    assert response.status_code == 200
    device.refresh_from_db()
    assert device.recipient.external_id == "u2"


def test_webpush_subscription_is_idempotent_whatever_the_key_order(admin, recipient):
    created = admin.post("/api/v1/recipients/u1/devices", {"platform": "webpush", "token": SUBSCRIPTION}, format="json")
    assert created.status_code == 201
    assert created.json()["token"] == SUBSCRIPTION

    reordered = {"keys": dict(reversed(SUBSCRIPTION["keys"].items())), "endpoint": SUBSCRIPTION["endpoint"]}
    again = admin.post("/api/v1/recipients/u1/devices", {"platform": "webpush", "token": reordered}, format="json")
    assert again.status_code == 200
    assert Device.objects.count() == 1


@pytest.mark.parametrize(
    ("platform", "token"),
    [
        ("fcm", ""),
        ("fcm", "has space"),
        ("apns", "not-hex"),
        ("webpush", "just a string"),
        ("webpush", {"endpoint": "ftp://x", "keys": {"p256dh": "a", "auth": "b"}}),
        ("webpush", {"endpoint": "http://push.example.com/x", "keys": {"p256dh": "a", "auth": "b"}}),
        ("webpush", {"endpoint": "https://push.example.com/x", "keys": {}}),
        ("fcm", "x" * 2001),
        ("sms", "tok"),
    ],
)
def test_invalid_device_is_a_validation_error(admin, recipient, platform, token):
    response = admin.post("/api/v1/recipients/u1/devices", {"platform": platform, "token": token}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest",
        "https://localhost:8443/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://2130706433/x",  # 127.0.0.1 written as one number
    ],
)
def test_a_webpush_endpoint_on_a_non_public_address_is_refused(admin, recipient, endpoint):
    subscription = {**SUBSCRIPTION, "endpoint": endpoint}
    response = admin.post(
        "/api/v1/recipients/u1/devices", {"platform": "webpush", "token": subscription}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("address_not_allowed", {"field": "token.endpoint"})
    assert not Device.objects.exists()


def test_a_webpush_endpoint_whose_name_resolves_privately_is_refused(admin, recipient, resolver):
    resolver.answer("push.corp.test", ["10.0.0.7"])
    subscription = {**SUBSCRIPTION, "endpoint": "https://push.corp.test/x"}
    response = admin.post(
        "/api/v1/recipients/u1/devices", {"platform": "webpush", "token": subscription}, format="json"
    )
    assert response.json()["error"]["code"] == "address_not_allowed"
    assert "10.0.0.7" not in response.json()["error"]["message"]  # our internal DNS stays ours


def test_private_networks_setting_lets_a_local_push_service_in(admin, recipient, settings):
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = True
    subscription = {**SUBSCRIPTION, "endpoint": "http://127.0.0.1:8443/x"}
    response = admin.post(
        "/api/v1/recipients/u1/devices", {"platform": "webpush", "token": subscription}, format="json"
    )
    assert response.status_code == 201


def test_list_and_delete_devices(admin, member, recipient):
    device = DeviceFactory(recipient=recipient)
    listed = member.get("/api/v1/recipients/u1/devices").json()
    assert [d["id"] for d in listed["results"]] == [device.pk]
    assert member.get(f"/api/v1/recipients/u1/devices/{device.pk}").json()["token"] == device.token

    assert admin.delete(f"/api/v1/recipients/u1/devices/{device.pk}").status_code == 204
    assert not Device.objects.exists()


def test_a_device_is_found_only_under_its_own_recipient(admin, tenant, recipient):
    device = DeviceFactory(recipient=RecipientFactory(tenant=tenant, external_id="u2"))
    assert admin.delete(f"/api/v1/recipients/u1/devices/{device.pk}").status_code == 404
    assert Device.objects.filter(pk=device.pk).exists()


def test_member_cannot_register_or_delete_devices(member, recipient):
    device = DeviceFactory(recipient=recipient)
    post = member.post("/api/v1/recipients/u1/devices", {"platform": "fcm", "token": "t"}, format="json")
    delete = member.delete(f"/api/v1/recipients/u1/devices/{device.pk}")
    assert (post.status_code, delete.status_code) == (403, 403)
    assert post.json()["error"]["code"] == "forbidden"
    assert Device.objects.count() == 1


def test_outsider_gets_404_on_every_device_endpoint(outsider, recipient):
    device = DeviceFactory(recipient=recipient)
    assert outsider.get("/api/v1/recipients/u1/devices").status_code == 404
    assert (
        outsider.post("/api/v1/recipients/u1/devices", {"platform": "fcm", "token": "t"}, format="json").status_code
        == 404
    )
    assert outsider.get(f"/api/v1/recipients/u1/devices/{device.pk}").status_code == 404
    assert outsider.delete(f"/api/v1/recipients/u1/devices/{device.pk}").status_code == 404
    assert Device.objects.count() == 1


def test_deactivated_devices_are_not_active(recipient):
    live, dead = DeviceFactory(recipient=recipient), DeviceFactory(recipient=recipient)
    dead.deactivate("unregistered")
    assert list(Device.objects.active()) == [live]
    dead.refresh_from_db()
    assert (dead.active, dead.reason) == (False, "unregistered")
