"""Counters many transactions raise at once (alertflow/counters.py): a connection raises its own
shard's rows, so a transaction raising a counter does not wait for another one's commit unless
both connections are on one shard (or the counter is checked against a limit: shard 0)."""

import threading
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from alertflow.counters import SHARDS, shard_sql
from notifications import analytics
from notifications.models import DeliveryCount
from tenants.models import Quota
from tenants.usage import charge, usage_report

pytestmark = pytest.mark.django_db(transaction=True)


def own_shard() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {shard_sql(connection)}", [])
        return cursor.fetchone()[0]


@contextmanager
def raised_and_not_committed(write: Callable[[], None]):
    """`write` run in another thread's transaction, held open (its row locks with it) until the
    block ends; yields that connection's shard. This thread's connection is then on another one."""
    done, release, shard, errors = threading.Event(), threading.Event(), [], []

    def holder():
        try:
            with transaction.atomic():
                write()
                shard.append(own_shard())
                done.set()
                release.wait(30)
        except Exception as exc:  # reported below: a thread's exception would vanish
            errors.append(exc)
            done.set()
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert done.wait(30) and not errors, errors
        # Server process ids are handed out one after the other: a few reconnections at most.
        for _ in range(4 * SHARDS):
            if own_shard() != shard[0]:
                break
            connection.close()
        assert own_shard() != shard[0]
        yield shard[0]
    finally:
        release.set()
        thread.join()
    assert not errors, errors


def without_waiting(write: Callable[[], None]) -> None:
    """`write` in a transaction that gives up on a row lock after a second."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '1s'")
        write()


def test_a_charge_without_a_quota_does_not_wait_for_another_sends_commit(tenant):
    with raised_and_not_committed(lambda: charge(tenant, {"email": 1})):
        without_waiting(lambda: charge(tenant, {"email": 2}))

    assert usage_report(tenant)["channels"]["email"]["used"] == 3


def test_a_charge_against_a_quota_waits_for_the_one_before_it(tenant):
    """Exactness costs the queue: every charge of a channel with a quota raises shard 0."""
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=10)

    with raised_and_not_committed(lambda: charge(tenant, {"email": 1})), pytest.raises(OperationalError):
        without_waiting(lambda: charge(tenant, {"email": 2}))

    assert usage_report(tenant)["channels"]["email"]["used"] == 1


def test_an_analytics_count_does_not_wait_for_another_writers_commit(tenant):
    key = (tenant.pk, analytics.hour_of(timezone.now()), "email", "", "", "accepted")

    def count(n):
        return lambda: analytics.add(Counter({key: n}), Counter())

    with raised_and_not_committed(count(1)) as held:
        without_waiting(count(2))
        mine = own_shard()

    rows = dict(DeliveryCount.objects.filter(tenant=tenant).values_list("shard", "n"))
    assert rows == {held: 1, mine: 2}
