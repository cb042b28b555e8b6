"""Putting message ids on the broker. The only place `notifications` talks to Celery.

Nothing here publishes from inside a request. Whoever queues messages (an accept, a fan-out
step, the due poller, the sweeper, a replay) writes `Outbox` rows in the same transaction
(`enqueue_on_commit`, `fan_out`), and the relay (`relay_once`, run by `manage.py relay`)
publishes committed rows and deletes them in one transaction: a task is published if and only
if its messages were committed, and a broker outage only leaves rows waiting. Tasks are sent
by name so `notifications` never imports `delivery` (DESIGN section 2).

How the sweeper tells a lost publish from a message waiting in a long backlog (it must not
publish the backlog again, DESIGN section 3):

- a publish that failed or never happened (the relay died, the broker was down) is still an
  outbox row: nothing to sweep, the relay publishes it when it can. Messages queued after the
  oldest waiting row may be in the outbox (`oldest_unrelayed`) and are never taken for lost;
- a publish the broker lost (a Redis that lost its lists) leaves no mark. Every task carries
  when its messages were queued (`QUEUED_HEADER`: their `updated`, the earliest of a batch's),
  and each (queue, priority step) is a FIFO list on Redis: if the oldest task waiting in a
  message's list holds messages queued well after it, the message cannot be waiting behind that
  task, so its publish was lost. `oldest_waiting` reads the head of each list. (The time of the
  publish itself would not do: a long transaction, such as 20,000 messages written at once,
  publishes its first task long after it queued its messages, and they would all look lost.)
"""

import base64
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

from celery import current_app
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Min, Q
from django.db.models.functions import Now
from django.utils import timezone
from redis.exceptions import RedisError

from alertflow import redis as alertflow_redis
from alertflow.compiled import CompiledInsert
from alertflow.logging import request_id_var
from alertflow.queues import (
    BATCH_PRIORITY_OFFSET,
    CHANNEL_QUEUES,
    DEFAULT_QUEUE,
    FAN_OUT_TASK,
    PRIORITY_LEVELS,
    PRIORITY_STEPS,
    SEND_BATCH_TASK,
    SEND_MESSAGE_TASK,
)
from alertflow.redis import Backoff
from alertflow.task_context import REQUEST_ID_HEADER
from alertflow.together import Statement, run_together

from .models import Outbox

logger = logging.getLogger(__name__)

# One batch task sends this many messages over one provider connection. Small enough that a
# critical single send waits at most one batch for a free worker.
BATCH_SIZE = 100
# Single sends waiting together are published in tasks of up to this many (at the single
# sends' own priority step): a burst of OTPs is sent over a few provider connections instead of
# one task and one connection each, and the first single is never held back for the others
# (a lone single reaching an idle system is a task of one, published at once).
SINGLES_PER_TASK = 20
# Outbox rows one relay transaction takes; more are taken by the next, at once.
RELAY_ROWS = 200
# Single sends are held back in the outbox while this many tasks already wait in their Redis list:
# every worker then has a task to take the moment it is free (prefetch 1), so a single published
# now would only wait there as a task of its own, behind them. Held in the outbox it waits as
# long, and goes out with the singles that came meanwhile, one task of up to SINGLES_PER_TASK,
# as soon as the list is shorter: the busier the workers, the larger the batches, and a single
# arriving at an idle system still goes out alone, at once.
QUEUE_AHEAD = 2
# ...but never longer than settings.ALERTFLOW_RELAY_HOLD_MAX_SECONDS: a bulk's batches share a list
# with the next priority's singles (priority_step), and a long bulk keeps that list at QUEUE_AHEAD
# tasks or more for minutes. Once a single was held that long, the list's held singles go out
# together anyway, behind the batches already waiting but before those published after them.

# The relay's broker connection gives up on a Redis that does not answer within this many seconds
# (redis-py waits forever by default): a relay stuck in a publish would keep its outbox rows locked,
# and nothing else could publish them. The relay then backs off and tries again.
BROKER_TIMEOUT_SECONDS = 5.0

# A message header: when the task's messages were queued (Unix time), read back by oldest_waiting.
QUEUED_HEADER = "af_queued"
# The channel the relay LISTENs on (PostgreSQL), notified once the rows of a transaction committed.
OUTBOX_CHANNEL = "alertflow_outbox"
# The wake-up is a transaction of its own, after the rows' commit, and not part of it (a trigger):
# PostgreSQL serialises the commits of notifying transactions, WAL flush included (measured here:
# 8 writers, 430-500 commits/s with a NOTIFY in the writing transaction, 1,480-1,580/s without).
# This one writes nothing that matters, so it need not wait for its flush (synchronous_commit
# off) and holds that lock for microseconds. Lost in a crash, the relay's poll finds the rows.
WAKE_RELAY = f"BEGIN; SET LOCAL synchronous_commit TO OFF; NOTIFY {OUTBOX_CHANNEL}; COMMIT"


