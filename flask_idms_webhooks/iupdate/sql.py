"""The SQL source on SQLAlchemy, and the engines, binds and messages it shares with the
SQL target (``sql_target``).

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

Processes. Engines come from :func:`create_engine`; an app keeps one per profile in its
``Connections``, and a forked child (RQ's work-horse) drops the ones it inherited with
``dispose(close=False)``, so it never uses its parent's connections.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import UserDefinedType

from ..model.tasks import DataType, Operator
from .base import FilterValue, Page, SourceReadError, SourceUnreachable

#: Seconds a SQLite connection waits for another's write lock before failing.
SQLITE_BUSY_TIMEOUT = 30
#: Execution option that makes :func:`create_engine`'s SQLite engines ``BEGIN IMMEDIATE``.
SQLITE_WRITE = "idms_webhooks_write"


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``.

    Connections are checked before use (``pool_pre_ping``). SQLite databases use WAL (a
    source can stream while a target writes the same file), wait up to
    ``SQLITE_BUSY_TIMEOUT`` for locks, and get real transactions: SQLAlchemy emits
    ``BEGIN`` itself, so SAVEPOINTs nest inside the batch, and the target's transactions
    take the write lock up front (``BEGIN IMMEDIATE``) instead of failing when two
    workers upgrade read locks at once.
    """
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
        write = connection.get_execution_options().get(SQLITE_WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def where(engine: sa.Engine) -> str:
    """The database, for messages: never the password or the URL's query."""
    url = engine.url
    place = ""
    if url.host:
        place = f" at {url.host}" + (f":{url.port}" if url.port else "")
    return f"{url.get_backend_name()} database {url.database or ':memory:'!r}{place}"


def unreachable(error: BaseException) -> bool:
    """Whether a database error means the database could not be reached (a connection
    refused, dropped or timed out), not a statement it refused."""
    if isinstance(error, sa_exc.TimeoutError):  # the pool's: no connection in time
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError) and any(
        word in str(error.orig).lower() for word in ("connect", "timeout", "timed out")
    )


def reason(error: BaseException, values: Iterable[Any] = ()) -> str:
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


def plain(value: Any) -> Any:
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
            failure = SourceUnreachable if unreachable(error) else SourceReadError
            raise failure(
                f"cannot read the SQL source ({where(self.engine)}): {reason(error, values)}"
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
                bind(f"{name}_from", item.key, plain(bounds[0]), row.type, False)
                bind(f"{name}_to", item.key, plain(bounds[1]), row.type, False)
            elif row.operator is Operator.IN:
                items = item.value if isinstance(item.value, list | tuple) else [item.value]
                listed = [plain(value) for value in items if value is not None]
                bind(name, item.key, listed, row.type, True)
            else:
                bind(name, item.key, plain(item.value), row.type, False)
        missing = sorted(self._used - binds.keys())
        if missing:
            given = ", ".join(f":{name}" for name in sorted(binds)) or "none"
            raise SourceReadError(
                f"the SQL source query uses :{missing[0]}, which no filter row binds"
                f" (the filter rows bind {given})"
            )
        return binds, types
