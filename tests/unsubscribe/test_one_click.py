"""One-click unsubscribe (RFC 8058): every non-critical email carries a signed link; a POST to
it (what mail clients send) opts the recipient out of that category's email at once, a GET (what
link scanners send) changes nothing, and critical mail is never offered nor blocked."""

import base64
import email
import email.policy
import json
import logging
import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.core import signing
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from delivery import pipeline
from notifications.models import Message
from preferences import unsubscribe as links
from preferences.models import Preference
from preferences.services import get_preferences
from preferences.signals import opted_out
from tests.factories import CategoryFactory, RecipientFactory, TenantFactory

from .conftest import PUBLIC_URL, add_provider

pytestmark = pytest.mark.django_db

CONTENT = {
    "email": {"subject": "Hello {{ recipient.name }}", "text": "Sale {{ code }}", "html": "<b>{{ code }}</b>"},
    "sms": {"text": "Sale {{ code }}"},
}
ONE_CLICK = urlencode({"List-Unsubscribe": "One-Click"})


def send(client, category=None, channels=("email",), recipient="ada") -> list[Message]:
    """Accept a send through the API and deliver what was queued; return its messages."""
    body = {"recipient": recipient, "channels": list(channels), "content": CONTENT, "data": {"code": "42"}}
    if category is not None:
        body["category"] = category
    response = client.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    messages = Message.objects.filter(notification_id=response.json()["id"]).order_by("channel")
    queued = [m.id for m in messages if m.status == Message.Status.QUEUED]
    if queued:
        pipeline.deliver(queued)
    return list(messages.all())


def link_path(header: str) -> str:
    """The path of the one https URL in a List-Unsubscribe header (`<https://...>`). The header
    is longer than a line, so it arrives folded after its colon: whitespace a reader drops."""
    header = header.strip()
    assert header.startswith("<" + PUBLIC_URL + "/u/") and header.endswith(">"), header
    return header[1 + len(PUBLIC_URL) : -1]


def mail_client() -> Client:
    """What a mail provider's one-click POST looks like: no cookies, no CSRF token."""
    return Client(enforce_csrf_checks=True)


def one_click(path: str):
    return mail_client().post(path, ONE_CLICK, content_type="application/x-www-form-urlencoded")


def category_email(recipient) -> dict:
    return get_preferences(recipient)["categories"]


# --- The headers ----------------------------------------------------------------------------------


def test_non_critical_mail_over_smtp_carries_the_one_click_headers(admin, ada, promo, smtp_provider, smtp_server):
    [message] = send(admin, "promo")

    assert message.status == "sent"
    [received] = smtp_server.messages
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = link_path(received.message["List-Unsubscribe"])
    assert re.fullmatch(r"/u/[A-Za-z0-9_:-]+", path)  # URL-safe as it is, nothing to escape
    assert links.read_token(path.removeprefix("/u/")) == links.Link(
        str(ada.tenant_id), ada.pk, "promo", links.address_digest("ada@example.com")
    )


def test_the_link_is_the_path_django_reverses_for_its_token(ada, promo, settings):
    """The path around the token is reversed once per process (`_path_around_token`): for any
    token, the same URL as reversing the route with it."""
    settings.ALERTFLOW_PUBLIC_URL = "https://alertflow.example.com/"
    for address in ["ada@example.com", "ADA+promo@Example.org", "o'brien@xn--bcher-kva.example", "a" * 200 + "@x.io"]:
        url = links.unsubscribe_url(ada, promo, address)
        token = links.make_token(ada.tenant_id, ada.pk, "promo", address)

        assert url == "https://alertflow.example.com" + reverse("unsubscribe", kwargs={"token": token})


def test_critical_mail_carries_no_unsubscribe_header(admin, ada, security, smtp_provider, smtp_server):
    [message] = send(admin, "security")

    assert message.status == "sent"
    [received] = smtp_server.messages
    assert received.message["List-Unsubscribe"] is None
    assert received.message["List-Unsubscribe-Post"] is None


def esp_headers(kind: str, request) -> dict:
    """The mail headers an ESP was asked to send, read from its API request as the ESP would."""
    if kind == "sendgrid":
        return request.json()["headers"]
    if kind == "mailgun":
        # Custom headers are `h:<name>` form fields (Mailgun API, "Sending": h:X-My-Header).
        return {name[2:]: value for name, value in request.form().items() if name.startswith("h:")}
    if kind == "postmark":
        return {h["Name"]: h["Value"] for h in request.json()["Headers"]}
    raw = base64.b64decode(request.json()["Content"]["Raw"]["Data"])  # SES v2 sends the MIME itself
    return dict(email.message_from_bytes(raw, policy=email.policy.default).items())