def priority_step(priority: str, batched: bool) -> int:
    """The Redis list (priority step) a message's task goes to: batches one step below."""
    return PRIORITY_LEVELS[priority] + (BATCH_PRIORITY_OFFSET if batched else 0)


def _list_name(queue: str, step: int) -> str:
    # kombu's Redis transport: step 0 is the queue's own list, step n is `queue` + sep + n
    # (config/celery.py sets sep to ":").
    return f"{queue}:{step}" if step else queue


def oldest_waiting(queues: Iterable[str]) -> dict[tuple[str, int], datetime | None]:
    """When the messages of the oldest task still waiting in each (queue, step) list were
    queued; None for an empty list. A task without the header (published before it existed)
    counts as queued at the epoch: nothing is taken for lost behind it. Raises if the broker
    cannot be reached."""
    keys = [(queue, step) for queue in dict.fromkeys(queues) for step in PRIORITY_STEPS]
    with current_app.connection_for_read() as broker:
        client = broker.default_channel.client
        pipe = client.pipeline(transaction=False)
        for queue, step in keys:
            # kombu pushes on the left and pops on the right: the right end is the oldest.
            pipe.lindex(_list_name(queue, step), -1)
        heads = pipe.execute()
    waiting = {}
    for key, head in zip(keys, heads, strict=True):
        if head is None:
            waiting[key] = None
            continue
        queued = json.loads(head).get("headers", {}).get(QUEUED_HEADER, 0)
        waiting[key] = datetime.fromtimestamp(float(queued), UTC)
    return waiting


def oldest_unrelayed() -> datetime | None:
    """When the oldest outbox row still waiting for the relay was written; None when none waits.
    Messages queued after it may be waiting in the outbox, not lost."""
    return Outbox.objects.order_by("created").values_list("created", flat=True).first()


def _queued_at(messages: list) -> float:
    """When the earliest of these messages was queued (`updated`, if the caller loaded it)."""
    known = [m.updated for m in messages if "updated" not in m.get_deferred_fields() and m.updated]
    return (min(known) if known else timezone.now()).timestamp()


# A transaction's few outbox rows, written without Django's SQL compiler (a single send's
# accept: 0.47 ms of 6.1 in-process went to the ORM's bulk_create here).
_insert_outbox = CompiledInsert(Outbox)


def enqueue_on_commit(messages: Iterable) -> None:
    """Have the queued ones of these messages published once the caller's transaction commits
    (never before, and not at all if it rolls back): one outbox row per (channel, priority,
    transactional or batched) group, written now, in that transaction. A transactional send's
    messages go out as single sends, the messages of bulk and topic sends (`Message.batched`)
    in batches one priority step below."""
    run_together([outbox_statement(messages)])


def outbox_statement(messages: Iterable) -> Statement | None:
    """The INSERT of the outbox rows `enqueue_on_commit` writes for these messages (None when
    none is queued), for a caller that runs it with its other writes (`run_together`), in its
    transaction; the relay is woken after that transaction commits, as there."""
    groups = defaultdict(list)
    for message in messages:
        if message.status == "queued":
            groups[(message.channel, message.priority, message.batched)].append(message)
    if not groups:
        return None
    request_id = request_id_var.get()
    rows = [
        Outbox(
            task=SEND_BATCH_TASK if batched else SEND_MESSAGE_TASK,
            queue=CHANNEL_QUEUES[channel],
            step=priority_step(priority, batched),
            args=[str(m.id) for m in group],
            queued_at=_queued_at(group),
            request_id=request_id,
        )
        for (channel, priority, batched), group in groups.items()
    ]
    _wake_relay_after_commit()
    return _insert_outbox.statement(rows)


def fan_out(notification_id, after: int | None = None) -> None:
    """Have a fan-out step published once the caller's transaction commits; `after` is the
    checkpoint it continues from (None: wherever the notification's checkpoint is when it runs)."""
    Outbox.objects.create(
        task=FAN_OUT_TASK,
        queue=DEFAULT_QUEUE,
        step=PRIORITY_LEVELS["normal"],
        args=[str(notification_id), after],
        queued_at=timezone.now().timestamp(),
        request_id=request_id_var.get(),
    )
    _wake_relay_after_commit()


