"""The SQL source and target, each on SQLite (a file) and on PostgreSQL (a schema of the
test's own on IDMS_TEST_POSTGRES_URL, else the local trust-auth server; never skipped)."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_idms_webhooks.iupdate.base import (
    FilterValue,
    Page,
    RowWriteError,
    SourceReadError,
    TargetUnavailable,
)
from flask_idms_webhooks.iupdate.connections import Connections
from flask_idms_webhooks.iupdate.sql import SqlSource, bind_name, create_engine
from flask_idms_webhooks.iupdate.sql_target import SqlTarget
from flask_idms_webhooks.model.tasks import (
    Action,
    DataType,
    FilterRow,
    Operator,
    Prompt,
    Source,
    Target,
)
from tests.helpers import postgres_schema, require_postgres

MEMBER = """
CREATE TABLE member (
    id INTEGER PRIMARY KEY,
    first_name VARCHAR(50),
    last_name VARCHAR(50) NOT NULL,
    email VARCHAR(100) UNIQUE,
    status VARCHAR(1) NOT NULL,
    paid_through DATE,
    fee NUMERIC(10, 2),
    rating DOUBLE PRECISION,
    active BOOLEAN,
    token UUID
)
"""
LAST_NAMES = ["Smith", "Smythe", "Jones", "O'Brien", "Garcia"]


def member_rows(count: int = 50) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "first_name": None if i % 10 == 0 else f"F{i}",
            "last_name": LAST_NAMES[i % 5],
            "email": f"m{i}@example.org",
            "status": "A" if i % 4 else "I",
            "paid_through": (dt.date(2025, 1, 1) + dt.timedelta(days=7 * i)).isoformat(),
            "fee": f"{i}.50",
            "rating": i / 4,
            "active": i % 2 == 0,
            "token": str(uuid.UUID(int=i)),
        }
        for i in range(1, count + 1)
    ]


@dataclass
class Database:
    kind: str
    url: str
    engine: sa.Engine

    def run(self, sql: str, params: Any = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.text(sql), params or {})

    def scalar(self, sql: str, params: Any = None) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params or {}).scalar()

    def column(self, sql: str, params: Any = None) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params or {}).scalars())

    def seed(self, count: int = 50) -> list[dict[str, Any]]:
        rows = member_rows(count)
        self.run(MEMBER)
        self.run(
            "INSERT INTO member VALUES (:id, :first_name, :last_name, :email, :status,"
            " :paid_through, :fee, :rating, :active, :token)",
            rows,
        )
        return rows


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server's URL; fails (never skips) when it cannot be reached."""
    return require_postgres()


@contextmanager
def open_database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A Database with an engine of its own, disposed afterwards (before a PostgreSQL
    schema is dropped: an open connection would block the drop)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        engine = create_engine(url)
        try:
            yield Database(kind, url, engine)
        finally:
            engine.dispose()
        return
    request.getfixturevalue("postgres_url")  # fails, never skips, without a server
    engines: list[sa.Engine] = []

    def dispose() -> None:
        for engine in engines:
            engine.dispose()

    with postgres_schema("idms_test", dispose) as url:
        engines.append(create_engine(url))
        yield Database(kind, url, engines[0])


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path, request) as database:
        yield database


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database("postgresql", tmp_path, request) as database:
        yield database


def filter_value(
    key: str,
    value: Any,
    operator: Operator = Operator.EQUAL,
    data_type: DataType = DataType.STRING,
    prompt: Prompt = Prompt.OPTIONAL,
) -> FilterValue:
    business_object, _, column = key.rpartition(".")
    row = FilterRow(business_object or "Member", column, operator, data_type, prompt)
    return FilterValue(key, row, value)


def read(source: SqlSource, *filters: FilterValue) -> list[dict[str, Any]]:
    return [row for page in source.pages(filters) for row in page.rows]


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in rows]


# The source ----------------------------------------------------------------------------


def test_bind_names() -> None:
    assert bind_name("LastName") == "LastName"
    assert bind_name("CsContact1.ImisId") == "CsContact1_ImisId"