@pytest.mark.parametrize("kind", ["sendgrid", "mailgun", "postmark", "amazon_ses"])
def test_esp_mail_carries_the_one_click_headers(admin, tenant, ada, promo, sendgrid_fake, kind):
    add_provider(tenant, "email", kind, sendgrid_fake.config(kind))

    [message] = send(admin, "promo")

    assert message.status == "sent"
    [request] = sendgrid_fake.requests
    headers = esp_headers(kind, request)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert links.read_token(link_path(headers["List-Unsubscribe"]).removeprefix("/u/")).category == "promo"


def test_critical_esp_mail_carries_no_unsubscribe_header(admin, tenant, ada, security, sendgrid_fake):
    add_provider(tenant, "email", "sendgrid", sendgrid_fake.config("sendgrid"))

    send(admin, "security")

    [request] = sendgrid_fake.requests
    assert "List-Unsubscribe" not in request.json().get("headers", {})


def test_without_a_public_url_mail_goes_out_without_the_header_and_says_so_once(
    settings, monkeypatch, caplog, admin, ada, promo, smtp_provider, smtp_server
):
    settings.ALERTFLOW_PUBLIC_URL = ""
    monkeypatch.setattr(links, "_public_url_warned", False)

    with caplog.at_level(logging.WARNING, logger="preferences.unsubscribe"):
        send(admin, "promo")
        send(admin, "promo")

    assert [m.message["List-Unsubscribe"] for m in smtp_server.messages] == [None, None]
    warnings = [r for r in caplog.records if "ALERTFLOW_PUBLIC_URL is not set" in r.getMessage()]
    assert len(warnings) == 1


# --- GET: a page, never an unsubscribe ------------------------------------------------------------


def test_get_shows_a_confirmation_page_whose_button_posts_and_changes_nothing(
    admin, ada, promo, smtp_provider, smtp_server
):
    send(admin, "promo")
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])

    response = Client().get(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert '<form method="post">' in page and "Promotions" in page and "Acme" in page
    assert "src=" not in page and "<link" not in page  # no external assets
    assert "no-cache" in response["Cache-Control"]
    assert not response.cookies  # no session, no CSRF cookie: nothing for a mail client to keep
    assert not Preference.objects.filter(recipient=ada).exists()
    [message] = send(admin, "promo")
    assert message.status == "sent"


def test_head_is_a_get(admin, ada, promo, smtp_provider, smtp_server):
    send(admin, "promo")
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])

    assert Client().head(path).status_code == 200
    assert not Preference.objects.filter(recipient=ada).exists()


# --- POST: the unsubscribe ------------------------------------------------------------------------


def test_one_click_post_opts_out_of_that_categorys_email_only(admin, ada, promo, news, smtp_provider, smtp_server):
    send(admin, "promo")
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])

    response = one_click(path)

    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert category_email(ada) == {"promo": {"email": False}}
    # The next promo email is suppressed with the preference's reason; its SMS still goes.
    email_message, sms_message = send(admin, "promo", channels=("email", "sms"))
    assert (email_message.channel, email_message.status, email_message.reason) == (
        "email",
        "suppressed",
        "category_opted_out",
    )
    assert (sms_message.channel, sms_message.status) == ("sms", "sent")  # the deployment's SMS sink
    # Another category's email is unaffected.
    [other] = send(admin, "news")
    assert other.status == "sent"
    # The tenant sees it through the preferences API.
    shown = admin.get("/api/v1/recipients/ada/preferences").json()
    assert shown["categories"] == {"promo": {"email": False}}
    assert shown["channels"]["email"] is True


def test_the_confirmation_pages_button_unsubscribes_too(admin, ada, promo, smtp_provider, smtp_server):
    """The page's form posts the same body a mail client does, without a CSRF token."""
    send(admin, "promo")
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])
    browser = Client(enforce_csrf_checks=True)
    assert browser.get(path).status_code == 200

    response = browser.post(path, {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert category_email(ada) == {"promo": {"email": False}}


def test_the_post_is_idempotent_and_tells_the_layers_above_once(admin, ada, promo, smtp_provider, smtp_server):
    send(admin, "promo")
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])
    heard = []

    def receiver(sender, **kwargs):
        heard.append((kwargs["recipient"].pk, kwargs["category"].key, kwargs["channel"], kwargs["source"]))

    opted_out.connect(receiver)
    try:
        assert one_click(path).status_code == 200
        assert one_click(path).status_code == 200
    finally:
        opted_out.disconnect(receiver)

    assert heard == [(ada.pk, "promo", "email", "unsubscribe_link")]
    assert category_email(ada) == {"promo": {"email": False}}


