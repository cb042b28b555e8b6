"""Where suppressions come from besides the API: providers' answers (receipts, inbound SMS
keywords, dead push tokens)."""

import time
from urllib.parse import urlencode

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from delivery import pipeline
from notifications.models import Message
from preferences import suppressions
from preferences.models import Suppression
from tests.factories import CategoryFactory, DeviceFactory, TenantFactory
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.pipeline.test_receipts import (
    PUBLIC_URL,
    WEBHOOK_SECRET,
    basic_auth,
    esp_account,
    post_json,
    postmark_event,
    sent_email,
    sent_sms,
    twilio_account,
    twilio_callback,
)

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


def test_a_dead_token_redis_cannot_mark_still_fails_its_message_and_is_suppressed_next_time(
    admin, tenant, ada, fcm_fake, settings
):
    """Redis unreachable: the suppression is not written (preferences/suppressions.py refuses a
    suppression without its mark), the provider's answer still decides the message, and the
    provider says the same at the next send."""
    add_provider(tenant, "push", "fcm", {"service_account": fcm_fake.service_account})
    dead = DeviceFactory(recipient=ada, platform="fcm", token="dead-token")
    fcm_fake.fail_send(404, "UNREGISTERED", "Requested entity was not found.", times=2)
    first, second = accept(admin, ["push"])[0], accept(admin, ["push"])[0]
    redis_url = settings.REDIS_URL

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    pipeline.deliver([first.id])
    assert reload(first).status == "failed"
    assert not Suppression.objects.exists()
    dead.refresh_from_db()
    assert dead.active  # deactivated together with its suppression, or not at all

    settings.REDIS_URL = redis_url
    pipeline.deliver([second.id])
    assert reload(second).status == "failed"
    assert suppressed(tenant) == [("push", "dead-token", None, "dead_token")]


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


# --- Receipts: hard bounces and complaints ----------------------------------------------------------


@pytest.fixture
def public_url(settings):
    settings.ALERTFLOW_PUBLIC_URL = PUBLIC_URL


def suppressed(tenant) -> list[tuple]:
    return sorted(Suppression.objects.filter(tenant=tenant).values_list("channel", "address", "category_id", "reason"))


@pytest.mark.parametrize(
    ("record_type", "bounce_type", "reason"),
    [("Bounce", "HardBounce", "hard_bounce"), ("SpamComplaint", "SpamComplaint", "complaint")],
)
def test_a_hard_bounce_or_a_complaint_suppresses_the_address_for_everything(
    admin, tenant, ada, sendgrid_fake, public_url, record_type, bounce_type, reason
):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")
    if record_type == "SpamComplaint":  # a complaint comes after delivery
        post_json(provider, postmark_event(message.provider_message_id, "Delivery"), **basic_auth())
    event = postmark_event(message.provider_message_id, record_type, Type=bounce_type, Email="Ada@Example.com")

    assert post_json(provider, event, **basic_auth()).status_code == 200

    assert suppressed(tenant) == [("email", "ada@example.com", None, reason)]
    security = CategoryFactory(tenant=tenant, key="security", critical=True)
    email, sms = accept(admin, ["email", "sms"], category=security.key)
    assert (email.status, email.reason, sms.status) == ("suppressed", f"suppressed:{reason}", "queued")


def test_a_soft_bounce_does_not_suppress(admin, tenant, ada, sendgrid_fake, public_url):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")
    event = postmark_event(message.provider_message_id, "Bounce", Type="SoftBounce", Description="Mailbox full")

    assert post_json(provider, event, **basic_auth()).status_code == 200

    message = reload(message)
    assert (message.status, message.reason) == ("bounced", "soft_bounce")
    assert suppressed(tenant) == []


@pytest.mark.parametrize(("bounce_type", "suppresses"), [("bounce", True), ("blocked", False)])
def test_sendgrid_suppresses_a_bounce_but_not_a_block(
    admin, tenant, ada, sendgrid_fake, public_url, bounce_type, suppresses
):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "sendgrid")
    events = [{"event": "bounce", "type": bounce_type, "email": "ada@example.com", "timestamp": int(time.time()),
               "anymail_id": message.provider_message_id, "sg_event_id": "e1", "reason": "550 5.1.1"}]  # fmt: skip

    assert post_json(provider, events, **basic_auth()).status_code == 200

    assert reload(message).status == "bounced"
    assert suppressed(tenant) == ([("email", "ada@example.com", None, "hard_bounce")] if suppresses else [])


def test_a_bounce_for_a_message_not_yet_recorded_still_suppresses_its_recipient(
    admin, tenant, ada, sendgrid_fake, public_url
):
    provider = esp_account(tenant, sendgrid_fake, "postmark", webhook_secret=WEBHOOK_SECRET)
    # The ESP's id is not stored yet (the worker records every FLUSH_EVERY sends): unmatched.
    event = postmark_event("c2f5b6a0-0000-4000-8000-000000000000", "Bounce", Type="HardBounce")

    assert post_json(provider, event, **basic_auth()).status_code == 200

    assert suppressed(tenant) == [("email", "ada@example.com", None, "hard_bounce")]


