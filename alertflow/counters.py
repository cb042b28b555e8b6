"""Counter rows that many transactions raise at once, spread over shards.

A counter that every send raises (a tenant's usage of a channel this month, the analytics'
`accepted` of this hour) was one row per key. Each raising transaction locks the row until its
commit, so every concurrent send of a tenant queued on it, for as long as the transaction ahead
held it: its statement, the Python between that statement and its COMMIT (a GIL to take back in
a threaded web worker), the COMMIT and its WAL flush. That queue capped one tenant's accept on
one PostgreSQL, whatever the number of web processes (bench/README, 2026-12-04 session 8).

Such counters carry a `shard` column in their key. A connection raises the rows of its own
shard, 1 to SHARDS, from its server process's pid, so two transactions on different connections
rarely wait for each other, and readers add the shards up (`Sum`). A connection keeps its shard
for its life, so a transaction locks the rows it always did, of one shard: no new lock order
and no new deadlock. Shard 0 is kept for a counter that must be checked against a limit exactly
(tenants/usage.py: a channel with a quota), where every writer has to queue on one row.

SQLite (`make run`) has a single writer: every connection raises shard 1.
"""

SHARDS = 8


def shard_sql(connection) -> str:
    """The SQL expression of the calling connection's shard, for a counter's INSERT."""
    if connection.vendor == "postgresql":
        # `%%`: the expression goes into statements that have parameters.
        return f"(1 + pg_backend_pid() %% {SHARDS})"
    return "1"