def test_named_binds_with_a_qualified_key_and_a_fixed_filter(db: Database) -> None:
    rows = db.seed()
    source = SqlSource(
        db.engine,
        "SELECT id, last_name FROM member WHERE last_name LIKE :LastName || '%'"
        " AND id <> :CsContact1_ImisId AND status = :Status ORDER BY id",
    )
    found = read(
        source,
        filter_value("LastName", "Sm", Operator.STARTS_WITH),
        filter_value("CsContact1.ImisId", 1, data_type=DataType.INT32, prompt=Prompt.REQUIRED),
        filter_value("Status", "A", prompt=Prompt.NONE),
    )
    expected = [
        row["id"]
        for row in rows
        if row["last_name"].startswith("Sm") and row["id"] != 1 and row["status"] == "A"
    ]
    assert ids(found) == expected
    assert found[0] == {"id": expected[0], "last_name": LAST_NAMES[expected[0] % 5]}


def test_between_and_in(db: Database) -> None:
    rows = db.seed()
    source = SqlSource(
        db.engine,
        "SELECT id FROM member WHERE paid_through BETWEEN :PaidThrough_from AND :PaidThrough_to"
        " AND (id IN :Id OR last_name IN :LastName) ORDER BY id",
    )
    found = read(
        source,
        filter_value(
            "PaidThrough", ["2025-02-01", "2025-06-30"], Operator.BETWEEN, DataType.DATETIME
        ),
        filter_value("Id", [3, 5, 7, 99], Operator.IN, DataType.INT32),
        filter_value("LastName", ["O'Brien"], Operator.IN),
    )
    expected = [
        row["id"]
        for row in rows
        if "2025-02-01" <= row["paid_through"] <= "2025-06-30"
        and (row["id"] in {3, 5, 7} or row["last_name"] == "O'Brien")
    ]
    assert expected
    assert ids(found) == expected


def test_blank_filters_bind_null_whatever_their_type(db: Database) -> None:
    rows = db.seed()
    source = SqlSource(
        db.engine,
        "SELECT id FROM member"
        " WHERE (:LastName IS NULL OR last_name LIKE :LastName || '%')"
        " AND (:Fee IS NULL OR fee >= :Fee)"
        " AND (:Rating IS NULL OR rating < :Rating)"
        " AND (:Active IS NULL OR active = :Active)"
        " AND (:Token IS NULL OR token = :Token)"
        " AND (:PaidBefore IS NULL OR paid_through < :PaidBefore)"
        " AND (:Paid_from IS NULL OR paid_through BETWEEN :Paid_from AND :Paid_to)"
        " ORDER BY id",
    )

    def query(**values: Any) -> list[int]:
        types = {
            "LastName": DataType.STRING,
            "Fee": DataType.DECIMAL,
            "Rating": DataType.DOUBLE,
            "Active": DataType.BOOLEAN,
            "Token": DataType.GUID,
            "PaidBefore": DataType.DATETIME,
        }
        filters = [filter_value(key, values.get(key), data_type=t) for key, t in types.items()]
        filters.append(
            filter_value("Paid", values.get("Paid"), Operator.BETWEEN, DataType.DATETIME)
        )
        return ids(read(source, *filters))

    assert query() == [row["id"] for row in rows]
    assert query(LastName="Jon") == [row["id"] for row in rows if row["last_name"] == "Jones"]
    assert query(Fee="40.5") == list(range(40, 51))
    assert query(Rating=1.0) == [1, 2, 3]
    assert query(Active=True) == list(range(2, 51, 2))
    assert query(Token=str(uuid.UUID(int=7))) == [7]
    assert query(PaidBefore="2025-01-22") == [1, 2]
    assert query(Paid=["2025-01-15", "2025-01-29"], Active=False) == [3]


def test_a_blank_in_filter_matches_nothing(db: Database) -> None:
    db.seed()
    source = SqlSource(db.engine, "SELECT id FROM member WHERE id IN :Id")
    assert read(source, filter_value("Id", None, Operator.IN, DataType.INT32)) == []
    source = SqlSource(db.engine, "SELECT id FROM member WHERE id NOT IN :Id")
    assert len(read(source, filter_value("Id", None, Operator.IN, DataType.INT32))) == 50