def test_an_unsubscribe_keeps_the_recipients_other_preferences(admin, ada, promo, news, smtp_provider, smtp_server):
    body = {"channels": {"sms": False}, "categories": {"news": {"email": True}}, "quiet_hours": None}
    assert admin.put("/api/v1/recipients/ada/preferences", body, format="json").status_code == 200
    send(admin, "promo")
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])

    assert one_click(path).status_code == 200

    preferences = get_preferences(ada)
    assert preferences["categories"] == {"news": {"email": True}, "promo": {"email": False}}
    assert preferences["channels"] == {"email": True, "sms": False, "push": True, "inapp": True}


def test_mail_without_a_category_unsubscribes_from_the_tenants_email(admin, ada, promo, smtp_provider, smtp_server):
    [message] = send(admin)
    assert message.status == "sent"
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])
    assert links.read_token(path.removeprefix("/u/")).category == ""

    assert one_click(path).status_code == 200

    assert get_preferences(ada)["channels"]["email"] is False
    blocked, sms_message = send(admin, channels=("email", "sms"))
    assert (blocked.channel, blocked.status, blocked.reason) == ("email", "suppressed", "channel_opted_out")
    assert (sms_message.channel, sms_message.status) == ("sms", "sent")


# --- Critical mail ---------------------------------------------------------------------------------


def test_a_critical_category_cannot_be_unsubscribed(ada, security):
    path = "/u/" + links.make_token(ada.tenant_id, ada.pk, "security", ada.email)

    shown = Client().get(path)
    refused = one_click(path)

    assert shown.status_code == 200 and "cannot be turned off" in shown.content.decode()
    assert "<form" not in shown.content.decode()
    assert refused.status_code == 403 and "cannot be turned off" in refused.content.decode()
    assert refused["Content-Type"].startswith("text/html")
    assert not Preference.objects.filter(recipient=ada).exists()


def test_critical_mail_still_goes_to_a_recipient_who_opted_out_of_it(
    admin, ada, promo, security, smtp_provider, smtp_server
):
    """A category opt-out (and even the email switch) never blocks critical mail."""
    send(admin, "promo")
    assert one_click(link_path(smtp_server.messages[0].message["List-Unsubscribe"])).status_code == 200
    body = {"channels": {"email": False}, "categories": {"security": {"email": False}}}
    assert admin.put("/api/v1/recipients/ada/preferences", body, format="json").status_code == 200

    [message] = send(admin, "security")

    assert (message.status, message.reason) == ("sent", "")
    assert smtp_server.messages[-1].message["Subject"] == "Hello Ada"


# --- Bad input ------------------------------------------------------------------------------------


def valid_path(ada) -> str:
    return "/u/" + links.make_token(ada.tenant_id, ada.pk, "promo", ada.email)


def tampered(path: str) -> list[str]:
    payload, _, signature = path.removeprefix("/u/").rpartition(":")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    other = base64.urlsafe_b64encode(json.dumps(["x", 1, "promo", "y"]).encode()).decode().rstrip("=")
    foreign = signing.Signer(salt="another.purpose", algorithm="sha256").sign_object(["x", 1, "promo", "y"])
    return [
        f"/u/{payload}:{flipped}",  # signature altered
        f"/u/{other}:{signature}",  # payload altered
        f"/u/{payload}",  # signature cut off
        "/u/" + foreign,  # signed by us for something else
        "/u/not-a-token",
        "/u/" + "A" * 3000,
    ]


def test_a_tampered_token_is_a_400_page_for_get_and_post(ada, promo):
    for path in tampered(valid_path(ada)):
        for response in (Client().get(path), one_click(path)):
            assert response.status_code == 400, path
            assert response["Content-Type"].startswith("text/html")
            assert "not valid" in response.content.decode()
    assert not Preference.objects.filter(recipient=ada).exists()


