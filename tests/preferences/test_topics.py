from django.db import connection

from preferences.models import Subscription, Topic
from preferences.serializers import MAX_SUBSCRIBERS_PER_CALL
from tests.factories import RecipientFactory, TopicFactory


def subscriber_ids(topic) -> list[str]:
    return list(topic.subscribers.values_list("external_id", flat=True))


def test_create_list_get_and_delete_a_topic(admin, member, tenant):
    created = admin.post("/api/v1/topics", {"key": "release-notes", "name": "Release notes"}, format="json")
    assert created.status_code == 201
    assert created.json()["key"] == "release-notes"

    assert [t["key"] for t in member.get("/api/v1/topics").json()["results"]] == ["release-notes"]
    assert member.get("/api/v1/topics/release-notes").json()["name"] == "Release notes"

    assert admin.delete("/api/v1/topics/release-notes").status_code == 204
    assert not Topic.objects.exists()


def test_topic_key_is_unique_per_tenant_and_follows_the_category_key_rules(admin, tenant, outsider_tenant):
    TopicFactory(tenant=outsider_tenant, key="news")  # another tenant's key does not collide
    assert admin.post("/api/v1/topics", {"key": "news"}, format="json").status_code == 201
    for key in ["news", "bad key", "-starts-with-dash", "x" * 65]:
        response = admin.post("/api/v1/topics", {"key": key}, format="json")
        assert response.status_code == 400, key
        assert response.json()["error"]["code"] == "validation_error"


def test_adding_and_removing_subscribers_is_idempotent(admin, tenant):
    topic = TopicFactory(tenant=tenant, key="news")
    for external_id in ["a", "b", "c"]:
        RecipientFactory(tenant=tenant, external_id=external_id)
    url = "/api/v1/topics/news/subscribers"

    first = admin.post(url, {"add": ["a", "b"]}, format="json")
    assert first.status_code == 200
    assert first.json() == {"added": 2, "removed": 0, "subscribers": 2}
    again = admin.post(url, {"add": ["a", "b", "b"]}, format="json").json()
    assert again == {"added": 0, "removed": 0, "subscribers": 2}

    assert admin.post(url, {"add": ["c"], "remove": ["a"]}, format="json").json() == {
        "added": 1,
        "removed": 1,
        "subscribers": 2,
    }
    assert admin.post(url, {"remove": ["a"]}, format="json").json()["removed"] == 0
    assert subscriber_ids(topic) == ["b", "c"]


def test_unknown_ids_are_listed_and_nothing_is_written(admin, tenant, outsider_tenant):
    TopicFactory(tenant=tenant, key="news")
    RecipientFactory(tenant=tenant, external_id="known")
    RecipientFactory(tenant=outsider_tenant, external_id="theirs")

    response = admin.post(
        "/api/v1/topics/news/subscribers", {"add": ["known", "ghost", "theirs"], "remove": ["gone"]}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_recipients"
    assert error["details"]["unknown"] == ["ghost", "theirs", "gone"]
    assert "ghost" in error["message"]
    assert not Subscription.objects.exists()


def test_more_than_10000_ids_per_call_are_refused(admin, tenant):
    TopicFactory(tenant=tenant, key="news")
    ids = [f"r{n}" for n in range(MAX_SUBSCRIBERS_PER_CALL + 1)]
    response = admin.post("/api/v1/topics/news/subscribers", {"add": ids[:5000], "remove": ids[5000:]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_an_id_both_added_and_removed_is_refused(admin, tenant):
    TopicFactory(tenant=tenant, key="news")
    RecipientFactory(tenant=tenant, external_id="a")
    response = admin.post("/api/v1/topics/news/subscribers", {"add": ["a"], "remove": ["a"]}, format="json")
    assert response.status_code == 400


def test_10000_subscribers_are_added_in_a_few_queries(admin, tenant, django_assert_max_num_queries):
    topic = TopicFactory(tenant=tenant, key="news")
    with connection.cursor() as cursor:  # 10,000 rows in one statement: seconds faster than bulk_create
        cursor.execute(
            "INSERT INTO preferences_recipient (tenant_id, external_id, email, phone, name, locale, timezone,"
            " data, created, updated) SELECT %s, 'r' || n, '', '', '', '', 'UTC', '{}', now(), now()"
            " FROM generate_series(0, %s) AS n",
            [tenant.pk, MAX_SUBSCRIBERS_PER_CALL - 1],
        )
    ids = [f"r{n}" for n in range(MAX_SUBSCRIBERS_PER_CALL)]
    with django_assert_max_num_queries(15):
        response = admin.post("/api/v1/topics/news/subscribers", {"add": ids}, format="json")
    assert response.json()["subscribers"] == MAX_SUBSCRIBERS_PER_CALL
    with django_assert_max_num_queries(15):
        response = admin.post("/api/v1/topics/news/subscribers", {"remove": ids}, format="json")
    assert response.json() == {"added": 0, "removed": MAX_SUBSCRIBERS_PER_CALL, "subscribers": 0}
    assert not topic.subscriptions.exists()


def test_subscribers_are_listed_paginated_in_id_order(member, tenant):
    topic = TopicFactory(tenant=tenant, key="news")
    recipients = [RecipientFactory(tenant=tenant, external_id=x) for x in ["z", "y", "x"]]
    Subscription.objects.bulk_create(Subscription(topic=topic, recipient=r) for r in recipients)

    page = member.get("/api/v1/topics/news/subscribers", {"page_size": 2}).json()
    assert page["count"] == 3
    assert [r["external_id"] for r in page["results"]] == ["z", "y"]
    assert page["next"]


def test_topic_subscribers_iterate_in_chunks_by_id(tenant):
    topic = TopicFactory(tenant=tenant)
    recipients = [RecipientFactory(tenant=tenant) for _ in range(5)]
    Subscription.objects.bulk_create(Subscription(topic=topic, recipient=r) for r in recipients[1:])
    seen, last = [], 0
    while chunk := list(topic.subscribers.filter(id__gt=last).values_list("id", flat=True)[:2]):
        seen.extend(chunk)
        last = chunk[-1]
    assert seen == [r.pk for r in recipients[1:]]


def test_member_reads_topics_but_cannot_change_them(member, tenant):
    TopicFactory(tenant=tenant, key="news")
    RecipientFactory(tenant=tenant, external_id="a")
    assert member.get("/api/v1/topics/news/subscribers").status_code == 200
    for response in (
        member.post("/api/v1/topics", {"key": "other"}, format="json"),
        member.delete("/api/v1/topics/news"),
        member.post("/api/v1/topics/news/subscribers", {"add": ["a"]}, format="json"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    assert Topic.objects.count() == 1 and not Subscription.objects.exists()


def test_outsider_gets_404_on_every_topic_endpoint(outsider, tenant, outsider_tenant):
    TopicFactory(tenant=tenant, key="news")
    RecipientFactory(tenant=outsider_tenant, external_id="a")
    assert outsider.get("/api/v1/topics/news").status_code == 404
    assert outsider.delete("/api/v1/topics/news").status_code == 404
    assert outsider.get("/api/v1/topics/news/subscribers").status_code == 404
    assert outsider.post("/api/v1/topics/news/subscribers", {"add": ["a"]}, format="json").status_code == 404
    assert outsider.get("/api/v1/topics").json()["count"] == 0
    assert Topic.objects.filter(tenant=tenant).exists() and not Subscription.objects.exists()
