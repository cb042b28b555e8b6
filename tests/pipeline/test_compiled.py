"""alertflow.compiled.CompiledLoad: the worker's batch load, compiled once per number of ids,
reads what the ORM reads."""

import pytest
from django.db.models.sql.compiler import SQLCompiler

from alertflow.compiled import CompiledLoad
from delivery.pipeline import load
from notifications.models import Message
from tests.factories import CategoryFactory, RecipientFactory

from .conftest import accept

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


@pytest.fixture
def compilations(monkeypatch):
    calls = []
    as_sql = SQLCompiler.as_sql

    def counted(self, *args, **kwargs):
        calls.append(self.query.model)
        return as_sql(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counted)
    return calls


def sends(admin, tenant, n) -> list:
    CategoryFactory(tenant=tenant, key="alerts")
    ids = []
    for i in range(n):
        RecipientFactory(tenant=tenant, external_id=f"u{i}", name=f"User {i}")
        ids += [m.id for m in accept(admin, ["email"], recipient=f"u{i}", category="alerts")]
    return ids


def test_the_load_reads_what_the_orm_reads(admin, tenant):
    ids = sends(admin, tenant, 3)

    loaded = {m.pk: m for m in load(ids)}
    expected = {
        m.pk: m
        for m in Message.objects.filter(pk__in=ids).select_related(
            "recipient", "notification__tenant", "notification__category"
        )
    }

    assert set(loaded) == set(ids)
    for pk, message in loaded.items():
        want = expected[pk]
        assert (message.status, message.channel, message.created, message.tenant_id) == (
            want.status,
            want.channel,
            want.created,
            want.tenant_id,
        )
        assert message.recipient.name == want.recipient.name
        assert message.notification.tenant.name == "Acme"
        assert message.notification.category.key == "alerts"
        assert message.notification.data == want.notification.data
        # Joined, not read again: no query for the related rows, and the large fields stay deferred.
        assert {"targets", "response"} <= message.notification.get_deferred_fields()


def test_a_second_load_of_as_many_ids_compiles_nothing(admin, tenant, compilations, django_assert_num_queries):
    first, second = sends(admin, tenant, 2)
    assert [m.pk for m in load([first])] == [first]
    compilations.clear()

    with django_assert_num_queries(1):
        [message] = load([second])

    assert compilations == []
    assert message.pk == second and message.recipient.external_id == "u1"


def test_a_query_with_other_parameters_is_never_cached(admin, tenant, compilations):
    first, second = sends(admin, tenant, 2)
    Message.objects.filter(pk=second).update(status="sent")
    queued = CompiledLoad(Message, lambda ids: Message.objects.filter(pk__in=ids, status="queued"))
    compilations.clear()

    assert [m.pk for m in queued([first])] == [first]
    assert queued([second]) == []  # not the first statement run with other ids: its own
    # The first call compiles to find out, then runs the ORM as usual; later calls go straight to it.
    assert compilations == [Message, Message, Message]