def test_pages_and_total(db: Database) -> None:
    db.seed()
    source = SqlSource(db.engine, "SELECT id, email FROM member ORDER BY id;", page_size=7)
    pages = list(source.pages([]))
    assert [len(page.rows) for page in pages] == [7] * 7 + [1]
    assert [page.total for page in pages] == [50] + [None] * 7
    assert [row["id"] for page in pages for row in page.rows] == list(range(1, 51))

    uncounted = SqlSource(db.engine, "SELECT id FROM member", page_size=7, count_rows=False)
    unused = filter_value("NotInTheQuery", "x")  # a filter the query does not use is fine
    assert [page.total for page in uncounted.pages([unused])] == [None] * 8


def test_an_abandoned_read_gives_its_connection_back(db: Database) -> None:
    db.seed()
    pages = SqlSource(db.engine, "SELECT id FROM member", page_size=7).pages([])
    assert len(next(pages).rows) == 7
    assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    pages.close()
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_postgresql_reads_through_a_server_side_cursor(pg: Database) -> None:
    pg.seed()
    cursors: list[str] = []

    def record(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "COUNT(*)" not in statement:
            cursors.append(type(cursor).__name__)

    sa.event.listen(pg.engine, "before_cursor_execute", record)
    try:
        assert len(read(SqlSource(pg.engine, "SELECT id FROM member", page_size=7))) == 50
    finally:
        sa.event.remove(pg.engine, "before_cursor_execute", record)
    assert cursors == ["ServerCursor"]


def test_a_count_survives_a_trailing_comment(db: Database) -> None:
    db.seed()
    source = SqlSource(db.engine, "SELECT id FROM member WHERE status = :Status -- active")
    pages = list(source.pages([filter_value("Status", "I")]))
    assert pages[0].total == 12
    assert len(pages[0].rows) == 12


def test_an_empty_source_is_one_empty_page(db: Database) -> None:
    db.seed()
    source = SqlSource(db.engine, "SELECT id FROM member WHERE id < 0")
    assert list(source.pages([])) == [Page([], 0)]


def test_row_values(db: Database) -> None:
    db.seed()
    source = SqlSource(db.engine, "SELECT * FROM member WHERE id = 10")
    (row,) = read(source)
    assert row["first_name"] is None
    assert row["last_name"] == "Smith"
    assert row["rating"] == 2.5
    if db.kind == "postgresql":
        assert row["paid_through"] == dt.date(2025, 3, 12)
        assert str(row["fee"]) == "10.50"
        assert row["token"] == uuid.UUID(int=10)
        assert row["active"] is True
    else:
        assert row["paid_through"] == "2025-03-12"
        assert row["fee"] == 10.5
        assert row["active"] == 1


@pytest.mark.parametrize(
    "attack",
    [
        "x' OR '1'='1",
        "'; DROP TABLE member; --",
        "Smith' --",
        "%",
        ":LastName",
    ],
)
def test_values_stay_data(db: Database, attack: str) -> None:
    db.seed()
    source = SqlSource(db.engine, "SELECT id FROM member WHERE last_name = :LastName")
    assert read(source, filter_value("LastName", attack)) == []
    source = SqlSource(db.engine, "SELECT id FROM member WHERE last_name IN :LastName")
    assert read(source, filter_value("LastName", [attack, "1) OR (1=1"], Operator.IN)) == []
    assert db.scalar("SELECT COUNT(*) FROM member") == 50


def test_quotes_in_values_match_exactly(db: Database) -> None:
    rows = db.seed()
    source = SqlSource(db.engine, "SELECT id FROM member WHERE last_name = :LastName")
    found = read(source, filter_value("LastName", "O'Brien"))
    assert ids(found) == [row["id"] for row in rows if row["last_name"] == "O'Brien"]


#: The streamed table: read in pages of a 200th of it, its peak is about a 100th of all at
#: once (what counts is that ratio, the same as for 200,000 rows in pages of 1,000).
ROWS = 50_000


def test_streaming_keeps_memory_flat(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, note TEXT)")
        connection.executemany(
            "INSERT INTO big VALUES (?, ?, ?)",
            ((i, f"name {i}", "x" * 40) for i in range(ROWS)),
        )
    connection.close()
    engine = create_engine(f"sqlite:///{path}")
    query = "SELECT id, name, note FROM big ORDER BY id"
    try:
        read(SqlSource(engine, f"{query} LIMIT 10"))  # warm the caches outside the measure

        def peak(page_size: int) -> tuple[int, int]:
            tracemalloc.start()
            try:
                count = sum(
                    len(page.rows) for page in SqlSource(engine, query, page_size).pages([])
                )
                return count, tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        streamed, streamed_peak = peak(ROWS // 200)
        whole, whole_peak = peak(ROWS)
    finally:
        engine.dispose()
    assert streamed == whole == ROWS
    assert streamed_peak * 20 < whole_peak, (streamed_peak, whole_peak)


def test_source_errors_are_clear_and_leak_no_values(db: Database) -> None:
    db.seed()
    secret = filter_value("LastName", "topsecret-value")

    def error(query: str, *filters: FilterValue) -> str:
        with pytest.raises(SourceReadError) as caught:
            read(SqlSource(db.engine, query), *filters)
        message = str(caught.value)
        assert "topsecret-value" not in message
        return message

    message = error("SELEC id FROM member WHERE last_name = :LastName", secret)
    assert message.startswith("cannot read the SQL source (")
    assert "syntax error" in message
    assert "nope" in error("SELECT id FROM nope WHERE name = :LastName", secret)
    assert "no_column" in error("SELECT no_column FROM member WHERE :LastName = 'x'", secret)
    assert error("SELECT id FROM member WHERE id = :Nope", secret) == (
        "the SQL source query uses :Nope, which no filter row binds"
        " (the filter rows bind :LastName)"
    )
    assert "'id' more than once" in error("SELECT id, id FROM member")
    assert "Between takes two values" in error(
        "SELECT id FROM member WHERE id BETWEEN :Id_from AND :Id_to",
        filter_value("Id", [1, 2, 3], Operator.BETWEEN, DataType.INT32),
    )
    assert "both bind :A_B" in error(
        "SELECT id FROM member WHERE :A_B = 1",
        filter_value("A.B", 1, data_type=DataType.INT32),
        filter_value("A_B", 1, data_type=DataType.INT32),
    )


def test_a_bad_value_is_blanked_out_of_the_message(pg: Database) -> None:
    pg.seed()
    with pytest.raises(SourceReadError) as caught:
        read(
            SqlSource(pg.engine, "SELECT id FROM member WHERE id = :Id"),
            filter_value("Id", "abc123", data_type=DataType.INT32),
        )
    assert 'invalid input syntax for type integer: "***"' in str(caught.value)
    assert "abc123" not in str(caught.value)


def test_an_unreachable_database(tmp_path: Path) -> None:
    missing = create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    down = create_engine("postgresql+psycopg://someone:s3cret-pw@127.0.0.1:1/idms")
    try:
        with pytest.raises(SourceReadError, match="unable to open database file"):
            list(SqlSource(missing, "SELECT 1").pages([]))
        with pytest.raises(SourceReadError) as read_error:
            list(SqlSource(down, "SELECT 1").pages([]))
        with pytest.raises(TargetUnavailable, match="unable to open database file"):
            SqlTarget(missing, "member").insert({"id": 1})
        with pytest.raises(TargetUnavailable) as write_error:
            SqlTarget(down, "member").find({"id": 1})
    finally:
        missing.dispose()
        down.dispose()
    assert str(read_error.value).startswith(
        "cannot read the SQL source (postgresql database 'idms' at 127.0.0.1:1): "
        "OperationalError: connection failed"
    )
    assert str(write_error.value).startswith(
        "cannot reach the target table 'member' in postgresql database 'idms' at 127.0.0.1:1: "
        "OperationalError: connection failed"
    )
    assert "s3cret-pw" not in str(read_error.value) + str(write_error.value)


# The target ----------------------------------------------------------------------------


def test_find_insert_update_delete(db: Database) -> None:
    db.seed(3)
    target = SqlTarget(db.engine, "member")
    target.insert(
        {
            "id": 100,
            "last_name": "Nash",
            "Email": "nash@example.org",  # column names match ignoring case
            "status": "A",
            "paid_through": "2026-12-31",
            "fee": "12.25",
            "active": True,
        }
    )
    (record,) = target.find({"email": "nash@example.org"})
    assert record["id"] == 100
    assert record["first_name"] is None
    # Values as the driver returns them: SQLite stores dates as the text it is given.
    date = dt.date if db.kind == "postgresql" else lambda *ymd: dt.date(*ymd).isoformat()
    assert record["paid_through"] == date(2026, 12, 31)

    target.update(record, {"first_name": "Ann", "paid_through": dt.date(2027, 6, 30)})
    (record,) = target.find({"id": 100, "paid_through": "2027-06-30"})
    assert (record["first_name"], record["paid_through"]) == ("Ann", date(2027, 6, 30))
    assert db.scalar("SELECT first_name FROM member WHERE id = 100") == "Ann"

    target.delete(record)
    assert target.find({"id": 100}) == []
    assert db.scalar("SELECT COUNT(*) FROM member") == 3
    with pytest.raises(RowWriteError, match="no longer in the table 'member'"):
        target.delete(record)
    with pytest.raises(RowWriteError, match="no longer in the table 'member'"):
        target.update(record, {"first_name": "Bob"})


def test_find_matches_null(db: Database) -> None:
    db.seed(30)
    target = SqlTarget(db.engine, "member")
    assert sorted(r["id"] for r in target.find({"first_name": None})) == [10, 20, 30]
    assert [r["id"] for r in target.find({"first_name": None, "last_name": "Smith"})] == [
        10,
        20,
        30,
    ]
    assert [r["id"] for r in target.find({"first_name": None, "status": "A"})] == [10, 30]
    assert target.find({"first_name": None, "status": "Z"}) == []
    assert len(target.find({})) == 30


def test_criteria_are_typed_as_their_columns(db: Database) -> None:
    db.seed(30)
    target = SqlTarget(db.engine, "member")
    assert [r["id"] for r in target.find({"id": "7"})] == [7]
    assert [r["id"] for r in target.find({"token": str(uuid.UUID(int=8))})] == [8]
    assert [r["id"] for r in target.find({"paid_through": "2025-01-08"})] == [1]
    assert [r["id"] for r in target.find({"paid_through": dt.date(2025, 1, 15)})] == [2]
    assert [r["id"] for r in target.find({"fee": "3.50", "active": False})] == [3]


def test_values_are_written_verbatim(db: Database) -> None:
    db.seed(1)
    target = SqlTarget(db.engine, "member")
    nasty = "Robert'); DROP TABLE member; --"
    target.insert({"id": 2, "last_name": nasty, "status": "A"})
    assert [r["id"] for r in target.find({"last_name": nasty})] == [2]
    assert db.scalar("SELECT last_name FROM member WHERE id = 2") == nasty


def test_unknown_table_and_columns(db: Database) -> None:
    db.seed(1)
    with pytest.raises(TargetUnavailable) as caught:
        SqlTarget(db.engine, "no_such_table").find({"id": 1})
    assert "the target table 'no_such_table' does not exist in" in str(caught.value)
    with pytest.raises(TargetUnavailable), SqlTarget(db.engine, "no_such_table").batch():
        pass

    target = SqlTarget(db.engine, "member")
    for call in (
        lambda: target.insert({"id": 5, "last_name": "X", "status": "A", "shoe_size": 44}),
        lambda: target.find({"shoe_size": 44}),
        lambda: target.update({"id": 1}, {"shoe_size": 44}),
    ):
        with pytest.raises(RowWriteError, match="has no column 'shoe_size' \\(its columns: id,"):
            call()


def test_a_failing_row_leaves_the_rest_of_the_batch(db: Database) -> None:
    db.seed(3)
    target = SqlTarget(db.engine, "member")
    errors: list[str] = []

    def attempt(values: dict[str, Any]) -> None:
        try:
            target.insert(values)
        except RowWriteError as error:
            errors.append(str(error))

    with target.batch():
        attempt({"id": 101, "last_name": "Ok", "status": "A"})
        attempt({"id": 1, "last_name": "Duplicate key", "status": "A"})
        attempt({"id": 102, "last_name": None, "status": "A"})
        attempt({"id": 103, "last_name": "Dup mail", "status": "A", "email": "m2@example.org"})
        if db.kind == "postgresql":  # SQLite stores any value in any column
            attempt({"id": 104, "last_name": "Bad fee", "status": "A", "fee": "lots"})
            attempt({"id": 105, "last_name": "Bad date", "status": "A", "paid_through": "soon"})
        attempt({"id": 106, "last_name": "Ok too", "status": "A"})
        (record,) = target.find({"id": 2})
        target.update(record, {"first_name": "Changed"})

    assert db.column("SELECT id FROM member ORDER BY id") == [1, 2, 3, 101, 106]
    assert db.scalar("SELECT first_name FROM member WHERE id = 2") == "Changed"
    assert len(errors) == (5 if db.kind == "postgresql" else 3)
    assert all(error.startswith("table 'member': ") for error in errors)
    if db.kind == "sqlite":
        assert errors == [
            "table 'member': IntegrityError: UNIQUE constraint failed: member.id",
            "table 'member': IntegrityError: NOT NULL constraint failed: member.last_name",
            "table 'member': IntegrityError: UNIQUE constraint failed: member.email",
        ]
    else:
        assert errors == [
            "table 'member': UniqueViolation: duplicate key value violates unique constraint"
            ' "member_pkey"',
            "table 'member': NotNullViolation: null value in column \"last_name\" of relation"
            ' "member" violates not-null constraint',
            "table 'member': UniqueViolation: duplicate key value violates unique constraint"
            ' "member_email_key"',
            "table 'member': InvalidTextRepresentation:"
            ' invalid input syntax for type numeric: "***"',
            "table 'member': InvalidDatetimeFormat: invalid input syntax for type date: \"***\"",
        ]


def test_a_batch_is_one_transaction(db: Database) -> None:
    db.seed(1)
    target = SqlTarget(db.engine, "member")
    with target.batch():
        target.insert({"id": 2, "last_name": "A", "status": "A"})
        assert db.scalar("SELECT COUNT(*) FROM member") == 1  # not committed yet
        target.insert({"id": 3, "last_name": "B", "status": "A"})
    assert db.scalar("SELECT COUNT(*) FROM member") == 3

    def stopped() -> None:
        with target.batch():
            target.insert({"id": 4, "last_name": "C", "status": "A"})
            raise RuntimeError("the job was stopped")

    with pytest.raises(RuntimeError):
        stopped()
    assert db.column("SELECT id FROM member ORDER BY id") == [1, 2, 3]


def test_calls_outside_a_batch_commit_at_once(db: Database) -> None:
    db.seed(1)
    target = SqlTarget(db.engine, "member")
    target.insert({"id": 2, "last_name": "A", "status": "A"})
    assert db.scalar("SELECT COUNT(*) FROM member") == 2
    with pytest.raises(RowWriteError):
        target.insert({"id": 2, "last_name": "A", "status": "A"})
    target.insert({"id": 3, "last_name": "B", "status": "A"})
    assert db.column("SELECT id FROM member ORDER BY id") == [1, 2, 3]


def test_a_table_without_a_primary_key(db: Database) -> None:
    db.run("CREATE TABLE tag (member_id INTEGER, label VARCHAR(20), note VARCHAR(20))")
    target = SqlTarget(db.engine, "tag")
    for member_id, label in [(1, "gold"), (1, "gold"), (2, "gold"), (3, None)]:
        target.insert({"member_id": member_id, "label": label})
    (untagged,) = target.find({"label": None})
    target.update(untagged, {"label": "new"})
    assert target.find({"member_id": 3}) == [{"member_id": 3, "label": "new", "note": None}]

    # Identical rows cannot be told apart: updating one updates each.
    first, _ = target.find({"member_id": 1})
    target.update(first, {"note": "seen"})
    assert [r["note"] for r in target.find({"member_id": 1})] == ["seen", "seen"]
    target.delete(target.find({"member_id": 1})[0])
    assert db.column("SELECT member_id FROM tag ORDER BY member_id") == [2, 3]


def test_a_schema_qualified_table(db: Database) -> None:
    db.seed(2)
    schema = "main" if db.kind == "sqlite" else db.scalar("SELECT current_schema()")
    target = SqlTarget(db.engine, f"{schema}.member")
    assert [r["id"] for r in target.find({"last_name": LAST_NAMES[2]})] == [2]


def test_a_source_streams_while_a_target_writes_the_same_table(db: Database) -> None:
    db.seed()
    source = SqlSource(db.engine, "SELECT id, fee FROM member ORDER BY id", page_size=7)
    target = SqlTarget(db.engine, "member")
    for page in source.pages([]):
        with target.batch():
            for row in page.rows:
                (record,) = target.find({"id": row["id"]})
                target.update(record, {"status": "M", "first_name": f"seen {row['id']}"})
    assert db.scalar("SELECT COUNT(*) FROM member WHERE status = 'M'") == 50


def test_two_sqlite_writers_wait_for_each_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    database = Database("sqlite", url, create_engine(url))
    try:
        database.seed(1)
        first, second = SqlTarget(database.engine, "member"), SqlTarget(database.engine, "member")
        first_reads = threading.Event()
        failures: list[BaseException] = []

        def reads_then_writes() -> None:
            try:
                with first.batch():
                    first.find({"id": 1})  # a read first: the classic lock upgrade
                    first_reads.set()
                    threading.Event().wait(0.3)  # the other writer commits meanwhile, if it can
                    first.insert({"id": 2, "last_name": "W", "status": "A"})
            except BaseException as error:
                failures.append(error)

        def writes() -> None:
            first_reads.wait(10)
            try:
                with second.batch():
                    second.insert({"id": 3, "last_name": "W", "status": "A"})
            except BaseException as error:
                failures.append(error)

        threads = [threading.Thread(target=reads_then_writes), threading.Thread(target=writes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert failures == []
        assert database.column("SELECT id FROM member ORDER BY id") == [1, 2, 3]
    finally:
        database.engine.dispose()


# Engines -------------------------------------------------------------------------------


def test_one_connections_has_one_engine_per_profile_and_two_share_none(db: Database) -> None:
    """An app's ``Connections`` makes a profile's engine on first use and hands the same
    one to every later source and target; another app's ``Connections`` (same profile)
    makes its own: no engine is shared across apps."""
    profiles = {"db": {"kind": "sql", "url": db.url}}
    db.seed(1)
    first, second = Connections(), Connections()
    try:
        engine = first.sql_engine(profiles["db"])
        assert first.sql_engine({"url": db.url, "kind": "sql"}) is engine  # an equal profile
        source = first.source(Source("db", "SELECT id FROM member"), profiles)
        target = first.target(Target("db", "member", Action.INSERT), profiles)
        assert isinstance(source, SqlSource) and isinstance(target, SqlTarget)
        assert source.engine is engine and target.engine is engine
        other = second.sql_engine(profiles["db"])
        assert other is not engine and other is not db.engine
        assert second.target(Target("db", "member", Action.INSERT), profiles).engine is other
        for made in (engine, other):
            with made.connect() as connection:
                assert connection.execute(sa.text("SELECT COUNT(*) FROM member")).scalar() == 1
                if db.kind == "sqlite":
                    assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        first.close()
        second.close()
    if db.kind == "sqlite":
        assert db.scalar("PRAGMA journal_mode") == "wal"


def test_a_forked_child_never_uses_its_parents_connections(db: Database) -> None:
    """What a forking worker's work-horse does (``WebhooksState.in_work_horse``): the
    child calls ``Connections.forget_inherited()``, then gets an engine of its own, and
    even an adapter built in the parent on the inherited engine opens new connections.
    The parent's pooled connection stays the parent's, and keeps working."""
    db.seed()
    profile = {"kind": "sql", "url": db.url}
    connections = Connections()
    try:
        engine = connections.sql_engine(profile)
        parent_target = SqlTarget(engine, "member")
        parent_target.find({"id": 1})  # reflected and pooled before the fork
        backend = "SELECT pg_backend_pid()" if db.kind == "postgresql" else "SELECT 1"
        with engine.connect() as connection:
            before = connection.execute(sa.text(backend)).scalar()
        assert engine.pool.checkedin() == 1  # the one connection, pooled across the fork
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                connections.forget_inherited()
                child = connections.sql_engine(profile)
                parent_target.update(parent_target.find({"id": 1})[0], {"first_name": "child"})
                with child.connect() as connection:
                    mine = connection.execute(sa.text(backend)).scalar()
                with engine.connect() as connection:
                    inherited = connection.execute(sa.text(backend)).scalar()
                if child is engine or not read(SqlSource(child, "SELECT 1 AS one")):
                    code = 2
                elif db.kind == "postgresql" and before in (mine, inherited):
                    code = 3  # a parent's connection used in the child
                else:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert connections.sql_engine(profile) is engine  # the parent forgot nothing
        with engine.connect() as connection:
            assert connection.execute(sa.text(backend)).scalar() == before  # the same one
            assert connection.execute(sa.text("SELECT COUNT(*) FROM member")).scalar() == 50
        assert db.scalar("SELECT first_name FROM member WHERE id = 1") == "child"
    finally:
        connections.close()
