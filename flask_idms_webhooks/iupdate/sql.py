"""The SQL source and target, on SQLAlchemy.

Source binds. Each filter row's key, with ``.`` replaced by ``_``, names the bind
parameter in the task's query: ``LastName`` -> ``:LastName``, ``CsContact1.ImisId`` ->
``:CsContact1_ImisId``. A ``Between`` filter binds ``:<name>_from`` and ``:<name>_to``;
an ``In`` filter binds ``:<name>`` as an expanding list (write ``id IN :Ids``, without
parentheses). A blank value binds NULL, so a query handles an optional filter itself::

    SELECT id, last_name FROM member
    WHERE (:LastName IS NULL OR last_name LIKE :LastName || '%')
      AND (:Paid_from IS NULL OR paid_through BETWEEN :Paid_from AND :Paid_to)

A blank ``In`` binds an empty list (``IN`` matches nothing, ``NOT IN`` everything).
Values travel only as bound parameters, as the engine resolved them (strings, numbers,
booleans; ISO 8601 strings for dates). On PostgreSQL each bind is cast to its filter
row's type (``Decimal`` -> ``NUMERIC``, ``DateTime`` -> ``TIMESTAMP WITH TIME ZONE``…),
which psycopg needs to type ``:x IS NULL``; SQLite compares the values as given.

Source rows are ``column -> value`` dicts holding what the driver returns: on SQLite
``str``/``int``/``float``/``bytes``/``None``; on PostgreSQL also ``Decimal``, ``datetime``,
``date``, ``time``, ``UUID``, ``bool``, JSON values and lists.

Processes. Create engines with :func:`engine_for`: one per URL per process. A forked
child (RQ's work-horse) drops the engines it inherited with ``dispose(close=False)``,
so it never uses its parent's connections.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import NullType, UserDefinedType

from ..tasks import DataType, Operator
from .base import FilterValue, Page, Record, RowWriteError, SourceReadError, TargetUnavailable

#: Seconds a SQLite connection waits for another's write lock before failing.
SQLITE_BUSY_TIMEOUT = 30
#: Execution option that makes :func:`engine_for`'s SQLite engines ``BEGIN IMMEDIATE``.
_SQLITE_WRITE = "idms_webhooks_write"

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> sa.Engine:
    """This process's engine for ``url``, created on first use.

    Connections are checked before use (``pool_pre_ping``). SQLite databases use WAL (a
    source can stream while a target writes the same file), wait up to
    ``SQLITE_BUSY_TIMEOUT`` for locks, and get real transactions: SQLAlchemy emits
    ``BEGIN`` itself, so SAVEPOINTs nest inside the batch, and the target's transactions
    take the write lock up front (``BEGIN IMMEDIATE``) instead of failing when two
    workers upgrade read locks at once.
    """
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every engine :func:`engine_for` made in this process (tests, shutdown)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _after_fork_in_child() -> None:
    global _engines_lock
    _engines_lock = threading.Lock()  # the parent may have held it while forking
    for engine in _engines.values():
        # close=False: the parent still owns those connections' sockets.
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _create_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    engine = sa.create_engine(
        parsed, pool_pre_ping=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT}
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 leaves BEGIN to SQLAlchemy
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get(_SQLITE_WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _where(engine: sa.Engine) -> str:
    """The database, for messages: never the password or the URL's query."""
    url = engine.url
    place = ""
    if url.host:
        place = f" at {url.host}" + (f":{url.port}" if url.port else "")
    return f"{url.get_backend_name()} database {url.database or ':memory:'!r}{place}"


def _reason(error: BaseException, values: Iterable[Any] = ()) -> str:
    """The database's own first line, without SQLAlchemy's SQL and parameter dump, and
    with any quoted value of ``values`` blanked out (PostgreSQL quotes bad input)."""
    if isinstance(error, sa_exc.StatementError) and error.orig is not None:
        error = error.orig
    text = str(error.args[0]).strip() if error.args else ""
    line = text.splitlines()[0] if text else "no detail"
    for value in values:
        if value is not None and str(value):
            for quote in "\"'":
                line = line.replace(f"{quote}{value}{quote}", f"{quote}***{quote}")
    return f"{type(error).__name__}: {line}"


