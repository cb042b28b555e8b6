"""`alertflow.together.run_together`: several writes as one statement on PostgreSQL (a
data-modifying WITH), one by one elsewhere, with the same row counts and the same errors."""

import pytest
from django.db import IntegrityError, connection, transaction

from alertflow.compiled import CompiledInsert
from alertflow.together import run_together
from tenants.models import Quota, Tenant

# Also run on SQLite, the database of `make run` (make test's second pass).
pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

insert_quotas = CompiledInsert(Quota)


def rename(name: str, where_name: str):
    table = connection.ops.quote_name(Tenant._meta.db_table)
    return f"UPDATE {table} SET name = %s WHERE name = %s", [name, where_name]  # noqa: S608 (a model's table)


def test_each_statements_row_count_comes_back_in_its_place(tenant):
    quota = Quota(tenant=tenant, channel="email", monthly_limit=5)

    counts = run_together([insert_quotas.statement([quota]), None, rename("renamed", "Acme"), rename("x", "nobody")])

    assert counts == [1, 0, 1, 0]
    tenant.refresh_from_db()
    assert tenant.name == "renamed"
    assert list(Quota.objects.values_list("channel", "monthly_limit")) == [("email", 5)]


def test_nothing_to_write_runs_nothing():
    assert run_together([None, None]) == [0, 0]
    assert run_together([]) == []


def test_an_error_of_any_statement_is_djangos_and_nothing_of_the_statements_is_kept(tenant):
    email = Quota(tenant=tenant, channel="email", monthly_limit=1)
    again = Quota(tenant=tenant, channel="email", monthly_limit=2)  # the same (tenant, channel)

    with pytest.raises(IntegrityError), transaction.atomic():
        run_together([rename("renamed", "Acme"), insert_quotas.statement([email]), insert_quotas.statement([again])])

    assert not Quota.objects.exists()
    tenant.refresh_from_db()
    assert tenant.name == "Acme"


def test_a_long_statement_is_converted_once_not_on_every_run(tenant):
    """psycopg keeps a query's placeholder conversion only up to a number of parameters, which
    the accept's writes together pass (alertflow/together.py raises it)."""
    if connection.vendor != "postgresql":
        pytest.skip("psycopg's conversion: PostgreSQL only")
    from psycopg import _queries

    quotas = [Quota(tenant=tenant, channel=channel, monthly_limit=1) for channel in ("email", "sms", "push", "inapp")]
    statements = [insert_quotas.statement([quota]) for quota in quotas]  # 4 x 3 parameters
    statements += [rename(f"n{n}", f"n{n - 1}") for n in range(1, 30)]  # 58 more: over psycopg's 50
    with transaction.atomic():
        run_together(statements)
        transaction.set_rollback(True)
    before = _queries._query2pg.cache_info().hits

    with transaction.atomic():
        run_together(statements)
        transaction.set_rollback(True)

    assert _queries._query2pg.cache_info().hits == before + 1
