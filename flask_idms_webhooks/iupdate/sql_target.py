"""The SQL target, on SQLAlchemy: finds rows by the match columns and inserts, updates or
deletes them, inside the page's transaction: a set of rows at once (one look-up, then
``executemany``), or one row at a time, each in a SAVEPOINT. Engines and messages come
from ``sql``."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import groupby, repeat
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import NullType

from .base import (
    Insert,
    Record,
    RowWriteError,
    TargetUnavailable,
    TargetUnreachable,
    Update,
    Write,
)
from .sql import SQLITE_WRITE, plain, reason, unreachable, where
from .sql_lookup import ROW_LABEL, array_insert, array_update, wanted_table


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
    #: One connection, one statement at a time.
    max_concurrency = 1

    def __init__(self, engine: sa.Engine, table: str) -> None:
        self.engine = engine
        self.table_name = table
        self._writer = engine.execution_options(**{SQLITE_WRITE: True})
        self._sqlite = engine.dialect.name == "sqlite"
        self._table: sa.Table | None = None
        self._connection: sa.Connection | None = None
        self._in_row = False
        #: A given name -> its column's key and whether it is a text column (None: a type
        #: SQLAlchemy does not know), found once per name.
        self._columns: dict[str, tuple[str, bool | None]] = {}

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
                    f"the target table {self.table_name!r} does not exist in {where(self.engine)}"
                ) from None
            except sa_exc.SQLAlchemyError as error:
                raise (TargetUnreachable if unreachable(error) else TargetUnavailable)(
                    f"cannot reach the target table {self.table_name!r} in"
                    f" {where(self.engine)}: {reason(error)}"
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
            raise (TargetUnreachable if unreachable(error) else TargetUnavailable)(
                f"cannot write to the target table {table.name!r} in {where(self.engine)}:"
                f" {reason(error)}"
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
            failure = TargetUnreachable if unreachable(error) else TargetUnavailable
            raise failure(f"{where(self.engine)}: {reason(error)}") from None

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

    def find_many(self, criteria: Sequence[Mapping[str, Any]]) -> list[list[Record] | None]:
        """The records of each of ``criteria``, in one SELECT per ``SET_ROWS`` of them:
        the table joined to the wanted values (``sql_lookup``), so the database compares
        them as it does in :meth:`find`. A criteria with a blank value is left to
        :meth:`find` (None)."""
        table = self.table
        answers: list[list[Record] | None] = [None] * len(criteria)
        chosen = [
            (index, self._plain(wanted))
            for index, wanted in enumerate(criteria)
            if all(value is not None for value in wanted.values())
        ]
        columns = [sa.type_coerce(column, NullType()).label(column.key) for column in table.c]
        names = [column.key for column in table.c]
        for start in range(0, len(chosen), SET_ROWS):
            part = chosen[start : start + SET_ROWS]
            rows = [values for _, values in part]
            wanted, params = wanted_table(table, self.engine.dialect, rows, self._wanted_value)
            joined = sa.and_(*(table.c[key] == wanted.c[key] for key in rows[0]))
            statement = (
                sa.select(wanted.c[ROW_LABEL], *columns)
                .join_from(wanted, table, joined)
                .order_by(wanted.c[ROW_LABEL], *table.primary_key.columns)
            )
            found: list[list[Record]] = [[] for _ in part]
            given = (value for values in rows for value in values.values())
            with self._statement(given) as connection:
                for position, *record in connection.execute(statement, params):
                    found[position].append(dict(zip(names, record, strict=True)))
            for (index, _), records in zip(part, found, strict=True):
                answers[index] = records
        return answers

    def _wanted_value(self, key: str, value: Any) -> sa.ColumnElement[Any]:
        """One wanted value of a UNION ALL look-up, typed as :meth:`find` types it."""
        if self._sqlite and isinstance(value, str):
            return sa.type_coerce(value, sa.String())  # a SQLite string, as given
        column = self.table.c[key]
        typed = sa.literal(value, column.type)
        if self._sqlite:
            return typed
        # In a SELECT list PostgreSQL types an untyped value as text: cast it to what the
        # column compares as (its type without length or precision).
        try:
            if column.type.python_type is str:
                return typed
        except NotImplementedError:
            return typed
        if isinstance(column.type, sa.Numeric) and not isinstance(column.type, sa.Float):
            return sa.cast(typed, sa.Numeric())
        return sa.cast(typed, column.type)

    def write_many(self, writes: Sequence[Write]) -> bool:
        """Every write with ``executemany``: inserts, then updates, then deletes, by
        primary key. False (one by one, please) for a table without a primary key or a
        driver that cannot count what an ``executemany`` changed."""
        table = self.table
        keys = [column.key for column in table.primary_key.columns]
        inserts, changes, deletes = [], [], []
        for write in writes:
            if isinstance(write, Insert):
                inserts.append(self._plain(write.values))
            elif isinstance(write, Update):
                if write.values:
                    changes.append((self._identity_values(write.record, keys), write.values))
            else:
                deletes.append(self._identity_values(write.record, keys))
        if (changes or deletes) and (
            not keys or not self.engine.dialect.supports_sane_multi_rowcount
        ):
            return False
        if any(not values for values in inserts):
            return False
        updates = [(identity, self._plain(values)) for identity, values in changes]
        for shape, grouped in groupby(inserts, self._shape):
            rows = list(grouped)
            adding_all = array_insert(table, self.engine.dialect, rows)
            if adding_all is not None:
                self._execute_many(adding_all[0], adding_all[1], None)
                continue
            adding = sa.insert(table).values(self._binds(shape, "v_"))
            self._execute_many(adding, [_prefixed(row, "v_") for row in rows], None)
        for (matched_by, changed), paired in groupby(updates, self._shapes):
            pairs = list(paired)
            updating_all = array_update(table, self.engine.dialect, pairs)
            if updating_all is not None:
                self._execute_many(updating_all[0], updating_all[1], "update", len(pairs))
                continue
            statement = (
                sa.update(table)
                .where(*self._bound_equal(matched_by))
                .values(self._binds(changed, "v_"))
            )
            params = [_prefixed(key, "k_") | _prefixed(row, "v_") for key, row in pairs]
            self._execute_many(statement, params, "update")
        for shape, identities in groupby(deletes, self._shape):
            removing = sa.delete(table).where(*self._bound_equal(shape))
            self._execute_many(removing, [_prefixed(key, "k_") for key in identities], "delete")
        return True

    def _shape(self, values: Mapping[str, Any]) -> tuple[tuple[str, bool], ...]:
        """Which values of a write go in as given text (SQLite strings) or typed as their
        column: writes of one shape are one ``executemany``."""
        if not self._sqlite:
            return tuple(zip(values, repeat(False)))
        return tuple((key, isinstance(value, str)) for key, value in values.items())

    def _shapes(self, pair: tuple[dict[str, Any], dict[str, Any]]) -> tuple[Any, Any]:
        return self._shape(pair[0]), self._shape(pair[1])

    def _binds(self, shape: Sequence[tuple[str, bool]], prefix: str) -> dict[str, Any]:
        return {key: self._bind(key, text, prefix) for key, text in shape}

    def _bind(self, key: str, text: bool, prefix: str) -> sa.BindParameter[Any]:
        return sa.bindparam(prefix + key, type_=sa.String() if text else self.table.c[key].type)

    def _bound_equal(self, shape: Sequence[tuple[str, bool]]) -> list[sa.ColumnElement[bool]]:
        return [self.table.c[key] == self._bind(key, text, "k_") for key, text in shape]

    def _identity_values(self, record: Record, keys: list[str]) -> dict[str, Any]:
        absent = [key for key in keys if key not in record]
        if absent:
            raise RowWriteError(
                f"the record carries no value for the primary key column {absent[0]!r}"
            )
        return self._plain({key: record[key] for key in keys})

    def _execute_many(
        self,
        statement: sa.Executable,
        params: list[dict[str, Any]] | dict[str, Any],
        counted: str | None,
        rows: int | None = None,
    ) -> None:
        """``statement`` once per params (or once, with arrays of ``rows`` rows); each row
        ``counted`` must change one record."""
        many = params if isinstance(params, list) else [params]
        given = (  # read only for an error message
            one
            for row in many
            for value in row.values()
            for one in (value if isinstance(value, list) else [value])
        )
        with self._statement(given) as connection:
            changed = connection.execute(statement, params).rowcount
        if counted is not None and changed != (len(many) if rows is None else rows):
            raise RowWriteError(
                f"a record to {counted} is no longer in the table {self.table_name!r}"
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
                    f"lost the connection to {where(self.engine)}: {reason(error)}"
                ) from None
            raise RowWriteError(f"table {self.table_name!r}: {reason(error, values)}") from None
        except sa_exc.StatementError as error:  # a value its column's type refuses
            raise RowWriteError(f"table {self.table_name!r}: {reason(error, values)}") from None

    def _values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` keyed by column key, each as its column takes it in a statement: on
        SQLite a string goes in as given, where SQLAlchemy's types for SQLite refuse
        strings in date columns and parse them as floats in columns of unknown type."""
        return {
            key: sa.type_coerce(value, sa.String())
            if self._sqlite and isinstance(value, str)
            else value
            for key, value in self._plain(values).items()
        }

    def _plain(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` keyed by column key, each a value its column takes: date, time,
        Decimal and UUID values go into text columns as their strings."""
        converted: dict[str, Any] = {}
        for key, value in values.items():
            column_key, text_column = self._columns.get(key) or self._column(key)
            converted[column_key] = (
                plain(value) if text_column and not isinstance(value, str) else value
            )
        return converted

    def _column(self, key: str) -> tuple[str, bool | None]:
        """The key of the column named ``key`` (exactly, else ignoring case) and whether
        it holds text (None for a type SQLAlchemy does not know: values go in as given)."""
        columns = self.table.columns
        column = columns.get(key)
        if column is None:
            column = next((c for c in columns if c.key.lower() == key.lower()), None)
        if column is None:
            known = ", ".join(column.key for column in columns)
            raise RowWriteError(
                f"the table {self.table_name!r} has no column {key!r} (its columns: {known})"
            )
        try:
            text_column: bool | None = column.type.python_type is str
        except NotImplementedError:
            text_column = None
        self._columns[key] = column.key, text_column
        return self._columns[key]

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
        keys = [column.key for column in self.table.primary_key.columns]
        return self._equal(self._values(self._identity_values(record, keys) if keys else record))


#: The most rows one set-based look-up joins; the column labelling their numbers.
SET_ROWS = 500


def _prefixed(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {prefix + key: value for key, value in values.items()}
