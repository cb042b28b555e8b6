"""The recipient's inbox over REST: credentials, the feed and its counts, actions, preferences."""

import base64
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from delivery.inbox import inbox_event
from delivery.inbox_auth import issue_token, sign_external_id
from delivery.models import InboxItem
from notifications.models import Message
from tests.factories import CategoryFactory

from .conftest import reader_client, send_inapp

pytestmark = pytest.mark.django_db


def hmac_client(tenant_id, external_id, signature) -> APIClient:
    client = APIClient()
    client.credentials(
        HTTP_X_INBOX_TENANT=str(tenant_id), HTTP_X_INBOX_RECIPIENT=external_id, HTTP_X_INBOX_HMAC=signature
    )
    return client


# --- Credentials --------------------------------------------------------------------------------


def test_token_endpoint_answers_options(admin, ada):
    response = admin.options("/api/v1/recipients/ada/token")  # was a 500: the view had no serializer

    assert response.status_code == 200
    assert "POST" in response.json()["actions"]


def test_token_endpoint_gives_a_short_lived_token_and_the_websocket_url(admin, ada, settings):
    settings.ALERTFLOW_WS_URL = "wss://ws.example.test"
    response = admin.post("/api/v1/recipients/ada/token")

    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("rt_")
    assert body["ws_url"] == "wss://ws.example.test"
    lifetime = timezone.datetime.fromisoformat(body["expires_at"]) - timezone.now()
    assert timedelta(minutes=59) < lifetime <= timedelta(hours=1)
    inbox = APIClient()
    inbox.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert inbox.get("/api/v1/inbox").status_code == 200


def test_outsider_tenant_cannot_get_a_token_for_our_recipient(outsider, ada):
    response = outsider.post("/api/v1/recipients/ada/token")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_member_key_cannot_mint_recipient_tokens(member, ada):
    assert member.post("/api/v1/recipients/ada/token").status_code == 403


def test_expired_token_is_refused(ada, settings):
    token, _ = issue_token(ada, now=time.time() - settings.ALERTFLOW_RECIPIENT_TOKEN_SECONDS - 1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get("/api/v1/inbox")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "xx", lambda t: t.removeprefix("rt_"), lambda t: "rt_garbage"])
def test_forged_or_malformed_token_is_refused(ada, mangle):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {mangle(issue_token(ada)[0])}")
    assert client.get("/api/v1/inbox").status_code == 401


def test_token_of_an_erased_recipient_is_refused(admin, ada):
    client = reader_client(ada)
    assert admin.delete("/api/v1/recipients/ada").status_code == 204
    assert client.get("/api/v1/inbox").status_code == 401


def test_an_api_key_is_not_a_recipient_credential(admin):
    assert admin.get("/api/v1/inbox").status_code == 401


def test_no_credentials_is_401(anonymous):
    assert anonymous.get("/api/v1/inbox").status_code == 401


def test_external_id_with_hmac_of_the_inbox_secret_opens_the_inbox(owner, admin, tenant, ada):
    send_inapp(admin)
    secret = owner.get("/api/v1/inbox-secret").json()["secret"]

    client = hmac_client(tenant.pk, "ada", sign_external_id(secret, "ada"))
    response = client.get("/api/v1/inbox")

    assert response.status_code == 200
    assert response.json()["unread_count"] == 1


def test_hmac_under_another_secret_or_for_another_id_is_refused(owner, tenant, ada, bob):
    secret = owner.get("/api/v1/inbox-secret").json()["secret"]
    assert hmac_client(tenant.pk, "ada", sign_external_id("guessed", "ada")).get("/api/v1/inbox").status_code == 401
    assert hmac_client(tenant.pk, "bob", sign_external_id(secret, "ada")).get("/api/v1/inbox").status_code == 401
    assert hmac_client("not-a-uuid", "ada", sign_external_id(secret, "ada")).get("/api/v1/inbox").status_code == 401


def test_hmac_is_bound_to_its_tenant(owner, outsider, outsider_tenant, ada, stranger):
    """The other tenant's secret signs its own `ada`, and only that one."""
    ours = owner.get("/api/v1/inbox-secret").json()["secret"]
    theirs = outsider.get("/api/v1/inbox-secret").json()["secret"]
    assert ours != theirs
    client = hmac_client(outsider_tenant.pk, "ada", sign_external_id(ours, "ada"))
    assert client.get("/api/v1/inbox").status_code == 401