# While the API is busy the relay does not need the wake-ups: after a round that took rows it
# takes the next one a round's gap later anyway (notifications/relay.py, `serve`). It says so by
# setting this key, with a time to live, for as long as it will keep looking without being
# woken; a writer that reads the key alive when its transaction has committed skips the wake-up,
# a second transaction per send (3-4% of a send's instructions in the web process, and a commit
# that PostgreSQL serialises with every other notifying one). The time to live is Redis's clock
# alone, read as time left: the relay's and the writers' hosts need not agree on the time.
RELAY_POLLING_KEY = "af:relay:polling"
# How long a relay keeps looking after a round that took rows, without being woken.
RELAY_POLLING_SECONDS = 1.0
# A process reads the key at most this often (one PTTL per interval, not one per send) ...
RELAY_POLLING_READ_SECONDS = 0.1
# ... and wakes the relay when less than this is left of what it read, for the relay's round that
# is to come after the commit.
RELAY_POLLING_MARGIN_SECONDS = 0.05


class RelayPolling:
    """This process's view of whether a relay is looking for rows without being woken."""

    def __init__(self) -> None:
        self.backoff = Backoff("The relay's polling key", instead="waking the relay through PostgreSQL")
        self.forget()

    def forget(self) -> None:
        """Read the key again at the next commit (tests: one test's relay must not leak)."""
        self.until = 0.0  # monotonic: until when a relay keeps looking, as last read
        self.read_at = -RELAY_POLLING_READ_SECONDS

    def covers_now(self) -> bool:
        now = time.monotonic()
        if now - self.read_at >= RELAY_POLLING_READ_SECONDS:
            self.read_at, self.until = now, self._read(now)
        return now < self.until - RELAY_POLLING_MARGIN_SECONDS

    def _read(self, now: float) -> float:
        """When the key expires, on this process's monotonic clock (0: no relay polling, or
        Redis unavailable: then wake it, as without the key). Measured from before the read, so
        never later than Redis's expiry."""
        if not self.backoff.usable():
            return 0.0
        try:
            left_ms = alertflow_redis.client().pttl(RELAY_POLLING_KEY)
        except RedisError:
            self.backoff.failed("reading the relay's polling key")
            return 0.0
        return now + left_ms / 1000 if left_ms > 0 else 0.0

    @staticmethod
    def announce() -> float:
        """The relay's side: keep looking for RELAY_POLLING_SECONDS from now (monotonic: until
        when), measured after Redis set the key, so never before it expires. Raises RedisError."""
        alertflow_redis.client().set(RELAY_POLLING_KEY, "1", px=int(RELAY_POLLING_SECONDS * 1000))
        return time.monotonic() + RELAY_POLLING_SECONDS


relay_polling = RelayPolling()


def _wake_relay_after_commit() -> None:
    """Notify the relay once the caller's transaction committed (once per transaction; at
    once outside a transaction: the rows just written are committed already)."""
    if connection.vendor != "postgresql":
        return  # no LISTEN/NOTIFY (SQLite): the relay polls
    if any(callback is _wake_relay for _, callback, _ in connection.run_on_commit):
        return
    transaction.on_commit(_wake_relay, robust=True)


def _wake_relay() -> None:
    if connection.in_atomic_block:
        return  # still inside a transaction (a test running on-commit callbacks early): its BEGIN/COMMIT must not end it
    if relay_polling.covers_now():
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(WAKE_RELAY)
    except DatabaseError as exc:
        logger.warning("Could not wake the relay (its poll finds the rows within a second): %s", exc)


# --- The relay ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Relayed:
    rows: int  # rows published (and deleted)
    # The busy lists whose single sends wait in the outbox for them to get shorter (none: empty).
    held: frozenset[tuple[str, int]] = frozenset()
    # When the longest-held of those singles reaches ALERTFLOW_RELAY_HOLD_MAX_SECONDS (Unix
    # time; None when none is held): it goes out then, whatever the list's length.
    held_until: float | None = None


def relay_once(limit: int = RELAY_ROWS, hold_back: bool = True) -> Relayed:
    """Publish up to `limit` committed outbox rows, oldest first, and delete them. The rows are
    deleted in the transaction that took them, and it commits only after the broker took every
    task: a relay killed or a broker failing half-way leaves the rows for the next try (tasks it
    did publish go out twice, which the claim makes harmless). Rows another relay holds are
    skipped, so several relays never publish one row twice. With `hold_back`, single sends whose
    list already holds QUEUE_AHEAD tasks are left for a later round, unless one of them was held
    ALERTFLOW_RELAY_HOLD_MAX_SECONDS already. Raises if the broker cannot be reached or does not
    answer within BROKER_TIMEOUT_SECONDS."""
    busy, held_until = _held_within_cap(busy_single_lists()) if hold_back else ([], None)
    with transaction.atomic():
        rows = _take(limit, busy)
        if rows:
            _publish(_tasks_for(rows))
    if held_until is None:
        return Relayed(len(rows))
    return Relayed(len(rows), frozenset(busy), held_until)


