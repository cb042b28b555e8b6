"""A hot query compiled to SQL once, then run again with other ids (or other field values).

Django compiles a queryset to SQL on every evaluation: for the worker's load of a batch
(`Message` by primary key with five `select_related` joins) that compilation was 19% of the
worker's CPU on single sends (py-spy, bench.e2e), more than the query's round trip. `CompiledLoad`
compiles `build(ids)` once per number of ids and database connection, and afterwards only runs
its SQL with the new ids, turning the rows into model instances the way Django's own
`ModelIterable` does (converters, `from_db`, the related populators of `select_related`).
`CompiledLookup` does the same for a lookup by field values (the accept path's recipient by
external id, whose compilation was two thirds of its CPU), and `CompiledInsert` for the few
INSERTs of a request (the accept's notification, messages and outbox rows).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections, router
from django.db.models import QuerySet
from django.db.models.expressions import DatabaseDefault
from django.db.models.query import get_related_populators

# Compiled statements kept per connection (one per number of ids): a bound on memory.
MAX_SHAPES = 64


@dataclass(frozen=True)
class _Compiled:
    sql: str
    compiler: object
    converters: dict
    init_list: list[str]
    start: int
    end: int
    populators: list


class CompiledLoad:
    """`load(ids)` is `list(build(ids))`, without compiling `build(ids)` again for a number of
    ids it has seen. `build` must filter by `pk__in=ids` and add nothing else that takes
    parameters: a queryset whose SQL parameters are not exactly the ids is run as it is, every
    time (never a wrong cached statement)."""

    def __init__(self, model, build: Callable[[list], QuerySet]) -> None:
        self.model, self.build = model, build
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Set when `build` turned out to take other parameters: from then on, the plain ORM.
        self.uncacheable = False

    def __call__(self, ids: list) -> list:
        if not ids:
            return []
        connection = connections[router.db_for_read(self.model)]
        pk = self.model._meta.pk
        prepped = [pk.get_db_prep_value(pk.to_python(i), connection) for i in ids]
        return self._run(connection, len(ids), prepped, lambda: self.build(ids))

    def _run(self, connection, shape, prepped: list, build: Callable[[], QuerySet]) -> list:
        """Run the statement compiled for `shape` with `prepped` as its parameters, compiling
        `build()` the first time (and running it as it is when its parameters are not `prepped`)."""
        if self.uncacheable:
            return list(build())
        model = self.model
        shapes = self._compiled.setdefault(connection, {})
        compiled = shapes.get(shape)
        if compiled is None:
            queryset = build()
            compiled = self._compile(queryset, connection, prepped)
            if compiled is None:
                self.uncacheable = True
                return list(queryset)
            if len(shapes) >= MAX_SHAPES:
                shapes.clear()
            shapes[shape] = compiled
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, prepped)
            rows = cursor.fetchall()
        if compiled.converters:
            rows = compiled.compiler.apply_converters(rows, compiled.converters)
        objects = []
        for row in rows:
            obj = model.from_db(connection.alias, compiled.init_list, row[compiled.start : compiled.end])
            for populator in compiled.populators:
                populator.populate(row, obj)
            objects.append(obj)
        return objects

    @staticmethod
    def _compile(queryset: QuerySet, connection, prepped: list) -> _Compiled | None:
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        if list(params) != prepped or compiler.annotation_col_map or queryset._prefetch_related_lookups:
            return None
        select, klass_info = compiler.select, compiler.klass_info
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Compiled(
            sql=sql,
            compiler=compiler,
            converters=compiler.get_converters([column for column, _sql, _alias in select]),
            init_list=[column.target.attname for column, _sql, _alias in select[start:end]],
            start=start,
            end=end,
            populators=get_related_populators(klass_info, select, connection.alias),
        )


class CompiledLookup(CompiledLoad):
    """`lookup(**values)` is `list(build(**values))` for a queryset that filters on the model
    fields `values` names, each equal to its value, and takes no other parameter: compiled once
    per set of field names and connection. Parameters other than the values prepared by their
    fields, in the order of their names (the ORM's own order for `filter(**values)`), make it
    run as it is, every time."""

    def __call__(self, **values) -> list:
        connection = connections[router.db_for_read(self.model)]
        names = sorted(values)
        fields = [self.model._meta.get_field(name) for name in names]
        prepped = [field.get_db_prep_value(values[name], connection) for field, name in zip(fields, names, strict=True)]
        return self._run(connection, tuple(names), prepped, lambda: self.build(**values))


class CompiledInsert:
    """`insert(objs)` writes new rows as `Model.objects.bulk_create(objs)` does (no signals,
    nothing read back: a primary key the database makes stays None on the objects), with the
    `INSERT ... VALUES` built once per number of rows and connection instead of by Django's SQL
    compiler on every call. Each value is still the field's own: `pre_save(obj, add=True)` then
    `get_db_prep_save`, as the compiler does. For the few rows of a request or a worker's batch; a
    fan-out's hundreds go through `bulk_create`.

    Several rows on PostgreSQL are one `INSERT ... SELECT * FROM UNNEST(%s::type[], ...)`, a
    parameter per column, as `bulk_create` writes them there: one statement for every number of
    rows. As `VALUES (...), (...)` a batch of 20 attempt rows had 140 parameters, which psycopg
    parses the SQL of anew on every call (it caches statements of at most 50), and each number of
    rows was a statement of its own for psycopg's prepared statements and this class's cache."""

    def __init__(self, model) -> None:
        meta = model._meta
        if meta.parents or meta.proxy:
            raise ValueError(f"{model.__name__}: one table only (no inherited or proxy models)")
        self.model = model
        # The primary key is written unless the database makes it (an AutoField).
        self.fields = [f for f in meta.concrete_fields if not f.generated and not (f.primary_key and f.db_returning)]
        if any(hasattr(f, "get_placeholder") for f in self.fields):
            raise ValueError(f"{model.__name__}: a field with its own placeholder needs Django's compiler")
        self._db_defaults = [f for f in self.fields if f.has_db_default()]
        self._sql: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def statement(self, objs: list, connection=None) -> tuple[str, list]:
        """The INSERT of `objs` on `connection` (the model's database for writes by default) and
        its parameters (nothing run)."""
        if connection is None:
            connection = connections[router.db_for_write(self.model)]
        # A column left to its database default (`db_default`, not set on the objects) is left
        # out of the INSERT: the database writes its default, as Django's DEFAULT does.
        left = tuple(f.attname for f in self._db_defaults if isinstance(getattr(objs[0], f.attname), DatabaseDefault))
        if any(
            isinstance(getattr(obj, f.attname), DatabaseDefault) != (f.attname in left)
            for obj in objs
            for f in self._db_defaults
        ):
            raise ValueError(f"{self.model.__name__}: rows that set a db_default column and rows that do not")
        fields = [f for f in self.fields if f.attname not in left] if left else self.fields
        unnest = len(objs) > 1 and connection.vendor == "postgresql" and self._unnestable(fields, connection)
        shape = ("unnest" if unnest else len(objs), left)
        shapes = self._sql.setdefault(connection, {})
        sql = shapes.get(shape)
        if sql is None:
            quote = connection.ops.quote_name
            if unnest:
                # The types without their length (varchar, not varchar(100)), as Django's
                # compiler casts them: nothing is cut short before the column checks it.
                arrays = ", ".join(f"(%s)::{f.db_type(connection).split('(')[0]}[]" for f in fields)
                rows = f"SELECT * FROM UNNEST({arrays})"  # noqa: S608 (types from the model; values are parameters)
            else:
                row = "(" + ", ".join(["%s"] * len(fields)) + ")"
                rows = f"VALUES {', '.join([row] * len(objs))}"
            sql = (
                f"INSERT INTO {quote(self.model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) {rows}"
            )
            if len(shapes) >= MAX_SHAPES:
                shapes.clear()
            shapes[shape] = sql
        values = []
        for obj in objs:
            obj._prepare_related_fields_for_save(operation_name="bulk_create")
            row = []
            for field in fields:
                value = field.pre_save(obj, add=True)
                if hasattr(value, "resolve_expression"):
                    raise ValueError(f"{field}: an expression needs Django's compiler (use bulk_create)")
                row.append(field.get_db_prep_save(value, connection))
            values.append(row)
        if unnest:
            return sql, [list(column) for column in zip(*values, strict=True)]
        return sql, [value for row in values for value in row]

    @staticmethod
    def _unnestable(fields: list, connection) -> bool:
        """Whether every column's type makes a plain array, as Django's compiler decides it
        (an array or a geometry column does not)."""
        return all(
            (f.target_field if f.is_relation else f).get_internal_type() in connection.data_types for f in fields
        )

    def __call__(self, objs: list) -> None:
        if not objs:
            return
        connection = connections[router.db_for_write(self.model)]
        sql, params = self.statement(objs, connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        self.saved(objs, connection.alias)

    @staticmethod
    def saved(objs: list, alias: str) -> None:
        """Mark `objs` as rows of the database `alias`, as `bulk_create` does once it wrote them."""
        for obj in objs:
            obj._state.adding, obj._state.db = False, alias