def test_rotating_the_inbox_secret_invalidates_old_hmacs(owner, tenant, ada):
    old = owner.get("/api/v1/inbox-secret").json()["secret"]
    assert owner.get("/api/v1/inbox-secret").json()["secret"] == old  # stable until rotated
    new = owner.post("/api/v1/inbox-secret").json()["secret"]

    assert new != old
    assert hmac_client(tenant.pk, "ada", sign_external_id(old, "ada")).get("/api/v1/inbox").status_code == 401
    assert hmac_client(tenant.pk, "ada", sign_external_id(new, "ada")).get("/api/v1/inbox").status_code == 200


def test_only_owners_see_the_inbox_secret(admin):
    assert admin.get("/api/v1/inbox-secret").status_code == 403


# --- The feed -----------------------------------------------------------------------------------


def test_feed_is_newest_first_with_exact_counts(admin, ada_inbox):
    first = send_inapp(admin, title="First")
    second = send_inapp(admin, title="Second")

    body = ada_inbox.get("/api/v1/inbox").json()

    assert [item["id"] for item in body["results"]] == [second, first]
    assert (body["unread_count"], body["unseen_count"]) == (2, 2)
    item = body["results"][0]
    assert (item["title"], item["body"], item["action_url"], item["data"]) == (
        "Second", "Body", "https://app.test/x", {"k": "v"}
    )  # fmt: skip
    assert item["read_at"] is None


def test_feed_paginates_with_a_cursor(admin, ada_inbox):
    ids = [send_inapp(admin, title=f"n{i}") for i in range(5)]

    page = ada_inbox.get("/api/v1/inbox?page_size=2").json()
    seen = [item["id"] for item in page["results"]]
    while page["next"]:
        page = ada_inbox.get(page["next"]).json()
        seen += [item["id"] for item in page["results"]]

    assert seen == list(reversed(ids))
    assert page["unread_count"] == 5


def test_a_hand_made_feed_cursor_is_404(admin, ada_inbox):
    """A recipient's own cursor with a position that is no date: a 500 before."""
    send_inapp(admin)
    cursor = base64.urlsafe_b64encode(b"o=0&r=0&p=garbage").decode()

    response = ada_inbox.get(f"/api/v1/inbox?cursor={cursor}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_feed_filters(admin, tenant, ada_inbox):
    CategoryFactory(tenant=tenant, key="billing", channels=["inapp"])
    billing = send_inapp(admin, category="billing", metadata={"tags": ["invoice", "eu"]})
    plain = send_inapp(admin, metadata={"tags": ["eu"]})
    ada_inbox.post(f"/api/v1/inbox/{plain}/read")

    def ids(query):
        response = ada_inbox.get(f"/api/v1/inbox?{query}")
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["results"]]

    assert ids("unread=true") == [billing]
    assert ids("unread=false") == [plain]
    assert ids("category=billing") == [billing]
    assert ids("tags=eu") == [plain, billing]
    assert ids("tags=eu,invoice") == [billing]
    assert ids("tags=nope") == []
    ada_inbox.post(f"/api/v1/inbox/{billing}/seen")
    assert ids("unseen=true") == [plain]
    ada_inbox.post(f"/api/v1/inbox/{billing}/archive")
    assert ids("") == [plain]
    assert ids("archived=true") == [billing]


def test_bad_filter_is_400(ada_inbox):
    response = ada_inbox.get("/api/v1/inbox?unread=maybe")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


# --- Actions ------------------------------------------------------------------------------------


def test_read_moves_the_message_to_read_and_updates_counts(admin, ada_inbox):
    item_id = send_inapp(admin)

    response = ada_inbox.post(f"/api/v1/inbox/{item_id}/read")

    assert response.status_code == 200
    body = response.json()
    assert body["item"]["read_at"] is not None
    assert (body["unread_count"], body["unseen_count"]) == (0, 1)
    message = Message.objects.get(pk=item_id)
    assert message.status == Message.Status.READ
    assert message.read is not None


