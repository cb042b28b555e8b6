"""The template versions sends resolve come from a per-process cache checked against a
per-tenant version in Redis (alertflow/versioned_cache.py): no query once cached, and a new
version, a deletion or a revival is what the next send gets, in every process."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alertflow.versioned_cache import VersionedCache
from notifications.models import Message
from notifications.services import _template_for, template_for
from templates_app.models import Template
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com", phone="+14155552671")


def write_template(client, text: str, method="post"):
    path = "/api/v1/templates" if method == "post" else "/api/v1/templates/otp"
    body = {"code": "otp", "channels": {"sms": {"text": text}}}
    response = getattr(client, method)(path, body, format="json")
    assert response.status_code in (200, 201), response.content
    return response


def send(client):
    return client.post(
        "/api/v1/notifications", {"recipient": "ada", "channels": ["sms"], "template": "otp"}, format="json"
    )


def sent_version(response) -> int:
    return (
        Message.objects.select_related("template_version")
        .get(notification_id=response.json()["id"])
        .template_version.number
    )


def template_reads(queries) -> list[str]:
    table = Template._meta.db_table
    return [q["sql"] for q in queries if q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"]]


def test_a_cached_version_costs_no_query(admin, ada):
    write_template(admin, "Code {{ code }}")

    with CaptureQueriesContext(connection) as first:
        assert send(admin).status_code == 202
    with CaptureQueriesContext(connection) as second:
        assert send(admin).status_code == 202

    assert template_reads(first.captured_queries)
    assert template_reads(second.captured_queries) == []


def test_a_new_version_is_what_the_next_send_gets(admin, ada):
    write_template(admin, "Code {{ code }}")
    assert sent_version(send(admin)) == 1

    write_template(admin, "Your code: {{ code }}", method="put")

    assert sent_version(send(admin)) == 2


def test_a_deleted_template_is_refused_by_the_next_send_and_a_revived_one_sent(admin, ada):
    write_template(admin, "Code {{ code }}")
    assert send(admin).status_code == 202

    assert admin.delete("/api/v1/templates/otp").status_code == 204
    refused = send(admin)
    assert refused.status_code == 400
    assert "template" in refused.json()["error"]["details"]["fields"]

    write_template(admin, "Back: {{ code }}")
    assert sent_version(send(admin)) == 2


def test_another_process_reloads_after_a_change_made_in_this_one(admin, tenant, ada):
    write_template(admin, "Code {{ code }}")
    other = VersionedCache("templates")  # another process's entries, the same versions in Redis
    loads = []

    def load():
        loads.append(1)
        return _template_for(tenant, "otp", "en")

    assert other.get(tenant.pk, "otp", load).number == 1
    assert other.get(tenant.pk, "otp", load).number == 1
    write_template(admin, "Your code: {{ code }}", method="put")

    assert other.get(tenant.pk, "otp", load).number == 2
    assert len(loads) == 2


def test_a_cached_version_is_not_found_by_another_tenant(admin, outsider, tenant, outsider_tenant, ada):
    write_template(admin, "Code {{ code }}")
    assert template_for(tenant, "otp", "en").number == 1

    assert template_for(outsider_tenant, "otp", "en") is None
    write_template(outsider, "Theirs {{ code }}")
    theirs = template_for(outsider_tenant, "otp", "en")
    assert theirs.template.tenant_id == outsider_tenant.pk
    assert template_for(tenant, "otp", "en").template.tenant_id == tenant.pk


@pytest.mark.django_db(transaction=True)
def test_a_send_resolving_the_template_while_it_is_deleted_does_not_keep_it(admin, tenant, ada):
    # The API's DELETE runs in autocommit. Another request resolving the template between the
    # cache's bumps and the soft delete's UPDATE reads the still-live row; it must not be kept
    # under the version the deletion leaves behind.
    write_template(admin, "Code {{ code }}")
    assert template_for(tenant, "otp", "en").number == 1
    table = Template._meta.db_table
    resolved_meanwhile = []

    def another_send_resolves_first(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and f'"{table}"' in sql and not resolved_meanwhile:
            resolved_meanwhile.append(template_for(tenant, "otp", "en"))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(another_send_resolves_first):
        assert admin.delete("/api/v1/templates/otp").status_code == 204

    assert resolved_meanwhile[0].number == 1  # the interleaving happened: the row was still live
    assert template_for(tenant, "otp", "en") is None
    refused = send(admin)
    assert refused.status_code == 400
    assert "template" in refused.json()["error"]["details"]["fields"]
