"""alertflow.compiled: the worker's batch load (CompiledLoad), compiled once per number of ids,
reads what the ORM reads; CompiledInsert writes what bulk_create writes."""

from datetime import timedelta

import pytest
from django.db import connection, connections
from django.db.models.sql.compiler import SQLCompiler, SQLInsertCompiler
from django.utils import timezone

from alertflow.compiled import CompiledInsert, CompiledLoad
from delivery.pipeline import load
from notifications.models import DeliveryAttempt, Message, Notification, Outbox
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


# --- CompiledInsert ------------------------------------------------------------------------------


def new_rows(tenant, recipient, now=None) -> tuple[Notification, Message, Outbox]:
    """A notification with one message and its outbox row, every kind of value in them: JSON,
    non-ASCII text, timestamps, nulls, a boolean, foreign keys set by object and by id."""
    now = now or timezone.now()
    notification = Notification(
        created=now,
        progressed=now,
        tenant=tenant,
        channels=["email", "sms"],
        content={"email": {"subject": "Grüße ✓", "text": "x"}},
        data={"code": "4711", "nested": [1, None, True]},
        send_at=now + timedelta(minutes=5),
        expires_in=600,
        request_hash="f" * 64,
        response={"id": "n", "messages": []},
    )
    message = Message(
        tenant_id=tenant.pk,
        notification=notification,
        recipient=recipient,
        channel="email",
        status="scheduled",
        next_attempt=now + timedelta(minutes=5),
        batched=True,
        to="ada@example.com",
        created=now,
        updated=now,
    )
    outbox = Outbox(
        task="t", queue="email", step=2, args=["a", 1], queued_at=now.timestamp(), request_id="r", created=now
    )
    return notification, message, outbox


def test_an_insert_writes_what_bulk_create_writes(tenant):
    recipient = RecipientFactory(tenant=tenant, external_id="ada")
    now = timezone.now()
    by_orm, compiled = new_rows(tenant, recipient, now), new_rows(tenant, recipient, now)
    for model, orm_row, row in zip((Notification, Message, Outbox), by_orm, compiled, strict=True):
        model.objects.bulk_create([orm_row])
        CompiledInsert(model)([row])
        assert not row._state.adding and row._state.db == "default"

    for model, orm_row, row in zip((Notification, Message, Outbox), by_orm, compiled, strict=True):
        ignored = {"id", "notification"}
        fields = [f.attname for f in model._meta.concrete_fields if f.name not in ignored]
        written = model.objects.filter(pk=row.pk).values(*fields).get() if row.pk else None
        if model is Outbox:  # the database makes its key, which is not read back
            assert row.pk is None
            written = model.objects.exclude(pk=orm_row.pk).values(*fields).get()
        assert written == model.objects.filter(pk=orm_row.pk).values(*fields).get()
    assert Message.objects.get(pk=compiled[1].pk).notification_id == compiled[0].pk


def test_several_rows_write_what_bulk_create_writes(tenant):
    recipient = RecipientFactory(tenant=tenant, external_id="ada")
    now = timezone.now()
    by_orm = [new_rows(tenant, recipient, now + timedelta(seconds=i)) for i in range(3)]
    compiled = [new_rows(tenant, recipient, now + timedelta(seconds=i)) for i in range(3)]
    # Values that differ from row to row, a null among them, in each kind of column.
    for rows in (by_orm, compiled):
        rows[1][0].data, rows[1][0].send_at, rows[1][1].to = {"other": "ü"}, None, ""
        rows[2][1].batched, rows[2][2].args = False, []
    for index, model in enumerate((Notification, Message, Outbox)):
        model.objects.bulk_create([rows[index] for rows in by_orm])
        CompiledInsert(model)([rows[index] for rows in compiled])

    for index, model in enumerate((Notification, Message, Outbox)):
        fields = [f.attname for f in model._meta.concrete_fields if f.name not in {"id", "notification"}]
        orm_ids = [rows[index].pk for rows in by_orm]
        written = model.objects.exclude(pk__in=orm_ids).order_by("created").values(*fields)
        assert list(written) == list(model.objects.filter(pk__in=orm_ids).order_by("created").values(*fields))
        assert len(written) == 3
    message_ids = [rows[1].pk for rows in compiled]
    assert set(Message.objects.filter(pk__in=message_ids).values_list("notification_id", flat=True)) == {
        rows[0].pk for rows in compiled
    }


@pytest.mark.skipif(connection.vendor != "postgresql", reason="UNNEST is PostgreSQL's")
def test_on_postgresql_every_number_of_rows_is_one_statement_with_a_parameter_per_column(tenant):
    """A worker's batch of attempt rows: one SQL text (psycopg parses and prepares it once), not
    one per number of rows with a parameter per value (which psycopg parses anew each call)."""
    recipient = RecipientFactory(tenant=tenant, external_id="ada")
    notification, message, _outbox = new_rows(tenant, recipient)
    notification.save()
    message.save()
    insert = CompiledInsert(DeliveryAttempt)

    def attempts(n):
        return [DeliveryAttempt(message=message, provider="smtp", outcome="sent") for _ in range(n)]

    default = connections["default"]  # the statements are kept per connection object
    two, twenty = insert.statement(attempts(2), default), insert.statement(attempts(20), default)
    assert two[0] == twenty[0]
    assert len(twenty[1]) == len(insert.fields) and all(len(column) == 20 for column in twenty[1])
    insert(attempts(20))
    assert DeliveryAttempt.objects.filter(message=message).count() == 20


def test_a_second_insert_of_as_many_rows_compiles_nothing(tenant, django_assert_num_queries, monkeypatch):
    recipient = RecipientFactory(tenant=tenant, external_id="ada")
    insert = CompiledInsert(Message)
    first, second = new_rows(tenant, recipient), new_rows(tenant, recipient)
    Notification.objects.bulk_create([first[0], second[0]])
    insert([first[1]])
    compiled = []
    monkeypatch.setattr(SQLInsertCompiler, "as_sql", lambda self, *a: compiled.append(self) or [])

    with django_assert_num_queries(1):
        insert([second[1]])

    assert compiled == []
    assert Message.objects.filter(pk__in=[first[1].pk, second[1].pk]).count() == 2


def test_an_unsaved_related_object_is_refused_as_bulk_create_refuses_it(tenant):
    recipient = RecipientFactory.build(tenant=tenant, external_id="ada")  # never saved: no pk
    notification, message, _outbox = new_rows(tenant, recipient)
    notification.save()

    with pytest.raises(ValueError, match="unsaved related object 'recipient'"):
        CompiledInsert(Message)([message])
    assert not Message.objects.exists()