def test_unread_brings_the_count_back_but_not_the_message_status(admin, ada_inbox):
    item_id = send_inapp(admin)
    ada_inbox.post(f"/api/v1/inbox/{item_id}/read")

    body = ada_inbox.post(f"/api/v1/inbox/{item_id}/unread").json()

    assert body["unread_count"] == 1
    assert Message.objects.get(pk=item_id).status == Message.Status.READ  # statuses only move forward


def test_archive_and_unarchive(admin, ada_inbox):
    item_id = send_inapp(admin)

    body = ada_inbox.post(f"/api/v1/inbox/{item_id}/archive").json()
    assert body["item"]["archived_at"] is not None
    assert body["unread_count"] == 0
    assert ada_inbox.get("/api/v1/inbox").json()["results"] == []

    ada_inbox.post(f"/api/v1/inbox/{item_id}/unarchive")
    assert [i["id"] for i in ada_inbox.get("/api/v1/inbox").json()["results"]] == [item_id]


def test_snoozed_item_disappears_and_comes_back_unread(admin, ada_inbox):
    item_id = send_inapp(admin)
    ada_inbox.post(f"/api/v1/inbox/{item_id}/read")
    until = (timezone.now() + timedelta(hours=2)).isoformat()

    body = ada_inbox.post(f"/api/v1/inbox/{item_id}/snooze", {"until": until}, format="json").json()
    assert body["unread_count"] == 0
    assert ada_inbox.get("/api/v1/inbox").json()["results"] == []

    InboxItem.objects.filter(pk=item_id).update(snoozed_until=timezone.now() - timedelta(seconds=1))  # time passes
    body = ada_inbox.get("/api/v1/inbox").json()
    assert [i["id"] for i in body["results"]] == [item_id]
    assert body["results"][0]["read_at"] is None
    assert body["unread_count"] == 1


