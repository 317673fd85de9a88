"""The SQL target's set look-up (``find_many``: a page's rows found in one SELECT) finds
for each row exactly what a one-row look-up (``find``) finds, however the values are
given, on SQLite and PostgreSQL; and it is one statement."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_idms_webhooks.iupdate.base import RowWriteError, Update
from flask_idms_webhooks.iupdate.sql_target import SqlTarget
from tests.test_sql_adapter import Database, open_database, postgres_url  # noqa: F401

LONG = "m3@example.org" + "x" * 200  # longer than the column: never cut to match

#: Criteria grouped by their match columns, as the engine asks for a set.
GROUPS: list[list[dict[str, Any]]] = [
    [{"email": "m3@example.org"}, {"email": "M3@EXAMPLE.ORG"}, {"email": "nobody"},
     {"email": LONG}, {"email": "m3@example.org "}, {"email": "O'Brien"}],
    [{"id": 7}, {"id": "7"}, {"id": 7.0}, {"id": "999"}, {"id": 7.5}],
    [{"fee": "3.50"}, {"fee": Decimal("3.5")}, {"fee": 3.5}, {"fee": "4"}],
    [{"paid_through": "2025-01-15"}, {"paid_through": dt.date(2025, 1, 22)},
     {"paid_through": "2031-01-01"}],
    [{"last_name": "Smith", "status": "A"}, {"last_name": "Smith", "status": "I"},
     {"last_name": "Jones", "status": "A"}, {"last_name": "Nobody", "status": "A"}],
    [{"status": "AX"}, {"status": "A"}],  # a VARCHAR(1): "AX" must not be cut to "A"
    [{"active": True}, {"active": False}],
    [{"token": str(uuid.UUID(int=5))}, {"token": str(uuid.UUID(int=6))},
     {"token": str(uuid.UUID(int=99))}],
    [{"first_name": None}, {"first_name": "F1"}],  # a blank is left to find (None)
]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path, request) as database:
        database.seed()
        yield database


@pytest.mark.parametrize("group", GROUPS, ids=lambda group: "+".join(group[0]))
def test_each_row_finds_what_a_one_row_look_up_finds(db: Database, group: list[Any]) -> None:
    target = SqlTarget(db.engine, "member")
    one_by_one = [
        None if any(v is None for v in criteria.values()) else target.find(criteria)
        for criteria in group
    ]
    assert target.find_many(group) == one_by_one
    assert any(one_by_one), "the group finds something"


def test_a_set_is_one_select_whatever_its_size(db: Database) -> None:
    target = SqlTarget(db.engine, "member")
    target.find({"id": 1})  # the table is reflected once, on first use
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        found = target.find_many([{"email": f"m{n}@example.org"} for n in range(1, 61)])
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)
    assert [len(records) for records in found] == [1] * 50 + [0] * 10
    assert [record["id"] for records in found for record in records] == list(range(1, 51))
    assert [s.split()[0] for s in statements if not s.startswith("BEGIN")] == ["SELECT"]


def test_char_columns_and_odd_values_are_found_the_slow_way(db: Database) -> None:
    db.run("CREATE TABLE coded (id INTEGER PRIMARY KEY, code CHAR(4), blob_key VARCHAR(10))")
    db.run("INSERT INTO coded VALUES (1, 'AB', 'k1'), (2, 'ABCD', 'k2')")
    target = SqlTarget(db.engine, "coded")
    group = [{"code": "AB"}, {"code": "ABCD"}, {"code": "ABCDE"}, {"code": "AB  "}]
    assert target.find_many(group) == [target.find(c) for c in group]


NEW_VALUES = [
    {"first_name": "Zed", "fee": "12.25", "paid_through": "2030-05-06", "active": True},
    {"first_name": None, "fee": Decimal("3"), "paid_through": dt.date(2029, 1, 2), "active": False},
    {"first_name": "O'Neil", "fee": 7.5, "paid_through": None, "active": None},
    {"first_name": "", "fee": 0, "paid_through": "2028-02-29", "active": True},
]


def test_a_set_of_updates_writes_what_one_row_updates_write(db: Database) -> None:
    target = SqlTarget(db.engine, "member")
    first = [target.find({"id": n})[0] for n in range(1, 5)]
    second = [target.find({"id": n})[0] for n in range(11, 15)]
    with target.batch():
        assert target.write_many([Update(r, v) for r, v in zip(first, NEW_VALUES, strict=True)])
    with target.batch():
        for record, values in zip(second, NEW_VALUES, strict=True):
            target.update(record, values)
    changed = ("first_name", "fee", "paid_through", "active")

    def kept(n: int) -> tuple[Any, ...]:
        (record,) = target.find({"id": n})
        return tuple(record[key] for key in changed)

    assert [kept(n) for n in range(1, 5)] == [kept(n) for n in range(11, 15)]
    assert kept(1)[0] == "Zed" and kept(2)[0] is None


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database("postgresql", tmp_path, request) as database:
        database.seed()
        yield database


def test_a_value_too_long_fails_the_set_and_is_never_cut(pg: Database) -> None:
    # PostgreSQL enforces VARCHAR(1) (SQLite does not): the set fails whole, nothing cut.
    target = SqlTarget(pg.engine, "member")
    records = [target.find({"id": n})[0] for n in (1, 2)]
    writes = [Update(records[0], {"status": "X"}), Update(records[1], {"status": "TOO LONG"})]
    with pytest.raises(RowWriteError, match="too long"), target.batch():
        target.write_many(writes)
    assert [target.find({"id": n})[0]["status"] for n in (1, 2)] == ["A", "A"]
