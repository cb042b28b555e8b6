"""The operator's console checks a campaign as the campaigns API does (the API's serializer:
its schedule, audience, template and channels), and offers and accepts only categories of the
campaign's own tenant."""

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from notifications.models import Campaign
from tests.factories import CategoryFactory
from tests.notifications.conftest import EMAIL
from tests.notifications.test_campaigns import WEEKLY, create
from tests.operators.pages import errors_of, save

pytestmark = pytest.mark.django_db


@pytest.fixture
def weekly(admin):
    """A campaign of `tenant`, made through the API; returns its admin change page's URL."""
    response = admin.post("/api/v1/templates", {"code": "digest", "name": "Digest", "channels": EMAIL}, format="json")
    assert response.status_code == 201, response.content
    response = create(admin)
    assert response.status_code == 201, response.content
    return reverse("admin:notifications_campaign_change", args=[response.json()["id"]])


@pytest.fixture
def namesake(outsider):
    """Another tenant's campaign of the same name: the console's checks leave it alone."""
    response = outsider.post(
        "/api/v1/templates", {"code": "digest", "name": "Digest", "channels": EMAIL}, format="json"
    )
    assert response.status_code == 201, response.content
    response = create(outsider, schedule={"cron": "0 7 * * *", "timezone": "Asia/Tokyo"})
    assert response.status_code == 201, response.content
    return Campaign.objects.get(pk=response.json()["id"])


@pytest.mark.parametrize(
    "schedule",
    [
        '{"cron": "61 9 * * MON", "timezone": "Europe/Paris"}',
        '{"cron": "0 9 * * MON", "timezone": "Mars/Olympus"}',
        '{"cron": "0 9 * * MON"}',
        '{"cron": "0 9 1 * MON", "timezone": "UTC"}',
        '{"at": "next tuesday"}',
        '["0 9 * * MON"]',
    ],
)
def test_admin_refuses_a_schedule_the_api_refuses(admin_client, admin, weekly, namesake, schedule):
    campaign = Campaign.objects.get(pk=weekly.split("/")[-3])
    api = admin.patch(f"/api/v1/campaigns/{campaign.pk}", {"schedule": schedule}, content_type="application/json")

    response = save(admin_client, weekly, schedule=schedule)

    assert api.status_code == 400
    assert response.status_code == 200  # the form again, with the error
    assert "schedule" in errors_of(response)
    campaign.refresh_from_db()
    assert campaign.schedule == WEEKLY
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).crontab.timezone.key == "Europe/Paris"
    namesake.refresh_from_db()
    assert namesake.schedule == {"cron": "0 7 * * *", "timezone": "Asia/Tokyo"}


def test_admin_saves_a_schedule_as_the_api_stores_it_and_moves_its_beat_task(admin_client, weekly, namesake):
    response = save(admin_client, weekly, schedule='{"cron": "30  7 * * *", "timezone": "Asia/Tokyo"}')

    assert response.status_code == 302
    campaign = Campaign.objects.get(pk=weekly.split("/")[-3])
    assert campaign.schedule == {"cron": "30 7 * * *", "timezone": "Asia/Tokyo"}
    crontab = PeriodicTask.objects.get(pk=campaign.periodic_task_id).crontab
    assert (crontab.minute, crontab.hour, crontab.timezone.key) == ("30", "7", "Asia/Tokyo")
    assert PeriodicTask.objects.get(pk=namesake.periodic_task_id).crontab.timezone.key == "Asia/Tokyo"


def test_admin_offers_and_accepts_only_categories_of_the_campaigns_tenant(
    admin_client, tenant, outsider_tenant, weekly, namesake
):
    mine = CategoryFactory(tenant=tenant, key="digest")
    theirs = CategoryFactory(tenant=outsider_tenant, key="digest")

    offered = admin_client.get(weekly).context["adminform"].form.fields["category"].queryset
    refused = save(admin_client, weekly, category=theirs.pk)
    campaign = Campaign.objects.get(pk=weekly.split("/")[-3])
    unchanged = campaign.category_id
    saved = save(admin_client, weekly, category=mine.pk)

    assert list(offered) == [mine]
    assert refused.status_code == 200
    assert "category" in errors_of(refused)
    assert unchanged is None
    assert saved.status_code == 302
    campaign.refresh_from_db()
    assert campaign.category == mine
    namesake.refresh_from_db()
    assert namesake.category is None


def test_admin_adds_no_campaign_with_another_tenants_category(admin_client, tenant, outsider_tenant, weekly):
    theirs = CategoryFactory(tenant=outsider_tenant, key="digest")
    add = reverse("admin:notifications_campaign_add")
    fields = {
        "tenant": tenant.pk,
        "name": "Another",
        "template": "digest",
        "channels": '["email"]',
        "audience": '{"all": true}',
        "schedule": '{"cron": "0 9 * * MON", "timezone": "UTC"}',
    }

    refused = save(admin_client, add, **fields, category=theirs.pk)
    added = save(admin_client, add, **fields)

    assert refused.status_code == 200
    assert "category" in errors_of(refused)
    assert added.status_code == 302
    assert list(Campaign.objects.filter(tenant=tenant).values_list("name", flat=True).order_by("name")) == [
        "Another",
        "Weekly",
    ]
    assert not Campaign.objects.filter(tenant=outsider_tenant).exists()


def test_admin_keeps_a_campaign_with_its_tenant(admin_client, tenant, outsider_tenant, weekly):
    response = save(admin_client, weekly, tenant=outsider_tenant.pk)

    assert response.status_code == 302
    assert Campaign.objects.get(pk=weekly.split("/")[-3]).tenant == tenant