def _held_within_cap(busy: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], float | None]:
    """The busy lists whose single sends may wait on, and when the longest-held of those singles
    reaches the cap (Unix time on this host's clock; None when no single waits in them), from
    one query of how long each list's oldest single has waited. A list whose oldest single has waited the cap is not held any more:
    all of its singles go out together, as when the list gets shorter (let out one by one as
    each reached the cap, they would go out a task each). A single that comes in a list during
    the round is not counted here: its commit's notification wakes the relay."""
    if not busy:
        return busy, None
    cap = settings.ALERTFLOW_RELAY_HOLD_MAX_SECONDS
    # How long, on the database's clock alone (`created` is its now() too): the relay's host and
    # the writers' may each be off from it by more than the cap.
    waiting = (
        Outbox.objects.filter(_single_sends_in(busy))
        .values_list("queue", "step")
        .annotate(waited=Now() - Min("created"))
    )
    waited = {(queue, step): age.total_seconds() for queue, step, age in waiting.order_by()}
    held = [key for key in busy if key not in waited or waited[key] < cap]
    longest = max((waited[key] for key in held if key in waited), default=None)
    return held, (None if longest is None else time.time() + cap - longest)


def relay_all() -> int:
    """Publish everything in the outbox now, none held back (tests, benchmarks); return how
    many rows were relayed."""
    relayed = 0
    while taken := relay_once(hold_back=False).rows:
        relayed += taken
    return relayed


class RelayBroker:
    """The relay's own connection to the broker's Redis, built by kombu from the Celery app's
    broker settings (URL, transport options), with BROKER_TIMEOUT_SECONDS on every command and
    no connection retries of its own (the relay backs off). Its redis-py client drops a broken
    connection and connects again on the next command."""

    _lock = threading.Lock()
    _client = None

    @classmethod
    def client(cls):
        with cls._lock:
            if cls._client is None:
                options = {"socket_timeout": BROKER_TIMEOUT_SECONDS, "max_retries": 0}
                connection = current_app.connection_for_write(transport_options=options)
                cls._client = connection.default_channel.client
            return cls._client

    @classmethod
    def forget(cls) -> None:
        """Connect anew on the next call (tests pointing the app at another broker)."""
        with cls._lock:
            cls._client = None


def busy_single_lists(among: Iterable[tuple[str, int]] | None = None) -> list[tuple[str, int]]:
    """The (queue, step) lists of single sends (or of `among`) in which QUEUE_AHEAD tasks or
    more wait."""
    if among is None:
        among = [(queue, step) for queue in dict.fromkeys(CHANNEL_QUEUES.values()) for step in PRIORITY_LEVELS.values()]
    keys = list(among)
    pipe = RelayBroker.client().pipeline(transaction=False)
    for queue, step in keys:
        pipe.llen(_list_name(queue, step))
    lengths = pipe.execute()
    return [key for key, length in zip(keys, lengths, strict=True) if length >= QUEUE_AHEAD]


def _single_sends_in(lists: list[tuple[str, int]]) -> Q:
    lists_q = Q(pk__in=[])
    for queue, step in lists:
        lists_q |= Q(queue=queue, step=step)
    return Q(task=SEND_MESSAGE_TASK) & lists_q


def _take(limit: int, busy: list[tuple[str, int]]) -> list[Outbox]:
    """Delete and return the oldest rows but the single sends of `busy` lists, locking them for
    this transaction: one round trip (rows another relay holds are skipped on PostgreSQL; SQLite
    has one writer at a time)."""
    table = Outbox._meta.db_table
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    columns = ["id", "task", "queue", "step", "args", "queued_at", "request_id"]
    held, params = "", []
    if busy:
        held = " WHERE NOT (task = %s AND (" + " OR ".join(["(queue = %s AND step = %s)"] * len(busy)) + "))"
        params = [SEND_MESSAGE_TASK, *(value for key in busy for value in key)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}{held} ORDER BY id LIMIT %s{skip_locked}) "  # noqa: S608 (our own table name; values are parameters)
            f"RETURNING {', '.join(columns)}",
            [*params, limit],
        )
        found = cursor.fetchall()
    rows = []
    for values in sorted(found):
        row = Outbox(**dict(zip(columns, values, strict=True)))
        if isinstance(row.args, str):  # the raw cursor hands JSON back as text
            row.args = json.loads(row.args)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Task:
    """One task to publish: what a Celery `send_task` takes."""

    name: str
    args: list
    queue: str
    step: int
    queued_at: float
    request_ids: tuple[str, ...]

    def headers(self) -> dict:
        headers = {QUEUED_HEADER: self.queued_at}
        if self.request_ids:
            # Singles of several requests share a task: each request's id still finds its lines.
            headers[REQUEST_ID_HEADER] = ",".join(self.request_ids)
        return headers


