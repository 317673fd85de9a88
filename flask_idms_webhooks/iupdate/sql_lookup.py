"""A page's values as a table, so that a set of rows is one statement whatever its size.

Look-ups: the wanted match values as a derived table to join the target table to, so that
the database compares them as it does in a one-row look-up: PostgreSQL unnests one array
per match column (cast to the column's type, as it types a bound value), SQLite reads one
JSON array (``json_each``: values with no column affinity, as bound values have). Other
databases, and values these forms cannot carry, get a ``UNION ALL`` of one-row SELECTs
(slower to build and to plan). Each form has the match columns and ``ROW_LABEL``: the
position of the row in the list given.

Updates on PostgreSQL: ``UPDATE ... FROM unnest(...)``, one statement for a set of rows of
one shape (values of text columns assigned from text, so a value too long for its column
is an error, as in a one-row update, never cut).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import NullType

ROW_LABEL = "idms_wanted_row"
#: SQLite's JSON functions are built in from 3.38 (before, a compile-time option).
SQLITE_JSON = sqlite3.sqlite_version_info >= (3, 38)
#: Values whose text PostgreSQL parses back to the value (``str()`` of each).
TEXT_FORMS = (int, float, Decimal, date, datetime, time, UUID)

Rows = Sequence[Mapping[str, Any]]


def wanted_table(
    table: sa.Table,
    dialect: sa.Dialect,
    rows: Rows,
    typed: Callable[[str, Any], sa.ColumnElement[Any]],
) -> tuple[sa.Subquery, dict[str, Any]]:
    """The derived table of ``rows`` (values keyed by column key, as their columns take
    them; every row with the same keys) and its bind values. ``typed(key, value)`` types
    one value for the UNION ALL form."""
    keys = list(rows[0])
    if dialect.name == "postgresql":
        found = _unnested(table, keys, rows)
        if found is not None:
            return found
    if dialect.name == "sqlite" and SQLITE_JSON:
        found = _json_rows(table, dialect, keys, rows)
        if found is not None:
            return found
    return _union(keys, rows, typed), {}


def _unnested(
    table: sa.Table, keys: list[str], rows: Rows
) -> tuple[sa.Subquery, dict[str, Any]] | None:
    arrays, params = [], {}
    for number, key in enumerate(keys):
        element = _array_type(table.c[key])
        integral = isinstance(table.c[key].type, sa.Integer)
        texts = [_text(row[key], integral) for row in rows]
        if element is None or any(text is None for text in texts):
            return None
        name = f"idms_wanted_{number}"
        given = sa.bindparam(name, type_=postgresql.ARRAY(sa.Text()))
        arrays.append(sa.cast(given, postgresql.ARRAY(element)))
        params[name] = texts
    unnested = (
        sa.func.unnest(*arrays)
        .table_valued(*keys, with_ordinality="idms_position")
        .render_derived(name="idms_unnested")
    )
    chosen = [(unnested.c.idms_position - 1).label(ROW_LABEL), *(unnested.c[k] for k in keys)]
    return sa.select(*chosen).subquery("wanted"), params


def _array_type(column: sa.Column[Any]) -> sa.types.TypeEngine[Any] | None:
    """What the column's values are compared as, for an array cast: text for text
    columns (a cast to ``varchar(n)`` would cut a longer value to ``n`` characters), the
    unbounded ``numeric`` for numbers, else the column's own type. None for ``char(n)``,
    whose cast pads and cuts."""
    kind = column.type
    if isinstance(kind, NullType):
        return sa.Text()
    if isinstance(kind, sa.Enum):
        return kind
    if isinstance(kind, sa.CHAR | sa.NCHAR):
        return None
    if isinstance(kind, sa.String):
        return sa.Text()
    if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float):
        return sa.Numeric()
    return kind


def _text(value: Any, integral: bool) -> str | None:
    """The text PostgreSQL parses back to ``value``; None where it would not compare as
    the value does (``7.5`` against an integer column: text it cannot cast)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if integral and isinstance(value, float | Decimal):
        try:
            whole = value == int(value)
        except (OverflowError, ValueError, ArithmeticError):  # infinite, NaN
            return None
        return str(int(value)) if whole else None
    return str(value) if isinstance(value, TEXT_FORMS) else None


