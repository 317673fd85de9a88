"""The engine's speed-ups, judged by what a user sees: several iMIS rows in flight
(``max_concurrency``) write exactly what one row at a time writes; rows sharing a key keep
their order; row numbers are source positions; a 429 storm slows the job instead of
failing it; a cancel stops it with the rows in flight counted; ``batch_match`` finds a
page's rows in one call; SQL pages are written in sets, and a bad row in a set costs only
itself. Figures of speed are the benchmark's (``make bench engine-imis engine-sql``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_idms_webhooks.testing import ImisDouble
from tests.engine_support import (
    Database,
    Runner,
    close_connections,
    counts,
    engine_app,
    expect,
    open_database,
    sql_task,
    task_file,
)
from tests.helpers import ADMIN, wait_for
from tests.test_engine import imis_connection

# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_connections() -> Iterator[None]:
    close_connections()
    yield
    close_connections()


@pytest.fixture
def double() -> Iterator[ImisDouble]:
    double = ImisDouble("manager", "secret")
    with double.serve(keep_alive=True):
        yield double


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def runner_for(tmp_path: Path, redis_url: str, queue_name: str) -> Callable[..., Runner]:
    def make(connections: dict[str, Any], *tasks: dict[str, Any]) -> Runner:
        path = task_file(tmp_path / "tasks.toml", connections, tasks)
        return Runner(engine_app(path, redis_url, queue_name))

    return make


# -- iMIS: a feed of rows into CsContact ---------------------------------------------------


def feed(double: ImisDouble, rows: list[tuple[str, str]], existing: dict[str, str]) -> None:
    """The IQA ``$/Sync/Feed`` returns ``rows`` (ID, Email) in order; CsContact holds
    ``existing`` (ID -> Email)."""
    double.add_entities(
        "Feed",
        [{"Seq": f"{n:06d}", "ID": key, "Email": email} for n, (key, email) in enumerate(rows)],
        key="Seq",
    )
    double.add_entities("CsContact", [{"ID": k, "Email": v} for k, v in existing.items()])
    double.add_query("$/Sync/Feed", entity="Feed", columns=["ID", "Email"])


def feed_task(action: str = "InsertOrUpdate", page_size: int = 100) -> dict[str, Any]:
    return {
        "id": "sync",
        "source": {"connection": "imis", "query": "$/Sync/Feed", "page_size": page_size},
        "target": {
            "connection": "imis",
            "entity": "CsContact",
            "action": action,
            "match": {"ID": "ID"},
            "mapping": {"ID": "ID", "Email": "Email"},
        },
    }


def contacts(double: ImisDouble) -> list[tuple[str, str]]:
    return sorted((record["ID"], record["Email"]) for record in double.entities("CsContact"))


def entity_calls(double: ImisDouble) -> list[tuple[str, str]]:
    return [(r.method, r.query) for r in double.requests if r.path.startswith("/api/CsContact")]


def test_rows_in_flight_write_what_one_row_at_a_time_writes(double, runner_for):
    rows = [(f"{1000 + i}", f"m{i}@new.org") for i in range(60)]
    existing = {f"{1000 + i}": f"m{i}@old.org" for i in range(0, 60, 3)}
    feed(double, rows, existing)
    double.latency(0.02)
    runner = runner_for({"imis": imis_connection(double, max_concurrency=8)}, feed_task())
    double.reset_peak()
    document = runner.run("sync")
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(60, inserted=40, updated=20)
    assert contacts(double) == sorted(rows)
    # Calls overlapped (the IQA page adds at most one), on a few kept-alive connections.
    assert 4 <= double.in_flight_peak <= 9
    assert double.connections_opened <= 8 + 2


def test_rows_sharing_a_key_are_written_in_source_order_never_together(double, runner_for):
    # Key 7 comes five times among others: five writes of one record, in order; never two
    # at once (two inserts of a new key would make two records).
    rows = []
    for i in range(40):
        rows.append((f"{i}", f"other{i}@x.org"))
        if i % 8 == 0:
            rows.append(("7777", f"seven-{i}@x.org"))
    feed(double, rows, {})
    double.latency(0.03)
    runner = runner_for({"imis": imis_connection(double, max_concurrency=8)}, feed_task())
    document = runner.run("sync")
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(45, inserted=41, updated=4)
    sevens = [record for record in double.entities("CsContact") if record["ID"] == "7777"]
    assert sevens == [{"ID": "7777", "Email": "seven-32@x.org"}]
    puts = [r for r in double.requests if r.method == "PUT" and r.path.endswith("/7777")]
    assert [r.json["Properties"]["$values"][1]["Value"] for r in puts] == [
        f"seven-{i}@x.org" for i in (8, 16, 24, 32)
    ]


def test_row_numbers_are_source_positions_whatever_finishes_first(double, runner_for):
    rows = [
        (f"{100 + i}", f"bad{i}@x.org" if i in (2, 16, 41) else f"ok{i}@x.org") for i in range(50)
    ]
    feed(double, rows, {})
    double.add_validation("CsContact", "Email", lambda v: not str(v).startswith("bad"), "Refused.")
    double.latency(0.02)
    runner = runner_for({"imis": imis_connection(double, max_concurrency=8)}, feed_task())
    location = runner.start("sync")
    runner.burst()
    document = runner.finished(location)
    assert counts(document) == expect(50, inserted=47, errors=3)
    assert [error["Row"] for error in document["Errors"]] == [3, 17, 42]
    csv = runner.client.get(
        f"/idms/jobs/{document['ExecuteId']}/errors.csv",
        headers={"X-Webhook-Key": runner.key("sync")},
    )
    assert csv.status_code == 200
    assert [line.split(",")[0] for line in csv.get_data(as_text=True).splitlines()[1:]] == [
        "3",
        "17",
        "42",
    ]


def test_a_429_storm_slows_the_job_down_and_loses_nothing(double, runner_for, caplog):
    rows = [(f"{5000 + i}", f"s{i}@x.org") for i in range(80)]
    feed(double, rows, {f"{5000 + i}": "old" for i in range(0, 80, 2)})
    double.latency(0.01)
    for nth in range(10, 150, 10):  # every 10th call for a while
        double.fail_nth(nth, 429, retry_after=0)
    runner = runner_for({"imis": imis_connection(double, max_concurrency=8)}, feed_task())
    with caplog.at_level("WARNING", logger="flask_idms_webhooks.iupdate.imis.pacing"):
        document = runner.run("sync")
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(80, inserted=40, updated=40)
    assert contacts(double) == sorted(rows)  # each insert once: a 429 was not processed
    slowed = [r.getMessage() for r in caplog.records if "answered 429" in r.getMessage()]
    assert slowed and "calls in flight 8 -> 4" in slowed[0]


def test_a_cancel_with_rows_in_flight_seals_the_rows_written(double, runner_for):
    rows = [(f"{7000 + i}", f"c{i}@x.org") for i in range(400)]
    feed(double, rows, {})
    double.latency(0.05)
    runner = runner_for({"imis": imis_connection(double, max_concurrency=8)}, feed_task())
    location = runner.start("sync")
    job_id = location.rstrip("/").rsplit("/", 1)[-1]

    def cancel_midway() -> None:
        wait_for(lambda: len(double.entities("CsContact")) >= 40, timeout=30)
        assert runner.client.delete(f"/idms/jobs/{job_id}", headers=ADMIN).status_code == 202

    canceller = threading.Thread(target=cancel_midway)
    canceller.start()
    runner.burst()
    canceller.join()
    document = runner.finished(location)
    assert document["Status"] == "cancelled"
    written = len(double.entities("CsContact"))
    assert document["InsertedCount"] == document["ProcessedCount"] == written
    assert 40 <= written < 400  # stopped: no new rows started, those in flight counted


def test_batch_match_finds_a_page_in_one_call(double, runner_for):
    rows = [(f"{300 + i}", f"b{i}@x.org") for i in range(30)] + [("300", "again@x.org")]
    feed(double, rows, {f"{300 + i}": "old" for i in range(0, 30, 2)})
    profile = imis_connection(double, max_concurrency=4, batch_match=True)
    runner = runner_for({"imis": profile}, feed_task())
    document = runner.run("sync")
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(31, inserted=15, updated=16)
    assert dict(contacts(double))["300"] == "again@x.org"  # the repeated key: found again
    finds = [query for method, query in entity_calls(double) if method == "GET"]
    assert finds[0].startswith("ID=in%3A300%7C301%7C302")
    # One look-up for the page, and one for the repeated key (after its first write).
    assert finds[1:] == ["ID=eq%3A300&offset=0&limit=500"]
    assert len(entity_calls(double)) == 2 + 31  # then one call per row


def test_the_next_page_is_read_while_this_one_is_written(double, runner_for):
    rows = [(f"{i}", f"p{i}@x.org") for i in range(30)]
    feed(double, rows, {})
    double.latency(0.02)
    profile = imis_connection(double, max_concurrency=1)
    runner = runner_for({"imis": profile}, feed_task(action="Insert", page_size=10))
    document = runner.run("sync")
    assert counts(document) == expect(30, inserted=30)
    order = [("iqa" if r.path == "/api/iqa" else r.method) for r in double.requests[1:]]
    # The second page was asked for before the first page's last row was written.
    assert order.index("iqa", 1) < 10


# -- SQL: pages in sets ------------------------------------------------------------------


def sql_tables(db: Database, rows: int) -> None:
    db.run(f"CREATE TABLE staging (seq {db.serial}, ext_id TEXT, email TEXT)")
    db.run(f"CREATE TABLE contact (id {db.serial}, ext_id TEXT UNIQUE, email TEXT NOT NULL)")
    db.run(
        "INSERT INTO staging (ext_id, email) VALUES (:ext, :email)",
        [
            {"ext": f"E{i:03d}", "email": None if i in (18, 35) else f"e{i}@x.org"}
            for i in range(1, rows + 1)
        ],
    )
    db.run(
        "INSERT INTO contact (ext_id, email) VALUES (:ext, 'old')",
        [{"ext": f"E{i:03d}"} for i in range(1, rows + 1, 4)],
    )


def staging_task(page_size: int = 50) -> dict[str, Any]:
    return sql_task(
        "sync",
        'SELECT ext_id AS "Ext", email AS "Email" FROM staging ORDER BY seq',
        "contact",
        "InsertOrUpdate",
        page_size=page_size,
        match={"ext_id": "Ext"},
        mapping={"ext_id": "Ext", "email": "Email"},
    )


def test_a_failing_row_in_a_set_costs_only_itself(db, runner_for):
    sql_tables(db, 60)
    runner = runner_for({"db": {"kind": "sql", "url": db.url}}, staging_task())
    statements: list[str] = []
    engine = runner.sql_engine("db")
    listener = lambda *args: statements.append(args[2].split()[0].upper())  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        document = runner.run("sync")
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    assert document["Status"] == "succeeded", document["Error"]
    # Rows 18 and 35 (new keys) have no email (NOT NULL): row errors; every other row written.
    assert counts(document) == expect(60, inserted=43, updated=15, errors=2)
    assert [error["Row"] for error in document["Errors"]] == [18, 35]
    assert "email" in document["Errors"][0]["Message"].lower()
    kept = dict(db.rows("SELECT ext_id, email FROM contact"))
    assert len(kept) == 58 and kept["E001"] == "e1@x.org" and "E018" not in kept
    # The second page (rows 51-60) had no bad row: in its savepoint, one look-up, one
    # INSERT and one UPDATE of all its rows.
    last_page = statements[len(statements) - 1 - statements[::-1].index("SAVEPOINT") :]
    assert last_page == ["SAVEPOINT", "SELECT", "INSERT", "UPDATE", "RELEASE"]


def test_repeated_keys_in_a_page_see_the_rows_before_them(db, runner_for):
    db.run(f"CREATE TABLE staging (seq {db.serial}, ext_id TEXT, email TEXT)")
    db.run(f"CREATE TABLE contact (id {db.serial}, ext_id TEXT, email TEXT)")
    db.run(
        "INSERT INTO staging (ext_id, email) VALUES (:ext, :email)",
        [{"ext": ext, "email": f"{ext}-{n}"} for n, ext in enumerate("ABACBAD")],
    )
    runner = runner_for({"db": {"kind": "sql", "url": db.url}}, staging_task())
    document = runner.run("sync")
    assert counts(document) == expect(7, inserted=4, updated=3)
    assert sorted(db.rows("SELECT ext_id, email FROM contact")) == [
        ("A", "A-5"),
        ("B", "B-4"),
        ("C", "C-3"),
        ("D", "D-6"),
    ]
