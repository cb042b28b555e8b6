"""Several writes of a transaction as one statement: one round trip, one execute.

Each statement run on its own is a round trip to PostgreSQL and an execute through Django's
cursor and psycopg: the accept's five writes (notification, messages, outbox, quota, analytics)
were five of each. `run_together` sends them as one data-modifying `WITH` statement:

    WITH w0 AS (INSERT ... RETURNING 1), w1 AS (UPDATE ... RETURNING 1), ...
    SELECT (SELECT count(*) FROM w0), (SELECT count(*) FROM w1), ...

and returns each one's row count. The main query reads the parts one after the other, left to
right, and PostgreSQL runs each part to its end when it is read, so the parts run in their order
and a transaction still takes its row locks in the order its code says (PostgreSQL's
documentation promises no order for data-modifying `WITH` parts; this is how its executor
evaluates a SELECT list's sub-selects). What a part cannot do: see the rows another part
writes (they all see the statement's snapshot), or change a row another part changes.

On other databases (SQLite, `make run`: no data-modifying `WITH`) the parts run one by one, and
the row counts are the same; so does a single part (no `WITH` around it).
"""

from django.db import DEFAULT_DB_ALIAS, connections

Statement = tuple[str, list]

# psycopg turns a query's %s placeholders into $1, $2, ... once per query text and keeps the
# result, but only for queries of up to 50 parameters and 4,096 characters
# (`psycopg._queries.MAX_CACHED_STATEMENT_PARAMS` and `_LENGTH`, not part of its documented
# API). A single send's writes together have ~75: splitting that text again on every send cost
# 1.1M instructions, 15% of a send (bench/README, 2026-12-04 session 6). Raised for the few
# shapes these statements take; a psycopg without these names keeps its own bounds (slower,
# never wrong), which tests/alertflow/test_together.py would tell.
MAX_CACHED_PARAMS = 1000
MAX_CACHED_LENGTH = 32768


def _cache_long_statements() -> None:
    from psycopg import _queries

    if hasattr(_queries, "MAX_CACHED_STATEMENT_PARAMS") and hasattr(_queries, "MAX_CACHED_STATEMENT_LENGTH"):
        _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, MAX_CACHED_PARAMS)
        _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, MAX_CACHED_LENGTH)


def run_together(statements: list[Statement | None], using: str = DEFAULT_DB_ALIAS) -> list[int]:
    """Run `statements` ((sql, params) of INSERTs, UPDATEs or DELETEs without RETURNING; None
    for nothing to write), in their order, as one statement on PostgreSQL (see above); return
    each one's row count (0 for a None). Inside the caller's transaction; an error of any part
    is raised as Django's (`IntegrityError`, ...) and nothing of the statement is kept."""
    connection = connections[using]
    parts = [(i, statement) for i, statement in enumerate(statements) if statement is not None]
    counts = [0] * len(statements)
    if connection.vendor != "postgresql" or len(parts) <= 1:
        for i, (sql, params) in parts:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                counts[i] = cursor.rowcount
        return counts
    # The parts' SQL is the callers' (names from models; values are parameters).
    sql = "WITH " + ", ".join(f"w{n} AS ({part} RETURNING 1)" for n, (_i, (part, _p)) in enumerate(parts))
    sql += " SELECT " + ", ".join(f"(SELECT count(*) FROM w{n})" for n in range(len(parts)))  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for _i, (_sql, params) in parts for value in params])
        row = cursor.fetchone()
    for (i, _statement), count in zip(parts, row, strict=True):
        counts[i] = count
    return counts


_cache_long_statements()