class _Cast(UserDefinedType[Any]):
    """A bind parameter's SQL type, cast where the driver renders casts (PostgreSQL):
    psycopg sends strings and NULLs untyped, and PostgreSQL cannot type ``$1 IS NULL``."""

    cache_ok = True
    render_bind_cast = True

    def __init__(self, sql_type: str) -> None:
        self.sql_type = sql_type

    def get_col_spec(self, **kw: Any) -> str:
        return self.sql_type


_CASTS = {
    DataType.STRING: _Cast("VARCHAR"),
    DataType.BYTE: _Cast("SMALLINT"),
    DataType.INT32: _Cast("INTEGER"),
    DataType.INT64: _Cast("BIGINT"),
    DataType.DECIMAL: _Cast("NUMERIC"),
    DataType.DOUBLE: _Cast("DOUBLE PRECISION"),
    DataType.DATETIME: _Cast("TIMESTAMP WITH TIME ZONE"),
    DataType.BOOLEAN: _Cast("BOOLEAN"),
    DataType.GUID: _Cast("UUID"),
}


def bind_name(key: str) -> str:
    """The bind parameter a filter row's key fills: ``CsContact1.ImisId`` ->
    ``CsContact1_ImisId``."""
    return key.replace(".", "_")


def _plain(value: Any) -> Any:
    """A bind value any driver takes: Python objects become their JSON-safe strings."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value


class SqlSource:
    """Reads a SELECT page by page through a server-side cursor (memory stays flat)."""

    def __init__(
        self, engine: sa.Engine, query: str, page_size: int = 100, count_rows: bool = True
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.engine = engine
        self.query = query.strip().rstrip(";")
        self.page_size = page_size
        self.count_rows = count_rows
        self._used = set(sa.text(self.query).compile().params)

    def pages(self, filters: Sequence[FilterValue]) -> Iterator[Page]:
        """Pages of ``page_size`` rows (one empty page for an empty result); the first
        carries ``total`` (a ``COUNT(*)`` over the query) when ``count_rows``."""
        binds, types = self._binds(filters)
        statement = sa.text(self.query).bindparams(*types)
        # The task's own query, no caller input; the newline keeps a trailing -- comment
        # from eating the parenthesis.
        counting = f"SELECT COUNT(*) FROM ({self.query}\n) AS source_rows"  # noqa: S608
        count = sa.text(counting).bindparams(*types)
        try:
            with self.engine.connect() as connection:
                total = connection.execute(count, binds).scalar_one() if self.count_rows else None
                # A server-side cursor where the driver has one (psycopg); SQLite's cursor
                # steps through the rows as they are fetched anyway.
                streaming = connection.execution_options(stream_results=True)
                # Closed even when the caller stops early (the server-side cursor too).
                with streaming.execute(statement, binds).yield_per(self.page_size) as result:
                    columns = list(result.keys())
                    repeated = sorted({name for name in columns if columns.count(name) > 1})
                    if repeated:
                        raise SourceReadError(
                            f"the SQL source query returns the column {repeated[0]!r} more"
                            " than once: give each column its own name (AS ...)"
                        )
                    empty = True
                    for partition in result.partitions():
                        rows = [dict(zip(columns, row, strict=True)) for row in partition]
                        yield Page(rows, total)
                        empty, total = False, None
                    if empty:
                        yield Page([], total)
        except sa_exc.SQLAlchemyError as error:
            values = [
                item
                for value in binds.values()
                for item in (value if isinstance(value, list) else [value])
            ]
            raise SourceReadError(
                f"cannot read the SQL source ({_where(self.engine)}): {_reason(error, values)}"
            ) from None

    def _binds(
        self, filters: Sequence[FilterValue]
    ) -> tuple[dict[str, Any], list[sa.BindParameter[Any]]]:
        binds: dict[str, Any] = {}
        keys: dict[str, str] = {}
        types: list[sa.BindParameter[Any]] = []

        def bind(name: str, key: str, value: Any, row_type: DataType, expanding: bool) -> None:
            if name in keys:
                raise SourceReadError(
                    f"the filter keys {keys[name]!r} and {key!r} both bind :{name}"
                )
            keys[name] = key
            binds[name] = value
            if name in self._used:
                types.append(sa.bindparam(name, type_=_CASTS[row_type], expanding=expanding))

        for item in filters:
            name, row = bind_name(item.key), item.row
            if row.operator is Operator.BETWEEN:
                bounds = [None, None] if item.value is None else list(item.value)
                if len(bounds) != 2:
                    raise SourceReadError(f"filter {item.key!r}: Between takes two values")
                bind(f"{name}_from", item.key, _plain(bounds[0]), row.type, False)
                bind(f"{name}_to", item.key, _plain(bounds[1]), row.type, False)
            elif row.operator is Operator.IN:
                items = item.value if isinstance(item.value, list | tuple) else [item.value]
                listed = [_plain(value) for value in items if value is not None]
                bind(name, item.key, listed, row.type, True)
            else:
                bind(name, item.key, _plain(item.value), row.type, False)
        missing = sorted(self._used - binds.keys())
        if missing:
            given = ", ".join(f":{name}" for name in sorted(binds)) or "none"
            raise SourceReadError(
                f"the SQL source query uses :{missing[0]}, which no filter row binds"
                f" (the filter rows bind {given})"
            )
        return binds, types


class SqlTarget:
    """Finds, inserts, updates and deletes rows of one table.

    ``table`` may be schema-qualified (``"crm.contact"``); it is reflected once, on
    first use. Column names in values and criteria match exactly, else ignoring case.
    Records are whole rows, values as the driver returns them (as source rows), in
    primary key order; update and delete find them again by primary key, or, in a table
    without one, by every column (so they change each identical row).

    Inside :meth:`batch` every call runs in its own SAVEPOINT of the batch's
    transaction: a failing row raises ``RowWriteError`` and the batch goes on. Outside,
    every call is its own transaction. One target serves one job's thread.
    """

    #: A page's writes are one transaction: undone together if the page does not complete.
    transactional = True

    def __init__(self, engine: sa.Engine, table: str) -> None:
        self.engine = engine
        self.table_name = table
        self._writer = engine.execution_options(**{_SQLITE_WRITE: True})
        self._sqlite = engine.dialect.name == "sqlite"
        self._table: sa.Table | None = None
        self._connection: sa.Connection | None = None
        self._in_row = False

    @property
    def table(self) -> sa.Table:
        """The reflected table; ``TargetUnavailable`` when it does not exist."""
        if self._table is None:
            schema, _, name = self.table_name.rpartition(".")
            try:
                with warnings.catch_warnings():
                    # A column type SQLAlchemy does not know is written as given.
                    warnings.simplefilter("ignore", sa_exc.SAWarning)
                    self._table = sa.Table(
                        name, sa.MetaData(), schema=schema or None, autoload_with=self.engine
                    )
            except sa_exc.NoSuchTableError:
                raise TargetUnavailable(
                    f"the target table {self.table_name!r} does not exist in {_where(self.engine)}"
                ) from None
            except sa_exc.SQLAlchemyError as error:
                raise TargetUnavailable(
                    f"cannot reach the target table {self.table_name!r} in"
                    f" {_where(self.engine)}: {_reason(error)}"
                ) from None
        return self._table

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction around a page of writes, committed when the block ends and
        rolled back if it raises. Within a batch, a batch is the same one."""
        if self._connection is not None:
            yield
            return
        table = self.table  # an unknown table fails here, before any transaction
        try:
            with self._writer.begin() as connection:
                self._connection = connection
                try:
                    yield
                finally:
                    self._connection = None
        except sa_exc.SQLAlchemyError as error:
            raise TargetUnavailable(
                f"cannot write to the target table {table.name!r} in {_where(self.engine)}:"
                f" {_reason(error)}"
            ) from None

    @contextmanager
    def row(self) -> Iterator[None]:
        """Around every write of one source row: in a batch, one SAVEPOINT, so a row that
        fails halfway (its second match refused) leaves nothing of itself behind."""
        if self._connection is None:
            with self.batch(), self.row():
                yield
            return
        if self._in_row:
            yield
            return
        try:
            with self._connection.begin_nested():
                self._in_row = True
                try:
                    yield
                finally:
                    self._in_row = False
        except sa_exc.DBAPIError as error:  # the savepoint itself failed
            raise TargetUnavailable(f"{_where(self.engine)}: {_reason(error)}") from None

    def find(self, criteria: Mapping[str, Any]) -> list[Record]:
        table = self.table
        # Untyped result columns: the driver's values, never a type's parse of them (a
        # SQLite column holds whatever was written, whatever its declared type).
        columns = [sa.type_coerce(column, NullType()).label(column.key) for column in table.c]
        statement = (
            sa.select(*columns)
            .where(*self._equal(self._values(criteria)))
            .order_by(*table.primary_key.columns)
        )
        with self._statement(criteria.values()) as connection:
            return [dict(row) for row in connection.execute(statement).mappings()]

    def insert(self, values: Mapping[str, Any]) -> None:
        statement = sa.insert(self.table).values(self._values(values))
        with self._statement(values.values()) as connection:
            connection.execute(statement)

    def update(self, record: Record, values: Mapping[str, Any]) -> None:
        columns = self._values(values)
        if not columns:
            return
        statement = sa.update(self.table).where(*self._identity(record)).values(columns)
        with self._statement([*values.values(), *record.values()]) as connection:
            if connection.execute(statement).rowcount == 0:
                raise RowWriteError(
                    f"the record to update is no longer in the table {self.table_name!r}"
                )

    def delete(self, record: Record) -> None:
        statement = sa.delete(self.table).where(*self._identity(record))
        with self._statement(record.values()) as connection:
            if connection.execute(statement).rowcount == 0:
                raise RowWriteError(
                    f"the record to delete is no longer in the table {self.table_name!r}"
                )

    @contextmanager
    def _statement(self, values: Iterable[Any]) -> Iterator[sa.Connection]:
        """The connection for one statement: in a batch, inside a SAVEPOINT (PostgreSQL
        aborts the whole transaction on an error otherwise); else a batch of its own.
        ``values`` are blanked out of error messages."""
        if self._connection is not None and self._in_row:
            with self._row_errors(values):  # the row's SAVEPOINT rolls it back
                yield self._connection
            return
        if self._connection is not None:
            with self._row_errors(values), self._connection.begin_nested():
                yield self._connection
            return
        with self.batch(), self._row_errors(values):
            assert self._connection is not None
            yield self._connection

    @contextmanager
    def _row_errors(self, values: Iterable[Any]) -> Iterator[None]:
        try:
            yield
        except sa_exc.DBAPIError as error:
            if error.connection_invalidated:
                raise TargetUnavailable(
                    f"lost the connection to {_where(self.engine)}: {_reason(error)}"
                ) from None
            raise RowWriteError(f"table {self.table_name!r}: {_reason(error, values)}") from None
        except sa_exc.StatementError as error:  # a value its column's type refuses
            raise RowWriteError(f"table {self.table_name!r}: {_reason(error, values)}") from None

    def _values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` keyed by column key, each as its column takes it."""
        columns = self.table.columns
        by_lower = {column.key.lower(): column for column in columns}
        converted: dict[str, Any] = {}
        for key, value in values.items():
            column = columns.get(key)
            if column is None:
                column = by_lower.get(key.lower())
            if column is None:
                known = ", ".join(column.key for column in columns)
                raise RowWriteError(
                    f"the table {self.table_name!r} has no column {key!r} (its columns: {known})"
                )
            converted[column.key] = self._for_column(column, value)
        return converted

    def _for_column(self, column: sa.Column[Any], value: Any) -> Any:
        """``value`` as its column takes it. On SQLite a string goes in as given: SQLite
        applies its own type affinity, where SQLAlchemy's types for SQLite refuse strings
        in date columns and parse them as floats in columns of unknown type. Date, time,
        Decimal and UUID values go into text columns as their strings."""
        if isinstance(value, str):
            return sa.type_coerce(value, sa.String()) if self._sqlite else value
        try:
            text_column = column.type.python_type is str
        except NotImplementedError:  # a type SQLAlchemy does not know: as given
            return value
        return _plain(value) if text_column else value

    def _equal(self, values: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        for key, value in values.items():
            column = self.table.c[key]
            if value is None:
                conditions.append(column.is_(None))
            elif isinstance(value, sa.ColumnElement):
                conditions.append(column == value)
            else:
                # Typed as the column: SQLAlchemy would type "id = '5'" as a string.
                conditions.append(column == sa.literal(value, column.type))
        return conditions

    def _identity(self, record: Record) -> list[sa.ColumnElement[bool]]:
        key_columns = list(self.table.primary_key.columns)
        if not key_columns:
            return self._equal(self._values(record))
        absent = [column.key for column in key_columns if column.key not in record]
        if absent:
            raise RowWriteError(
                f"the record carries no value for the primary key column {absent[0]!r}"
            )
        return self._equal(self._values({column.key: record[column.key] for column in key_columns}))
