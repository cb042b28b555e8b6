"""No table of ours carries an index that another index of the same table already gives.

An index whose columns start another index's (same operator classes, neither partial) answers
no query the longer one cannot, yet every INSERT writes it, and every UPDATE that moves a row
off its page too: a message is inserted once and updated at least twice (claimed, sent), none
of them a HOT update, since each changes an indexed column. Django gives every ForeignKey an
index of its own unless told `db_index=False`, which is where such duplicates come from."""

import pytest
from django.apps import apps
from django.db import connection

OUR_APPS = ("alertflow", "tenants", "preferences", "templates_app", "notifications", "delivery")

INDEXES = """
SELECT c.relname, i.indisunique, i.indpred IS NOT NULL,
       string_to_array(i.indkey::text, ' ')::int[], string_to_array(i.indclass::text, ' ')::oid[]
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %s::regclass
"""


def redundant_indexes(table: str) -> list[str]:
    """`shorter ⊂ longer` for each index of `table` that another one makes redundant."""
    with connection.cursor() as cursor:
        cursor.execute(INDEXES, [table])
        indexes = cursor.fetchall()
    found = []
    for name, unique, partial, columns, classes in indexes:
        # A unique index enforces something; an expression index (column 0) or a partial one
        # answers other queries.
        if unique or partial or 0 in columns:
            continue
        for other, _unique, other_partial, other_columns, other_classes in indexes:
            if other == name or other_partial or len(other_columns) < len(columns):
                continue
            width = len(columns)
            if other_columns[:width] == columns and other_classes[:width] == classes:
                found.append(f"{table}: {name} ⊂ {other}")
                break
    return found


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's catalog")
def test_no_index_repeats_the_start_of_another():
    tables = sorted({model._meta.db_table for label in OUR_APPS for model in apps.get_app_config(label).get_models()})
    assert len(tables) > 20  # every model of ours, not an empty list that passes
    assert [line for table in tables for line in redundant_indexes(table)] == []


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's catalog")
def test_the_check_finds_a_redundant_index():
    with connection.cursor() as cursor:
        cursor.execute('CREATE INDEX test_redundant ON "notifications_message" ("tenant_id")')
    assert "notifications_message: test_redundant ⊂ message_by_status" in redundant_indexes("notifications_message")


def index_names(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, table))


def foreign_keys(table: str) -> set[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {",".join(c["columns"]) for c in constraints.values() if c["foreign_key"]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's catalog")
def test_the_migration_drops_the_indexes_and_keeps_the_foreign_keys():
    """alertflow/migration_operations.py: both ways, and the constraints never dropped."""
    from django.core.management import call_command

    own = {
        "notifications_message_notification_id_a908bb17",
        "notifications_message_recipient_id_f5c7dd5a",
        "notifications_message_tenant_id_c6430145",
    }
    keys = {"notification_id", "recipient_id", "tenant_id", "template_version_id"}
    assert not own & index_names("notifications_message")
    assert foreign_keys("notifications_message") == keys
    try:
        call_command("migrate", "notifications", "0017", verbosity=0)
        assert own <= index_names("notifications_message")
        assert foreign_keys("notifications_message") == keys
    finally:
        call_command("migrate", "notifications", verbosity=0)
    assert not own & index_names("notifications_message")
    assert foreign_keys("notifications_message") == keys


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's catalog")
def test_the_operation_drops_the_foreign_keys_own_index_and_no_declared_one():
    """An index the model declares (`Meta.indexes`) on the column alone is no ForeignKey's own:
    it stays, as Django's `AlterField` leaves it."""
    from django.db.migrations.state import ProjectState
    from django.db.models import Index

    from alertflow.migration_operations import DropForeignKeyIndex
    from notifications.models import Message

    state = ProjectState.from_apps(apps)
    state.models["notifications", "message"].options["indexes"].append(Index(fields=["tenant"], name="declared_tenant"))
    with connection.schema_editor() as editor:
        editor.execute('CREATE INDEX "declared_tenant" ON "notifications_message" ("tenant_id")')
        editor.execute('CREATE INDEX "notifications_message_tenant_own" ON "notifications_message" ("tenant_id")')
        DropForeignKeyIndex("message", "tenant", Message._meta.get_field("tenant")).database_forwards(
            "notifications", editor, state, state
        )
    names = index_names("notifications_message")
    assert "declared_tenant" in names
    assert "notifications_message_tenant_own" not in names