@pytest.mark.parametrize("payload", [{}, {"until": "soon"}, {"until": "2001-01-01T00:00:00Z"}])
def test_snooze_needs_a_future_time(admin, ada_inbox, payload):
    item_id = send_inapp(admin)
    response = ada_inbox.post(f"/api/v1/inbox/{item_id}/snooze", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_another_recipients_item_is_404(admin, ada, bob):
    item_id = send_inapp(admin)  # Ada's
    bobs_inbox = reader_client(bob)

    for action in ("read", "archive", "seen"):
        response = bobs_inbox.post(f"/api/v1/inbox/{item_id}/{action}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert bobs_inbox.get("/api/v1/inbox").json()["results"] == []
    assert InboxItem.objects.get(pk=item_id).read is None


def test_another_tenants_recipient_is_404(admin, ada, stranger):
    """Same external id, other tenant: nothing of Ada's is visible or changeable."""
    item_id = send_inapp(admin)
    strangers_inbox = reader_client(stranger)

    assert strangers_inbox.post(f"/api/v1/inbox/{item_id}/read").status_code == 404
    assert strangers_inbox.get("/api/v1/inbox").json() == {
        "next": None, "previous": None, "unread_count": 0, "unseen_count": 0, "results": []
    }  # fmt: skip
    assert strangers_inbox.post("/api/v1/inbox/read-all").json()["updated"] == 0
    assert InboxItem.objects.get(pk=item_id).read is None


def test_unknown_item_or_action_is_404(ada_inbox):
    assert ada_inbox.post("/api/v1/inbox/8a8c7a52-1111-4bbb-8ccc-222222222222/read").status_code == 404
    assert ada_inbox.post("/api/v1/inbox/8a8c7a52-1111-4bbb-8ccc-222222222222/delete").status_code == 404
    assert ada_inbox.post("/api/v1/inbox/not-an-id/read").status_code == 404


def test_read_all_and_archive_all_by_category(admin, tenant, ada_inbox):
    CategoryFactory(tenant=tenant, key="billing", channels=["inapp"])
    billing = send_inapp(admin, category="billing")
    other = send_inapp(admin)

    body = ada_inbox.post("/api/v1/inbox/read-all", {"category": "billing"}, format="json").json()
    assert (body["updated"], body["unread_count"]) == (1, 1)
    assert Message.objects.get(pk=billing).status == Message.Status.READ
    assert Message.objects.get(pk=other).status == Message.Status.SENT

    body = ada_inbox.post("/api/v1/inbox/archive-all").json()
    assert (body["updated"], body["unread_count"]) == (2, 0)
    assert ada_inbox.get("/api/v1/inbox").json()["results"] == []


def test_read_and_archive_are_announced_to_the_webhook_seam_after_commit(
    admin, tenant, ada, ada_inbox, django_capture_on_commit_callbacks
):
    item_id = send_inapp(admin)
    receiver = mock.Mock()
    inbox_event.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            ada_inbox.post(f"/api/v1/inbox/{item_id}/read")
            ada_inbox.post(f"/api/v1/inbox/{item_id}/seen")
            ada_inbox.post(f"/api/v1/inbox/{item_id}/archive")
    finally:
        inbox_event.disconnect(receiver)

    events = [(c.kwargs["event"], c.kwargs["message_ids"], c.kwargs["tenant_id"]) for c in receiver.call_args_list]
    assert events == [("message.read", [item_id], tenant.pk), ("message.archived", [item_id], tenant.pk)]


# --- The recipient's own preferences ------------------------------------------------------------


def test_recipient_reads_and_writes_own_preferences(admin, tenant, ada_inbox):
    CategoryFactory(tenant=tenant, key="promo", channels=["inapp"])
    CategoryFactory(tenant=tenant, key="security", channels=["inapp"], critical=True)

    document = ada_inbox.get("/api/v1/inbox/preferences").json()
    assert document["critical_categories"] == ["security"]
    document["categories"] = {"promo": {"inapp": False}}
    response = ada_inbox.put("/api/v1/inbox/preferences", document, format="json")

    assert response.status_code == 200, response.content
    assert admin.get("/api/v1/recipients/ada/preferences").json()["categories"] == {"promo": {"inapp": False}}
    # ...and the send path honours it, as for any channel.
    accepted = admin.post(
        "/api/v1/notifications",
        {"recipient": "ada", "category": "promo", "content": {"inapp": {"title": "Sale"}}},
        format="json",
    )
    assert accepted.status_code == 403
    assert accepted.json()["error"]["code"] == "preference_rejected"


def test_the_recipients_own_round_trip_keeps_an_opt_out_of_a_deleted_category(admin, tenant, ada_inbox):
    CategoryFactory(tenant=tenant, key="promo", channels=["inapp"])
    ada_inbox.put("/api/v1/inbox/preferences", {"categories": {"promo": {"inapp": False}}}, format="json")
    assert admin.delete("/api/v1/categories/promo").status_code == 204

    document = ada_inbox.get("/api/v1/inbox/preferences").json()
    document["channels"]["email"] = False
    response = ada_inbox.put("/api/v1/inbox/preferences", document, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["categories"] == {"promo": {"inapp": False}}


def test_critical_categories_are_read_only(tenant, ada_inbox):
    CategoryFactory(tenant=tenant, key="security", channels=["inapp"], critical=True)
    response = ada_inbox.put("/api/v1/inbox/preferences", {"categories": {"security": {"inapp": False}}}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "critical_category"


def test_preferences_refuse_other_tenants_categories_and_unknown_fields(outsider_tenant, ada_inbox):
    CategoryFactory(tenant=outsider_tenant, key="theirs")
    assert ada_inbox.put("/api/v1/inbox/preferences", {"categories": {"theirs": {}}}, format="json").status_code == 400
    assert ada_inbox.put("/api/v1/inbox/preferences", {"chanels": {}}, format="json").status_code == 400


def test_the_inbox_answers_cross_origin_requests_and_the_tenant_api_does_not(ada_inbox, admin):
    """The bell runs on the tenant's own origin; nothing else of the API is opened to browsers."""
    preflight = ada_inbox.options(
        "/api/v1/inbox",
        HTTP_ORIGIN="https://app.tenant.test",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert ada_inbox.get("/api/v1/inbox", HTTP_ORIGIN="https://app.tenant.test")["Access-Control-Allow-Origin"] == "*"
    response = admin.get("/api/v1/recipients", HTTP_ORIGIN="https://app.tenant.test")
    assert "Access-Control-Allow-Origin" not in response


def test_demo_page_exists_only_under_debug(client, settings):
    settings.DEBUG = False
    assert client.get("/demo/inbox/").status_code == 404
    settings.DEBUG = True
    page = client.get("/demo/inbox/")
    assert page.status_code == 200
    assert b"alertflow/inbox.js" in page.content