def test_a_forged_bounce_suppresses_nothing(admin, tenant, ada, sendgrid_fake, public_url):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")
    event = postmark_event(message.provider_message_id, "Bounce", Type="HardBounce")

    assert post_json(provider, event, **basic_auth("receipts:wrong")).status_code == 403

    assert suppressed(tenant) == []


def test_twilio_error_21610_in_a_status_callback_suppresses_the_number(admin, tenant, ada, twilio_fake, public_url):
    provider, message = sent_sms(admin, tenant, twilio_fake)

    response = twilio_callback(provider, message.provider_message_id, "undelivered", ErrorCode="21610")

    assert response.status_code == 200
    assert suppressed(tenant) == [("sms", "+14155552671", None, "sms_stop")]


# --- Twilio inbound messages: STOP and START ---------------------------------------------------------


def inbound_path(provider) -> str:
    return f"/webhooks/providers/{provider.pk}/inbound"


def twilio_inbound(provider, body, *, sender="+14155552671", token=AUTH_TOKEN, signature=None, **extra):
    """POST an incoming SMS as Twilio's "A message comes in" webhook does: form-encoded, signed."""
    params = {"MessageSid": "SM" + "a" * 32, "AccountSid": ACCOUNT_SID, "From": sender, "To": "+15005550006",
              "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01", **extra}  # fmt: skip
    if signature is None:
        signature = RequestValidator(token).compute_signature(PUBLIC_URL + inbound_path(provider), params)
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return Client().post(
        inbound_path(provider), urlencode(params), content_type="application/x-www-form-urlencoded", **headers
    )


@pytest.mark.parametrize("keyword", ["STOP", "stop", " Unsubscribe ", "STOPALL", "CANCEL", "END", "QUIT"])
def test_an_sms_stop_suppresses_the_number_for_everything(admin, tenant, ada, twilio_fake, public_url, keyword):
    provider = twilio_account(tenant, twilio_fake)

    response = twilio_inbound(provider, keyword)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode().endswith("<Response></Response>")
    assert suppressed(tenant) == [("sms", "+14155552671", None, "sms_stop")]
    security = CategoryFactory(tenant=tenant, key="security", critical=True)
    email, sms = accept(admin, ["email", "sms"], category=security.key)
    assert (email.status, sms.status, sms.reason) == ("queued", "suppressed", "suppressed:sms_stop")


def test_an_sms_stop_redis_cannot_mark_is_refused_for_twilio_to_resend(tenant, twilio_fake, public_url, settings):
    provider = twilio_account(tenant, twilio_fake)
    redis_url = settings.REDIS_URL

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    refused = twilio_inbound(provider, "STOP")
    assert refused.status_code == 503  # Twilio retries a 5xx answer
    assert refused.json()["error"]["code"] == "suppressions_unavailable"
    assert suppressed(tenant) == []

    settings.REDIS_URL = redis_url
    assert twilio_inbound(provider, "STOP").status_code == 200
    assert suppressed(tenant) == [("sms", "+14155552671", None, "sms_stop")]


@pytest.mark.parametrize("keyword", ["START", "yes", "UNSTOP"])
def test_an_sms_start_lifts_the_stop_and_only_the_stop(admin, tenant, ada, twilio_fake, public_url, keyword):
    provider = twilio_account(tenant, twilio_fake)
    assert twilio_inbound(provider, "STOP").status_code == 200
    suppressions.suppress(tenant.pk, "sms", ["+14155550100"], "sms_stop")  # another number
    promo = CategoryFactory(tenant=tenant, key="promo")
    suppressions.suppress(tenant.pk, "sms", ["+14155552671"], "manual", promo.pk)  # the tenant's own

    assert twilio_inbound(provider, keyword).status_code == 200

    assert suppressed(tenant) == [
        ("sms", "+14155550100", None, "sms_stop"),
        ("sms", "+14155552671", promo.pk, "manual"),
    ]
    [message] = accept(admin, ["sms"])
    assert message.status == "queued"


def test_twilios_advanced_opt_out_type_is_taken_as_said(tenant, twilio_fake, public_url):
    provider = twilio_account(tenant, twilio_fake)

    assert twilio_inbound(provider, "Arrêt", OptOutType="STOP").status_code == 200

    assert suppressed(tenant) == [("sms", "+14155552671", None, "sms_stop")]


def test_an_ordinary_reply_changes_nothing(tenant, twilio_fake, public_url):
    provider = twilio_account(tenant, twilio_fake)

    assert twilio_inbound(provider, "stop sending me the weekly digest please").status_code == 200

    assert suppressed(tenant) == []


