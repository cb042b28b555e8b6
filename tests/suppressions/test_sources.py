"""Where suppressions come from besides the API: providers' answers (receipts, inbound SMS
keywords, dead push tokens)."""

import pytest

from delivery import pipeline
from notifications.models import Message
from preferences.models import Suppression
from tests.factories import DeviceFactory

from .conftest import accept, add_provider

pytestmark = pytest.mark.django_db


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


# --- Dead push tokens ------------------------------------------------------------------------------


def test_a_dead_push_token_deactivates_its_device_and_is_suppressed(admin, tenant, ada, fcm_fake):
    add_provider(tenant, "push", "fcm", {"service_account": fcm_fake.service_account})
    dead = DeviceFactory(recipient=ada, platform="fcm", token="dead-token")
    fcm_fake.fail_send(404, "UNREGISTERED", "Requested entity was not found.")
    [message] = accept(admin, ["push"])

    pipeline.deliver([message.id])

    assert reload(message).status == "failed"
    dead.refresh_from_db()
    assert not dead.active
    [row] = Suppression.objects.all()
    assert (row.tenant_id, row.channel, row.address, row.category_id, row.reason) == (
        tenant.pk, "push", "dead-token", None, "dead_token"
    )  # fmt: skip
    assert admin.get("/api/v1/suppressions", {"reason": "dead_token"}).json()["count"] == 1


def test_re_registering_a_dead_token_lifts_its_suppression(admin, tenant, ada, fcm_fake):
    add_provider(tenant, "push", "fcm", {"service_account": fcm_fake.service_account})
    DeviceFactory(recipient=ada, platform="fcm", token="dead-token")
    fcm_fake.fail_send(404, "UNREGISTERED", "Requested entity was not found.")
    pipeline.deliver([accept(admin, ["push"])[0].id])
    assert Suppression.objects.filter(reason="dead_token").exists()

    response = admin.post("/api/v1/recipients/ada/devices", {"platform": "fcm", "token": "dead-token"}, format="json")

    assert response.status_code == 200
    assert not Suppression.objects.exists()
    [message] = accept(admin, ["push"])
    pipeline.deliver([message.id])
    assert reload(message).status == "sent"