def test_an_erased_recipient_is_a_404_page(ada, promo):
    path = valid_path(ada)
    ada.delete()

    response = one_click(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "no longer applies" in response.content.decode()


def test_a_link_for_an_address_the_recipient_no_longer_has_is_a_404_page(ada, promo):
    path = valid_path(ada)
    ada.email = "ada@new.example.com"
    ada.save()

    assert one_click(path).status_code == 404
    assert not Preference.objects.filter(recipient=ada).exists()


def test_a_deleted_category_is_a_404_page(ada, promo):
    path = valid_path(ada)
    promo.delete()

    assert one_click(path).status_code == 404
    assert not Preference.objects.filter(recipient=ada).exists()


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options"])
def test_other_methods_are_405(ada, promo, method):
    response = getattr(Client(), method)(valid_path(ada))

    assert response.status_code == 405
    assert set(response["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert not Preference.objects.filter(recipient=ada).exists()


# --- Tenancy --------------------------------------------------------------------------------------


def test_a_link_of_tenant_a_cannot_touch_tenant_b(admin, ada, promo, smtp_provider, smtp_server):
    # Tenant B has a recipient and a category with the same names as A's.
    other_tenant = TenantFactory(name="Other")
    CategoryFactory(tenant=other_tenant, key="promo")
    twin = RecipientFactory(tenant=other_tenant, external_id="ada", email="ada@example.com")
    send(admin, "promo")
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])

    # Re-pointing A's link at B's tenant and recipient breaks its signature...
    signature = path.rpartition(":")[2]
    aimed = json.dumps([str(other_tenant.pk), twin.pk, "promo", links.address_digest(twin.email)])
    forged = base64.urlsafe_b64encode(aimed.encode()).decode().rstrip("=")
    assert one_click(f"/u/{forged}:{signature}").status_code == 400
    # ... and so does keeping A's tenant with B's recipient id.
    mixed = json.dumps([str(ada.tenant_id), twin.pk, "promo", links.address_digest(twin.email)])
    assert (
        one_click(f"/u/{base64.urlsafe_b64encode(mixed.encode()).decode().rstrip('=')}:{signature}").status_code == 400
    )
    # A's own link changes A's recipient, and only A's.
    assert one_click(path).status_code == 200

    assert category_email(ada) == {"promo": {"email": False}}
    assert not Preference.objects.filter(recipient=twin).exists()


def test_a_link_naming_a_recipient_under_another_tenant_finds_nothing(ada, promo):
    """Even a correctly signed token is read within the tenant it names."""
    other_tenant = TenantFactory(name="Other")
    CategoryFactory(tenant=other_tenant, key="promo")

    path = "/u/" + links.make_token(other_tenant.pk, ada.pk, "promo", ada.email)

    assert one_click(path).status_code == 404
    assert not Preference.objects.filter(recipient=ada).exists()


# --- What was planned before the unsubscribe ------------------------------------------------------


def plan_for_later(client, category, channels=("email",)) -> list[Message]:
    body = {"recipient": "ada", "channels": list(channels), "content": CONTENT, "data": {"code": "1"},
            "category": category, "send_at": (timezone.now() + timedelta(hours=3)).isoformat()}  # fmt: skip
    response = client.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    return list(Message.objects.filter(notification_id=response.json()["id"]).order_by("channel"))


def test_an_unsubscribe_withdraws_that_categorys_email_still_waiting_to_be_sent(
    admin, ada, promo, news, security, smtp_provider, smtp_server
):
    send(admin, "promo")
    path = link_path(smtp_server.messages[0].message["List-Unsubscribe"])
    promo_email, promo_sms = plan_for_later(admin, "promo", channels=("email", "sms"))
    [news_email] = plan_for_later(admin, "news")
    [security_email] = plan_for_later(admin, "security")
    assert promo_email.status == "scheduled"

    assert one_click(path).status_code == 200

    def status(message):
        return Message.objects.values_list("status", "reason").get(pk=message.pk)

    assert status(promo_email) == ("cancelled", "category_opted_out")
    assert status(promo_sms) == ("scheduled", "")
    assert status(news_email) == ("scheduled", "")
    assert status(security_email) == ("scheduled", "")


def test_a_one_click_redis_cannot_hear_of_is_a_503_page_to_retry_and_writes_nothing(ada, promo):
    """Committed unheard, the opt-out would be ignored by every process still holding the old
    preferences (up to 15 minutes): refused, the provider's POST comes again."""
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens on port 1
        refused = one_click(valid_path(ada))

    assert refused.status_code == 503
    assert refused["Content-Type"].startswith("text/html")
    assert refused["Retry-After"] == "60"
    assert "try again" in refused.content.decode()
    assert not Preference.objects.filter(recipient=ada).exists()
    assert one_click(valid_path(ada)).status_code == 200  # the retry, Redis back
    assert category_email(ada) == {"promo": {"email": False}}