def _json_rows(
    table: sa.Table, dialect: sa.Dialect, keys: list[str], rows: Rows
) -> tuple[sa.Subquery, dict[str, Any]] | None:
    """One JSON array of rows, each an array of values: text as given, numbers as they
    are, other values as the column's type binds them (a date as its ISO text)."""
    processors = {
        key: table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys
    }
    packed = []
    for row in rows:
        values = []
        for key in keys:
            value, processor = row[key], processors[key]
            if not isinstance(value, str | int | float) and processor is not None:
                value = processor(value)
            if not isinstance(value, str | int | float):
                return None
            values.append(value)
        packed.append(values)
    each = sa.func.json_each(sa.bindparam("idms_wanted")).table_valued("key", "value").alias("w")
    chosen = [
        each.c.key.label(ROW_LABEL),
        *(sa.func.json_extract(each.c.value, f"$[{n}]").label(k) for n, k in enumerate(keys)),
    ]
    return sa.select(*chosen).subquery("wanted"), {"idms_wanted": json.dumps(packed)}


def _union(
    keys: list[str], rows: Rows, typed: Callable[[str, Any], sa.ColumnElement[Any]]
) -> sa.Subquery:
    selects = [
        sa.select(sa.literal(n).label(ROW_LABEL), *(typed(k, row[k]).label(k) for k in keys))
        for n, row in enumerate(rows)
    ]
    union = sa.union_all(*selects) if len(selects) > 1 else selects[0]
    return union.subquery("wanted")


def array_insert(
    table: sa.Table, dialect: sa.Dialect, rows: Sequence[Mapping[str, Any]]
) -> tuple[sa.Insert, dict[str, Any]] | None:
    """PostgreSQL: one ``INSERT ... SELECT`` of ``rows`` (all of one shape) from unnested
    arrays. None elsewhere, or for values the arrays cannot carry."""
    if dialect.name != "postgresql":
        return None
    keys = list(rows[0])
    given = _given(table, [(key, [row[key] for row in rows]) for key in keys])
    if given is None:
        return None
    unnested, names, params = given
    chosen = sa.select(*(unnested.c[name] for name in names))
    return sa.insert(table).from_select(keys, chosen), params


def array_update(
    table: sa.Table,
    dialect: sa.Dialect,
    rows: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
) -> tuple[sa.Update, dict[str, Any]] | None:
    """PostgreSQL: one UPDATE of ``rows`` (each: the record's identity values, the new
    values; all of one shape) from unnested arrays. None elsewhere, or for values the
    arrays cannot carry (bytes, JSON documents)."""
    if dialect.name != "postgresql":
        return None
    identity, changed = list(rows[0][0]), list(rows[0][1])
    columns = [(key, [ident[key] for ident, _ in rows]) for key in identity]
    columns += [(key, [new[key] for _, new in rows]) for key in changed]
    given = _given(table, columns)
    if given is None:
        return None
    unnested, names, params = given
    statement = (
        sa.update(table)
        .where(*(table.c[key] == unnested.c[names[n]] for n, key in enumerate(identity)))
        .values({key: unnested.c[names[len(identity) + n]] for n, key in enumerate(changed)})
    )
    return statement, params


def _given(
    table: sa.Table, columns: list[tuple[str, list[Any]]]
) -> tuple[sa.TableValuedAlias, list[str], dict[str, Any]] | None:
    """Values to write as one array of text per column, unnested: a text column takes
    its text as assigned (too long is an error), others cast to the column's type."""
    arrays, params = [], {}
    for number, (key, values) in enumerate(columns):
        column = table.c[key]
        integral = isinstance(column.type, sa.Integer)
        texts = [None if value is None else _text(value, integral) for value in values]
        if any(
            text is None and value is not None for text, value in zip(texts, values, strict=True)
        ):
            return None
        name = f"idms_given_{number}"
        given = sa.bindparam(name, type_=postgresql.ARRAY(sa.Text()))
        text_column = isinstance(column.type, sa.String | NullType)
        arrays.append(given if text_column else sa.cast(given, postgresql.ARRAY(column.type)))
        params[name] = texts
    names = [f"c{number}" for number in range(len(arrays))]
    unnested = sa.func.unnest(*arrays).table_valued(*names).render_derived(name="idms_given")
    return unnested, names, params