@pytest.mark.parametrize(
    ("signature", "token", "status"),
    [
        ("", AUTH_TOKEN, 401),  # unsigned
        ("bm90IGEgc2lnbmF0dXJl", AUTH_TOKEN, 403),  # forged
        (None, "another-accounts-token", 403),  # signed with a key that is not this account's
    ],
)
def test_a_forged_inbound_message_changes_nothing(tenant, twilio_fake, public_url, signature, token, status):
    provider = twilio_account(tenant, twilio_fake)
    suppressions.suppress(tenant.pk, "sms", ["+14155550100"], "sms_stop")

    stop = twilio_inbound(provider, "STOP", token=token, signature=signature)
    start = twilio_inbound(provider, "START", sender="+14155550100", token=token, signature=signature)

    assert (stop.status_code, start.status_code) == (status, status)
    assert stop.json()["error"]["code"] == "receipt_refused"
    assert suppressed(tenant) == [("sms", "+14155550100", None, "sms_stop")]


def test_an_inbound_stop_for_another_tenants_provider_suppresses_only_there(tenant, twilio_fake, public_url):
    other = TenantFactory()
    other_provider = twilio_account(other, twilio_fake)

    assert twilio_inbound(other_provider, "STOP").status_code == 200

    assert suppressed(tenant) == []
    assert Suppression.objects.filter(tenant=other).count() == 1


def test_a_provider_kind_without_inbound_messages_refuses_them(tenant, public_url):
    provider = add_provider(tenant, "sms", "console", {})
    assert Client().post(inbound_path(provider), {"From": "+14155552671", "Body": "STOP"}).status_code == 403
    assert suppressed(tenant) == []


def test_the_provider_api_shows_the_inbound_url_where_there_is_one(admin, tenant, twilio_fake, public_url):
    twilio = twilio_account(tenant, twilio_fake)
    console = add_provider(tenant, "sms", "console", {})

    assert admin.get(f"/api/v1/providers/{twilio.pk}").json()["inbound_url"] == PUBLIC_URL + inbound_path(twilio)
    assert admin.get(f"/api/v1/providers/{console.pk}").json()["inbound_url"] == ""


def test_an_esp_receipt_that_beats_the_workers_record_still_moves_its_message(
    admin, tenant, ada, sendgrid_fake, public_url
):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")
    esp_id = message.provider_message_id
    # As the row is between the ESP's answer and the batch's record: `sending`, no ESP id yet.
    Message.objects.filter(pk=message.pk).update(status="sending", provider_message_id="")
    event = postmark_event(esp_id, "Bounce", Type="HardBounce", Metadata={"alertflow_message_id": str(message.id)})

    assert post_json(provider, event, **basic_auth()).status_code == 200

    message = reload(message)
    assert (message.status, message.reason, message.provider_message_id) == ("bounced", "hard_bounce", esp_id)


@pytest.mark.parametrize("ours", ["not-a-uuid", "c2f5b6a0-0000-4000-8000-000000000000"])
def test_an_early_receipt_naming_no_message_of_ours_moves_nothing(admin, tenant, ada, sendgrid_fake, public_url, ours):
    provider, message = sent_email(admin, tenant, sendgrid_fake, "postmark")
    Message.objects.filter(pk=message.pk).update(status="sending", provider_message_id="")
    event = postmark_event("another-esp-id", "Delivery", Metadata={"alertflow_message_id": ours})

    assert post_json(provider, event, **basic_auth()).status_code == 200

    assert reload(message).status == "sending"


def test_twilio_refusing_a_number_that_replied_stop_suppresses_it(admin, tenant, ada, twilio_fake):
    twilio_account(tenant, twilio_fake)
    twilio_fake.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    [message] = accept(admin, ["sms"])

    pipeline.deliver([message.id])

    assert reload(message).status == "failed"
    assert suppressed(tenant) == [("sms", "+14155552671", None, "sms_stop")]
    [again] = accept(admin, ["sms", "email"])[1:]
    assert (again.channel, again.status, again.reason) == ("sms", "suppressed", "suppressed:sms_stop")


def test_a_twilio_callback_that_beats_the_workers_record_still_moves_its_message(
    admin, tenant, ada, twilio_fake, public_url
):
    _provider, message = sent_sms(admin, tenant, twilio_fake)
    sid = message.provider_message_id
    callback_url = twilio_fake.sent[0].form()["StatusCallback"]  # as the send gave it, with our id
    Message.objects.filter(pk=message.pk).update(status="sending", provider_message_id="")
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID, "To": "+14155552671"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(callback_url, params)

    response = Client().post(
        callback_url.removeprefix(PUBLIC_URL), urlencode(params),
        content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature,
    )  # fmt: skip

    assert response.status_code == 200
    message = reload(message)
    assert (message.status, message.provider_message_id) == ("delivered", sid)


def test_a_twilio_callback_whose_message_id_was_changed_is_refused(admin, tenant, ada, twilio_fake, public_url):
    provider, message = sent_sms(admin, tenant, twilio_fake)
    callback_url = twilio_fake.sent[0].form()["StatusCallback"]
    params = {"MessageSid": message.provider_message_id, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(callback_url, params)
    other = f"{PUBLIC_URL}/webhooks/providers/{provider.pk}/receipts?message=c2f5b6a0-0000-4000-8000-000000000000"

    response = Client().post(
        other.removeprefix(PUBLIC_URL), urlencode(params),
        content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature,
    )  # fmt: skip

    assert response.status_code == 403
    assert reload(message).status == "sent"
