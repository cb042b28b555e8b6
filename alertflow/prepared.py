"""Prepared statements and schema changes made by another process (config/settings.py,
`DB_PREPARED_STATEMENTS`).

PostgreSQL refuses to run a prepared statement whose result columns a migration changed the type
of (`ALTER COLUMN ... TYPE`, even varchar(10) -> varchar(20)): "cached plan must not change
result type". psycopg forgets its prepared statements on a rollback, so inside a transaction the
statement fails once and the next transaction prepares it again. Outside one (autocommit, where
most of our queries run) nothing rolls back: the same statement failed on every later run, for
as long as the connection lived (DB_CONN_MAX_AGE in web and the workers, the relay's whole life),
between `manage.py migrate` and the restart of the processes still running the old code.

So a cursor that meets that error outside a transaction drops the connection's prepared
statements (`DEALLOCATE ALL`, which psycopg also takes as "forget yours") and runs the statement
again, once: it failed at its plan check, before doing anything.
"""

from django.db.backends.signals import connection_created
from django.dispatch import receiver

PLAN_CHANGED = "cached plan must not change result type"


def _replanning_cursor_class():
    import psycopg
    from django.db.backends.postgresql.base import ServerBindingCursor

    class ReplanningCursor(ServerBindingCursor):
        """Django's server-binding cursor, preparing again after a schema change (see above)."""

        def execute(self, query, params=None, **kwargs):
            try:
                return super().execute(query, params, **kwargs)
            except psycopg.errors.FeatureNotSupported as exc:
                conn = self.connection
                if exc.diag.message_primary != PLAN_CHANGED or (
                    conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
                ):
                    raise  # in a transaction: its rollback makes psycopg forget them
                conn.execute("DEALLOCATE ALL")
                return super().execute(query, params, **kwargs)

    return ReplanningCursor


_cursor_class = None


@receiver(connection_created, dispatch_uid="alertflow.prepared.replan_after_schema_change")
def replan_after_schema_change(sender, connection, **kwargs) -> None:
    """Give each new PostgreSQL connection that binds on the server and prepares statements the
    cursor above, in place of Django's (client-side binding prepares nothing: left alone)."""
    global _cursor_class
    if connection.vendor != "postgresql" or not connection.connection.prepare_threshold:
        return
    from django.db.backends.postgresql.base import ServerBindingCursor

    if connection.connection.cursor_factory is not ServerBindingCursor:
        return
    if _cursor_class is None:
        _cursor_class = _replanning_cursor_class()
    connection.connection.cursor_factory = _cursor_class
