"""UTC connections read `timestamptz` with psycopg's C loader (alertflow/timestamps.py), and
read exactly what Django's own loader reads."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.pq import Format

from alertflow import timestamps
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

VALUES = [
    "2026-12-04 11:54:02.123456+00",
    "2026-12-04 11:54:02+00",
    "2026-03-29 01:30:00+02",
    "2026-12-04 23:59:59.999999-11:30",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "1969-07-20 20:17:40+00",
    None,
]


def read(cursor) -> list:
    placeholders = ", ".join(["%s::timestamptz"] * len(VALUES))
    cursor.execute(f"SELECT {placeholders}", VALUES)
    return list(cursor.fetchone())


def test_a_utc_connection_reads_timestamptz_with_the_c_loader():
    with connection.cursor() as cursor:
        oid = connection.connection.adapters.types["timestamptz"].oid
        loader = connection.connection.adapters.get_loader(oid, Format.TEXT)
        assert loader is timestamps._loader_class
        assert type(loader(oid, cursor.cursor).load.__self__).__module__.startswith("psycopg_binary")
        # Django would put its own loader back on the cursor if the `timezone` it compares differed.
        assert cursor.cursor.adapters.get_loader(oid, Format.TEXT) is loader


def test_the_c_loader_reads_what_djangos_loader_reads():
    with connection.cursor() as cursor:
        fast = read(cursor)
    with connection.cursor() as cursor:
        register_tzloader(connection.timezone, cursor.cursor)  # Django's own, as without alertflow.timestamps
        django_read = read(cursor)

    assert fast == django_read
    assert [v.tzinfo for v in fast if v] == [v.tzinfo for v in django_read if v] == [UTC] * (len(VALUES) - 1)
    assert all(v.tzinfo is UTC for v in fast if v)


def test_a_model_reads_back_the_moment_it_saved():
    moment = datetime(2026, 12, 4, 11, 54, 2, 123456, tzinfo=UTC) - timedelta(days=400)
    tenant = Tenant.objects.create(name="timestamps")
    Tenant.objects.filter(pk=tenant.pk).update(created=moment)

    created = Tenant.objects.get(pk=tenant.pk).created

    assert created == moment
    assert created.tzinfo is UTC
