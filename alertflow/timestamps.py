"""PostgreSQL `timestamptz` values read by psycopg's C loader on UTC connections.

Django reads every `timestamptz` through its own loader (`BaseTzLoader`, a Python subclass of
psycopg's pure-Python `TimestamptzLoader`, so the C one in psycopg_binary is never used), which
parses the text in Python and then replaces the tzinfo with the connection's. A worker's batch
load reads about twenty timestamps per message (the message's, its notification's, recipient's,
tenant's, category's and template version's): parsing them was most of the load's `fetchall`, a
twentieth of the worker's CPU per bulk email (py-spy, bench.e2e).

On a connection whose Django time zone is UTC and whose session time zone is `UTC` (what Django
sets when TIME_ZONE is "UTC", as config/settings.py has it), psycopg's C loader gives the very
same values: it takes its tzinfo from the session (`psycopg._tz.get_tzinfo`: `UTC` is
`datetime.timezone.utc`), which is also what Django's loader puts in. Any other time zone keeps
Django's loader.
"""

from datetime import UTC

from django.db.backends.signals import connection_created
from django.dispatch import receiver

_loader_class = None


def _utc_loader_class():
    """A loader that parses with psycopg's C `timestamptz` text loader, and has the `timezone`
    attribute Django compares with its own on every new cursor (`DatabaseWrapper.create_cursor`):
    equal, so Django does not put its Python loader back. (The C class cannot be subclassed.)"""
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    fast = psycopg.adapters.get_loader(psycopg.postgres.types["timestamptz"].oid, Format.TEXT)

    class UtcTimestamptzLoader(Loader):
        timezone = UTC

        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            # The C loader's own bound method, in the instance: what psycopg calls for each value.
            self.load = fast(oid, context).load

        def load(self, data):  # shadowed by the instance's `load` above
            raise NotImplementedError

    return UtcTimestamptzLoader


@receiver(connection_created, dispatch_uid="alertflow.timestamps.load_utc_timestamps_in_c")
def load_utc_timestamps_in_c(sender, connection, **kwargs) -> None:
    """Give a new PostgreSQL connection in UTC the C loader for `timestamptz` (see above)."""
    global _loader_class
    if connection.vendor != "postgresql" or connection.timezone is not UTC:
        return
    pg = connection.connection
    if pg.info.parameter_status("TimeZone") != "UTC":
        return
    if _loader_class is None:
        _loader_class = _utc_loader_class()
    pg.adapters.register_loader("timestamptz", _loader_class)