def _request_ids(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(rid for rid in dict.fromkeys(ids) if rid)


def _tasks_for(rows: list[Outbox]) -> list[Task]:
    """The tasks to publish for these rows, in row order: the sends of one (task, queue, step)
    merged across rows into tasks of up to SINGLES_PER_TASK single sends or BATCH_SIZE batched
    ones; a fan-out step as it is."""
    tasks = []
    sends = defaultdict(list)  # (task, queue, step) -> [(message id, queued at, request id)]
    for row in rows:
        if row.task in (SEND_MESSAGE_TASK, SEND_BATCH_TASK):
            sends[(row.task, row.queue, row.step)].extend((i, row.queued_at, row.request_id) for i in row.args)
        else:
            tasks.append(Task(row.task, row.args, row.queue, row.step, row.queued_at, _request_ids([row.request_id])))
    for (name, queue, step), entries in sends.items():
        size = SINGLES_PER_TASK if name == SEND_MESSAGE_TASK else BATCH_SIZE
        for start in range(0, len(entries), size):
            chunk = entries[start : start + size]
            ids = [entry[0] for entry in chunk]
            queued_at = min(entry[1] for entry in chunk)
            request_ids = _request_ids(entry[2] for entry in chunk)
            if name == SEND_MESSAGE_TASK and len(ids) == 1:
                tasks.append(Task(SEND_MESSAGE_TASK, ids, queue, step, queued_at, request_ids))
            else:
                # Several singles: one batch task, but at the single sends' own priority step.
                tasks.append(Task(SEND_BATCH_TASK, [ids], queue, step, queued_at, request_ids))
    return tasks


# Celery's task protocol 2 in kombu's envelope, as `send_task` writes it to a Redis list (the
# body's embed: no callbacks, errbacks, chain or chord).
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ARGSREPR_MAXSIZE = 1024  # celery.app.amqp.AMQP.argsrepr_maxsize


def _message(task: Task, origin: str, reply_to: str) -> str:
    """The message `send_task(task.name, args=task.args, queue=task.queue, priority=task.step,
    headers=task.headers())` puts on the broker in the relay's process, field for field
    (tests/pipeline/test_outbox.py compares them), built without its router, producer,
    declarations, retry policy and signals: they cost the relay half its CPU per round and decide
    nothing here (the queue and step are the row's; the only publish signal handler adds the
    process's request id, and the relay serves no request). No time limits, as there: that
    process does not import delivery's tasks, and the worker applies the task's own."""
    task_id = str(uuid4())
    body = json.dumps([task.args, {}, _EMBED]).encode()
    headers = {
        "lang": "py",
        "task": task.name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": saferepr(task.args, _ARGSREPR_MAXSIZE, maxlevels=current_app.conf.task_repr_maxlevels),
        "kwargsrepr": "{}",
        "origin": origin,
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        **task.headers(),
    }
    properties = {
        "correlation_id": task_id,
        "reply_to": reply_to,
        "delivery_mode": 2,  # persistent
        "delivery_info": {"exchange": "", "routing_key": task.queue},
        "priority": task.step,
        "body_encoding": "base64",
        "delivery_tag": str(uuid4()),
    }
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
    )


def _publish(tasks: list[Task]) -> None:
    """Every task in one pipelined round trip to Redis: LPUSH onto its (queue, step) list, where
    kombu's Redis transport puts it and the worker pops it. Raises if the broker cannot be
    reached or does not answer within BROKER_TIMEOUT_SECONDS (the tasks pushed before may then
    be published again: the claim makes that harmless)."""
    origin, reply_to = anon_nodename(), current_app.thread_oid
    pipe = RelayBroker.client().pipeline(transaction=False)
    for task in tasks:
        pipe.lpush(_list_name(task.queue, task.step), _message(task, origin, reply_to))
    pipe.execute()
