"""The iUpdate engine as a user sees it: task files run through the webhook and a burst
worker, judged by the job document, its counts and the rows in the target. SQL cases run
on SQLite and on PostgreSQL (a schema of the test's own; never skipped); iMIS cases run
against the local double, served over HTTP."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_idms_webhooks.jobs.context import JobContext
from flask_idms_webhooks.testing import ImisDouble, QueryFilter
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
from tests.helpers import ADMIN

# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_connections() -> Iterator[None]:
    """Each test starts with no client or engine of an earlier test open, and leaves none
    open (every Runner's app's connections, every Database's engine)."""
    close_connections()
    yield
    close_connections()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    with open_database("sqlite", tmp_path) as database:
        yield database


@pytest.fixture
def runner_for(tmp_path: Path, redis_url: str, queue_name: str) -> Callable[..., Runner]:
    """A Runner over a task file of the given connections and tasks."""

    def make(connections: dict[str, Any], *tasks: dict[str, Any], **config: Any) -> Runner:
        path = task_file(tmp_path / "tasks.toml", connections, tasks)
        return Runner(engine_app(path, redis_url, queue_name, **config))

    return make


@pytest.fixture
def double() -> Iterator[ImisDouble]:
    double = ImisDouble("manager", "secret")
    with double.serve():
        yield double


def sql_connection(db: Database) -> dict[str, Any]:
    return {"db": {"kind": "sql", "url": db.url}}


def imis_connection(double: ImisDouble, **options: Any) -> dict[str, Any]:
    """A profile for the double; its password, like any, comes from the environment."""
    os.environ["ENGINE_TEST_IMIS_PASSWORD"] = double.password
    return {
        "kind": "imis",
        "base_url": double.base_url,
        "username": double.username,
        "password": "${ENGINE_TEST_IMIS_PASSWORD}",
        **options,
    }


# -- the SQL scenario: a staging table into a contact table -------------------------------

STAGING = [(1, "NEW", "new@x.org"), (2, "ONE", "one@x.org"), (3, "TWO", "two@x.org")]
#: The contact rows before each run: ONE has one record, TWO two, OTHER is never touched.
CONTACTS = [
    ("ONE", "one@old.org", "I"),
    ("TWO", "two-a@old.org", "I"),
    ("TWO", "two-b@old.org", "I"),
    ("OTHER", "other@old.org", "I"),
]
SOURCE = 'SELECT ext_id AS "ExtId", email AS "Email" FROM staging ORDER BY seq'
MAPPING = {"ext_id": "ExtId", "email": "Email", "status": {"value": "A"}}
MATCH = {"ext_id": "ExtId"}


def create_tables(db: Database, staging: Any = STAGING, contacts: Any = CONTACTS) -> None:
    db.run("CREATE TABLE staging (seq INTEGER PRIMARY KEY, ext_id VARCHAR(20), email VARCHAR(100))")
    db.run(
        f"CREATE TABLE contact (id {db.serial}, ext_id VARCHAR(20),"
        " email VARCHAR(100) NOT NULL,"
        " status VARCHAR(1) NOT NULL DEFAULT 'A' CHECK (status IN ('A', 'I')), score INTEGER)"
    )
    if staging:
        db.run(
            "INSERT INTO staging VALUES (:seq, :ext, :email)",
            [{"seq": seq, "ext": ext, "email": email} for seq, ext, email in staging],
        )
    if contacts:
        db.run(
            "INSERT INTO contact (ext_id, email, status) VALUES (:ext, :email, :status)",
            [{"ext": ext, "email": email, "status": status} for ext, email, status in contacts],
        )


def contacts(db: Database) -> list[tuple[Any, ...]]:
    """The contact table as (ext_id, email, status), sorted."""
    return sorted(
        db.rows("SELECT ext_id, email, status FROM contact"),
        key=lambda row: tuple("" if value is None else str(value) for value in row),
    )


def table_after(*, added: tuple[str, ...] = (), changed: tuple[str, ...] = (), gone=()) -> list:
    """CONTACTS after a run: staging rows ``added`` as new records, the records of
    ``changed`` ext ids set to the staging row's e-mail and status A, ``gone`` deleted."""
    staged = {ext: email for _, ext, email in STAGING}
    rows = [
        (ext, staged[ext], "A") if ext in changed else (ext, email, status)
        for ext, email, status in CONTACTS
        if ext not in gone
    ]
    rows += [(ext, staged[ext], "A") for ext in added]
    return sorted(rows)


# Each action against the three staging rows: NEW has no match, ONE one, TWO two.
MATRIX = [
    pytest.param(
        "Insert", {}, expect(3, inserted=3), table_after(added=("NEW", "ONE", "TWO")),
        id="Insert-always-inserts",
    ),
    pytest.param(
        "InsertWithMatching", {}, expect(3, inserted=1, skipped=2), table_after(added=("NEW",)),
        id="InsertWithMatching",
    ),
    pytest.param(
        "Update", {}, expect(3, updated=2, skipped=1), table_after(changed=("ONE", "TWO")),
        id="Update-updates-every-match",
    ),
    pytest.param(
        "Update", {"skip_if_multiple_matches": True}, expect(3, updated=1, skipped=2),
        table_after(changed=("ONE",)), id="Update-skip_if_multiple_matches",
    ),
    pytest.param(
        "InsertOrUpdate", {}, expect(3, inserted=1, updated=2),
        table_after(added=("NEW",), changed=("ONE", "TWO")), id="InsertOrUpdate",
    ),
    pytest.param(
        "InsertOrUpdate", {"skip_if_multiple_matches": True},
        expect(3, inserted=1, updated=1, skipped=1),
        table_after(added=("NEW",), changed=("ONE",)), id="InsertOrUpdate-skip_if_multiple",
    ),
    pytest.param(
        "InsertOrUpdate", {"insert_only_when_no_match": True},
        expect(3, inserted=1, skipped=2), table_after(added=("NEW",)),
        id="InsertOrUpdate-insert_only_when_no_match",
    ),
    pytest.param(
        "Delete", {}, expect(3, updated=2, skipped=1, deleted=2),
        table_after(gone=("ONE", "TWO")), id="Delete-deletes-every-match",
    ),
    pytest.param(
        "Delete", {"skip_if_multiple_matches": True},
        expect(3, updated=1, skipped=2, deleted=1), table_after(gone=("ONE",)),
        id="Delete-skip_if_multiple_matches",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("action", "options", "expected", "table"), MATRIX)
def test_each_action_and_match_outcome(db, runner_for, action, options, expected, table):
    create_tables(db)
    match = {} if action == "Insert" else MATCH
    runner = runner_for(
        sql_connection(db),
        sql_task("sync", SOURCE, "contact", action, match=match, mapping=MAPPING, **options),
    )
    document = runner.run("sync")
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expected
    assert document["Errors"] == []
    assert contacts(db) == table


def test_insert_ignores_matches_even_with_a_match_rule(db, runner_for):
    create_tables(db)
    runner = runner_for(
        sql_connection(db),
        sql_task(
            "sync", SOURCE, "contact", "Insert", match=MATCH, mapping=MAPPING,
            skip_if_multiple_matches=True, skip_blank_match=True,
        ),
    )  # fmt: skip
    assert counts(runner.run("sync")) == expect(3, inserted=3)
    assert contacts(db) == table_after(added=("NEW", "ONE", "TWO"))


@pytest.mark.parametrize(
    ("skip_blank", "expected", "changed"),
    [
        (True, expect(3, updated=1, skipped=2), {"ONE"}),
        # Without the option a NULL matches NULL, and blanks match blanks.
        (False, expect(3, updated=3), {"ONE", None, "  "}),
    ],
)
def test_skip_blank_match(db, runner_for, skip_blank, expected, changed):
    staging = [(1, None, "nobody@x.org"), (2, "  ", "spaces@x.org"), (3, "ONE", "one@x.org")]
    before = [(None, "null@old.org", "I"), ("  ", "blank@old.org", "I"), ("ONE", "one@old", "I")]
    create_tables(db, staging, before)
    runner = runner_for(
        sql_connection(db),
        sql_task(
            "sync", SOURCE, "contact", "Update", match=MATCH,
            mapping={"email": "Email", "status": {"value": "A"}}, skip_blank_match=skip_blank,
        ),
    )  # fmt: skip
    document = runner.run("sync")
    assert counts(document) == expected
    staged = {ext: email for _, ext, email in staging}
    after = {
        ext: (staged[ext], "A") if ext in changed else (email, status)
        for ext, email, status in before
    }
    assert {ext: (email, status) for ext, email, status in contacts(db)} == after


def test_skip_blank_match_never_inserts_a_blank(db, runner_for):
    create_tables(db, [(1, None, "a@x.org"), (2, "", "b@x.org"), (3, "NEW", "c@x.org")], [])
    runner = runner_for(
        sql_connection(db),
        sql_task(
            "sync", SOURCE, "contact", "InsertOrUpdate", match=MATCH, mapping=MAPPING,
            skip_blank_match=True,
        ),
    )  # fmt: skip
    assert counts(runner.run("sync")) == expect(3, inserted=1, skipped=2)
    assert contacts(db) == [("NEW", "c@x.org", "A")]


def test_constants_in_the_mapping(db, runner_for):
    create_tables(db, contacts=[("ONE", "one@old.org", "A")])
    runner = runner_for(
        sql_connection(db),
        sql_task(
            "sync", SOURCE, "contact", "InsertOrUpdate", match=MATCH,
            mapping={
                "ext_id": "ExtId", "email": "Email",
                "status": {"value": "I"}, "score": {"value": 42},
            },
        ),
    )  # fmt: skip
    assert counts(runner.run("sync")) == expect(3, inserted=2, updated=1)
    assert db.rows("SELECT ext_id, status, score FROM contact ORDER BY ext_id") == [
        ("NEW", "I", 42),
        ("ONE", "I", 42),
        ("TWO", "I", 42),
    ]


def test_an_empty_mapping_passes_the_columns_through(db, runner_for):
    create_tables(db, contacts=[("ONE", "one@old.org", "I")])
    query = "SELECT ext_id, email FROM staging ORDER BY seq"
    runner = runner_for(
        sql_connection(db),
        sql_task("sync", query, "contact", "InsertOrUpdate", match={"ext_id": "ext_id"}),
    )
    assert counts(runner.run("sync")) == expect(3, inserted=2, updated=1)
    # status is not in the source: new rows take the column default, ONE keeps its value.
    assert contacts(db) == [
        ("NEW", "new@x.org", "A"),
        ("ONE", "one@x.org", "I"),
        ("TWO", "two@x.org", "A"),
    ]


def test_row_errors_are_counted_and_the_rest_of_the_page_is_written(db, runner_for):
    create_tables(db, staging=[], contacts=[])
    db.run("ALTER TABLE staging ADD COLUMN status VARCHAR(1)")
    db.run(
        "INSERT INTO staging VALUES (:seq, :ext, :email, :status)",
        [
            {"seq": 1, "ext": "A1", "email": "a1@x.org", "status": "A"},
            {"seq": 2, "ext": "A2", "email": None, "status": "A"},  # NOT NULL
            {"seq": 3, "ext": "A3", "email": "a3@x.org", "status": "Z"},  # CHECK
            {"seq": 4, "ext": "A4", "email": "a4@x.org", "status": "I"},
            {"seq": 5, "ext": "A5", "email": None, "status": "I"},  # NOT NULL, alone in a page
        ],
    )
    runner = runner_for(
        sql_connection(db),
        sql_task(
            "sync",
            'SELECT ext_id AS "ExtId", email AS "Email", status AS "Status"'
            " FROM staging ORDER BY seq",
            "contact",
            "Insert",
            page_size=4,
            mapping={"ext_id": "ExtId", "email": "Email", "status": "Status"},
        ),
    )
    document = runner.run("sync")
    assert document["Status"] == "succeeded"
    assert counts(document) == expect(5, inserted=2, errors=3)
    assert [error["Row"] for error in document["Errors"]] == [2, 3, 5]
    not_null, check, last = (error["Message"] for error in document["Errors"])
    for message in (not_null, check, last):
        assert message.startswith("table 'contact': ")
        assert "Traceback" not in message and "[SQL:" not in message
    assert "null" in not_null.lower() and "email" in not_null.lower()
    assert "check" in check.lower()
    assert contacts(db) == [("A1", "a1@x.org", "A"), ("A4", "a4@x.org", "I")]


def test_a_row_refused_at_its_second_match_leaves_nothing_behind(db, runner_for):
    create_tables(db)
    db.run("CREATE UNIQUE INDEX contact_email ON contact (email)")
    runner = runner_for(
        sql_connection(db),
        sql_task("sync", SOURCE, "contact", "Update", match=MATCH, mapping=MAPPING),
    )
    document = runner.run("sync")
    # TWO's two records cannot both take two@x.org: the row is an error, and its first
    # record's update is undone with it.
    assert counts(document) == expect(3, updated=1, skipped=1, errors=1)
    [error] = document["Errors"]
    assert error["Row"] == 3 and error["Message"].startswith("table 'contact': ")
    assert contacts(db) == table_after(changed=("ONE",))


@pytest.mark.parametrize(
    ("action", "second"),
    [
        ("InsertOrUpdate", expect(3, updated=3)),
        ("InsertWithMatching", expect(3, skipped=3)),
    ],
)
def test_a_second_run_over_the_same_rows_inserts_nothing(db, runner_for, action, second):
    create_tables(db, contacts=[])
    runner = runner_for(
        sql_connection(db),
        sql_task("sync", SOURCE, "contact", action, match=MATCH, mapping=MAPPING),
    )
    assert counts(runner.run("sync")) == expect(3, inserted=3)
    after_first = contacts(db)
    assert counts(runner.run("sync")) == second
    assert contacts(db) == after_first == [(ext, email, "A") for _, ext, email in STAGING]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELEC ext_id FROM staging", "syntax error"),
        ('SELECT ext_id AS "ExtId" FROM no_such_table', "no_such_table"),
    ],
    ids=["bad-sql", "missing-table"],
)
def test_a_source_that_cannot_be_read_fails_the_job(db, runner_for, query, reason):
    create_tables(db)
    runner = runner_for(
        sql_connection(db), sql_task("sync", query, "contact", "Update", match=MATCH)
    )
    document = runner.run("sync")
    assert document["Status"] == "failed" and document["Success"] is False
    assert document["Error"]["Type"] == "SourceReadError"
    message = document["Error"]["Message"]
    assert message.startswith("cannot read the SQL source")
    assert reason in message.lower()
    assert document["ProcessedCount"] == 0 and document["RowCount"] is None
    assert contacts(db) == sorted(CONTACTS)


@pytest.mark.parametrize(
    ("target", "missing"),
    [
        ({"mapping": {"email": "Mail", "ext_id": "ExtId"}, "match": MATCH}, "Mail"),
        ({"mapping": {"email": "Email"}, "match": {"ext_id": "ExternalId"}}, "ExternalId"),
    ],
    ids=["mapping", "match"],
)
def test_a_column_the_source_lacks_fails_the_job_naming_it(db, runner_for, target, missing):
    create_tables(db)
    runner = runner_for(
        sql_connection(db), sql_task("sync", SOURCE, "contact", "InsertOrUpdate", **target)
    )
    document = runner.run("sync")
    assert document["Status"] == "failed"
    assert document["Error"]["Type"] == "MappingError"
    message = document["Error"]["Message"]
    assert missing in message and "ExtId, Email" in message
    assert document["ProcessedCount"] == 0
    assert contacts(db) == sorted(CONTACTS)


MEMBERS = [
    # id, ext_id, chapter, joined
    (1, "M1", "North", "2024-01-15"),
    (2, "M2", "North", "2024-02-15"),  # excluded by CsContact1.ImisId
    (3, "M3", "South", "2024-03-15"),  # chapter not listed
    (4, "M4", "East", "2024-06-30"),  # on the Between's upper bound
    (5, "M5", "East", "2024-07-01"),  # after it
    (6, "M6", "North", "2023-12-31"),  # before it
    (7, "M7", "East", "2024-04-01"),  # excluded by CsContact2.ImisId when given
]
BINDING_QUERY = """
SELECT ext_id AS "ExtId", ext_id || '@x.org' AS "Email" FROM member
WHERE id <> :CsContact1_ImisId
  AND (:CsContact2_ImisId IS NULL OR id <> :CsContact2_ImisId)
  AND joined BETWEEN :Joined_from AND :Joined_to
  AND chapter IN :Chapter
ORDER BY id
"""
BINDING_FILTERS = [
    {"business_object": "CsContact1", "column": "ImisId", "type": "Int32", "prompt": "Required"},
    {"business_object": "CsContact2", "column": "ImisId", "type": "Int32"},
    {"business_object": "Member", "column": "Joined", "operator": "Between", "type": "DateTime"},
    {"business_object": "Member", "column": "Chapter", "operator": "In"},
]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (
            {"CsContact1.ImisId": 2, "Joined": ["2024-01-01", "2024-06-30"],
             "Chapter": ["North", "East"]},
            ["M1", "M4", "M7"],
        ),
        (
            {"CsContact1.ImisId": 2, "CsContact2.ImisId": 7,
             "Joined": ["2023-01-01", "2024-12-31"], "Chapter": ["East", "North"]},
            ["M1", "M4", "M5", "M6"],
        ),
    ],
)  # fmt: skip
def test_query_parameters_reach_the_sql_binds(db, runner_for, parameters, expected):
    create_tables(db, staging=[], contacts=[])
    db.run("CREATE TABLE member (id INTEGER PRIMARY KEY, ext_id VARCHAR(5),"
           " chapter VARCHAR(10), joined DATE)")  # fmt: skip
    db.run(
        "INSERT INTO member VALUES (:id, :ext, :chapter, :joined)",
        [
            {"id": i, "ext": ext, "chapter": chapter, "joined": joined}
            for i, ext, chapter, joined in MEMBERS
        ],
    )
    runner = runner_for(
        sql_connection(db),
        sql_task(
            "sync", BINDING_QUERY, "contact", "Insert", filters=BINDING_FILTERS,
            mapping={"ext_id": "ExtId", "email": "Email"},
        ),
    )  # fmt: skip
    document = runner.run("sync", parameters)
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(len(expected), inserted=len(expected))
    assert document["QueryParameters"]["CsContact1.ImisId"] == {"Value": 2, "Source": "request"}
    assert document["QueryParameters"]["Chapter"]["Value"] == parameters["Chapter"]
    assert [row[0] for row in db.rows("SELECT ext_id FROM contact ORDER BY ext_id")] == expected


def cancel_once_running(runner: Runner, job_id: str) -> threading.Thread:
    """A thread that cancels the job (DELETE, admin) as soon as it is in progress."""

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            live = runner.state.store.live(job_id)
            if live and b'"in progress"' in live:
                answer = runner.client.delete(f"/idms/jobs/{job_id}", headers=ADMIN)
                assert answer.status_code == 202
                return
            time.sleep(0.01)

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    return canceller


def many_staged_rows(db: Database, rows: int) -> None:
    create_tables(db, staging=[], contacts=[])
    db.run(
        "INSERT INTO staging VALUES (:seq, :ext, :email)",
        [{"seq": i, "ext": f"E{i}", "email": f"e{i}@x.org"} for i in range(1, rows + 1)],
    )


def test_a_cancel_from_another_thread_stops_a_running_job(sqlite_db, runner_for):
    rows = 20_000
    many_staged_rows(sqlite_db, rows)
    runner = runner_for(
        sql_connection(sqlite_db),
        sql_task("sync", SOURCE, "contact", "Insert", page_size=100, mapping=MAPPING),
    )
    location = runner.start("sync")
    canceller = cancel_once_running(runner, location.split("/jobs/")[1].split("?")[0])
    runner.burst()
    canceller.join()
    document = runner.finished(location)
    assert document["Status"] == "cancelled" and document["Success"] is False
    assert document["Error"] == {"Type": "Cancelled", "Message": "Cancelled by request."}
    assert document["RowCount"] == rows
    assert document["ProcessedCount"] < rows
    assert document["InsertedCount"] == sqlite_db.scalar("SELECT COUNT(*) FROM contact")


def test_a_cancel_mid_page_counts_only_what_the_table_keeps(db, runner_for):
    """The cancel lands while row 50 is written (a slow target), in pages of 30 rows: the
    engine stops before row 51, and what the document counts is what the table holds."""
    many_staged_rows(db, 200)
    runner = runner_for(
        sql_connection(db),
        sql_task("sync", SOURCE, "contact", "Insert", page_size=30, mapping=MAPPING),
    )
    location = runner.start("sync")
    job_id = location.split("/jobs/")[1].split("?")[0]

    def slow_row_50(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("INSERT INTO contact") and "E50" in str(parameters).split("'"):
            assert runner.client.delete(f"/idms/jobs/{job_id}", headers=ADMIN).status_code == 202
            time.sleep(JobContext.CANCEL_CHECK_SECONDS + 0.1)

    engine = runner.sql_engine("db")  # the app's own, which its jobs write through
    sa.event.listen(engine, "before_cursor_execute", slow_row_50)
    try:
        runner.burst()
    finally:
        sa.event.remove(engine, "before_cursor_execute", slow_row_50)
    document = runner.finished(location)
    assert document["Status"] == "cancelled"
    # Rows 31-50 were written in the second page's transaction, which the cancel undid:
    # they are counted as nothing, as nothing of them stays.
    assert counts(document) == expect(200, inserted=30)
    assert db.scalar("SELECT COUNT(*) FROM contact") == 30


# -- the iMIS double ----------------------------------------------------------------------

CHANGES = [
    # ID, FirstName, LastName, Email, Status, MemberType
    ("101", "Ann", "Adams", "ann@new.org", "A", "R"),
    ("102", "Bob", "Allen", "bob@new.org", "A", "S"),
    ("103", "Cy", "Avery", "cy@new.org", "I", "R"),  # fixed filter Status = A drops it
    ("104", "Di", "Baker", "di@new.org", "A", "R"),  # LastName does not start with A
    ("105", "Ed", "Ames", "ed@new.org", "A", "X"),  # MemberType not in R, S
    ("106", "Flo", "Abbot", "flo@new.org", "A", "R"),  # not in CsContact
]
EXISTING = [
    {"ID": "101", "LastName": "Adams", "Email": "ann@old.org"},
    {"ID": "102", "LastName": "Allen", "Email": "bob@old.org"},
    {"ID": "104", "LastName": "Baker", "Email": "di@old.org"},
]
IQA_FILTERS = [
    {"business_object": "Changes", "column": "LastName", "operator": "StartsWith"},
    {"business_object": "Changes", "column": "FirstName"},
    {"business_object": "Changes", "column": "Status", "prompt": "None", "default": "A"},
    {"business_object": "Changes", "column": "MemberType", "operator": "In"},
]
PARAMETERS = {"LastName": "A", "MemberType": ["R", "S"]}
#: QueryName, paging, then one positional parameter per prompt filter: the blank
#: FirstName is an empty ``parameter=``, the fixed Status takes no slot.
IQA_QUERY = (
    "QueryName=%24%2FSync%2FChanges&offset=0&limit=100&parameter=A&parameter=&parameter=R%2CS"
)


def seed_double(double: ImisDouble) -> None:
    names = ("ID", "FirstName", "LastName", "Email", "Status", "MemberType")
    double.add_entities("Changes", [dict(zip(names, row, strict=True)) for row in CHANGES])
    double.add_entities("CsContact", EXISTING)
    double.add_query(
        "$/Sync/Changes",
        entity="Changes",
        columns=["ID", "Email", "LastName"],
        filters=[
            QueryFilter("Changes", "LastName", "StartsWith"),
            QueryFilter("Changes", "FirstName", "Equal"),
            QueryFilter("Changes", "Status", "Equal", prompt="None", value="A"),
            QueryFilter("Changes", "MemberType", "In"),
        ],
    )


def imis_task(action: str, connection: str = "imis", **target: Any) -> dict[str, Any]:
    return {
        "id": "sync",
        "source": {"connection": "imis", "query": "$/Sync/Changes", "filters": IQA_FILTERS},
        "target": {
            "connection": connection,
            "entity": "CsContact",
            "action": action,
            "match": {"ID": "ID"},
            **target,
        },
    }


def emails(double: ImisDouble) -> dict[str, str]:
    return {record["ID"]: record["Email"] for record in double.entities("CsContact")}


def iqa_queries(double: ImisDouble) -> list[str]:
    return [r.query for r in double.requests if r.path == "/api/iqa"]


OLD = {"101": "ann@old.org", "102": "bob@old.org", "104": "di@old.org"}


@pytest.mark.parametrize(
    ("action", "expected", "after"),
    [
        (
            "Update",
            expect(3, updated=2, skipped=1),
            {**OLD, "101": "ann@new.org", "102": "bob@new.org"},
        ),
        (
            "InsertOrUpdate",
            expect(3, inserted=1, updated=2),
            {**OLD, "101": "ann@new.org", "102": "bob@new.org", "106": "flo@new.org"},
        ),
        ("Delete", expect(3, updated=2, skipped=1, deleted=2), {"104": "di@old.org"}),
    ],
)
@pytest.mark.parametrize("max_concurrency", [1, 4])
def test_an_iqa_into_an_imis_entity(double, runner_for, action, expected, after, max_concurrency):
    seed_double(double)
    mapping = {"ID": "ID", "Email": "Email"}
    profile = imis_connection(double, max_concurrency=max_concurrency)
    runner = runner_for({"imis": profile}, imis_task(action, mapping=mapping))
    document = runner.run("sync", PARAMETERS)
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expected
    assert iqa_queries(double) == [IQA_QUERY]
    assert emails(double) == after
    finds = [r.query for r in double.requests if r.method == "GET" and r.path == "/api/CsContact"]
    wanted = [f"ID=eq%3A{key}&offset=0&limit=500" for key in ("101", "102", "106")]
    # One row at a time, in source order; several at once, in any order.
    assert finds == wanted if max_concurrency == 1 else sorted(finds) == wanted


def test_every_positional_parameter_blank(double, runner_for):
    seed_double(double)
    runner = runner_for(
        {"imis": imis_connection(double)},
        imis_task("Update", mapping={"Email": "Email"}),
    )
    document = runner.run("sync")
    # Blank optional filters are dropped: every Status A change is read.
    assert counts(document) == expect(5, updated=3, skipped=2)
    assert iqa_queries(double) == [
        "QueryName=%24%2FSync%2FChanges&offset=0&limit=100&parameter=&parameter=&parameter="
    ]


def test_throttling_and_server_errors_are_retried_transparently(double, runner_for):
    seed_double(double)
    runner = runner_for(
        {"imis": imis_connection(double, max_concurrency=1)},  # the requests in order
        imis_task("Update", mapping={"Email": "Email"}),
    )
    # Request 1 is the login, 2 the IQA page (refused: the token expired), 3 the new login,
    # 4 the IQA page again, then one find and one PUT per row.
    double.expire_token_once()
    double.fail_nth(5, 500)  # the first find
    double.fail_nth(7, 429, retry_after=0)  # the first PUT
    document = runner.run("sync", PARAMETERS)
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(3, updated=2, skipped=1)
    assert emails(double) == {**OLD, "101": "ann@new.org", "102": "bob@new.org"}
    sent = [(r.method, r.path) for r in double.requests]
    assert sent[:8] == [
        ("POST", "/token"),
        ("GET", "/api/iqa"),  # 401
        ("POST", "/token"),
        ("GET", "/api/iqa"),
        ("GET", "/api/CsContact"),  # 500
        ("GET", "/api/CsContact"),
        ("PUT", "/api/CsContact/101"),  # 429
        ("PUT", "/api/CsContact/101"),
    ]
    assert sent.count(("PUT", "/api/CsContact/101")) == 2


def test_a_write_the_double_rejects_is_a_row_error_with_its_message(double, runner_for):
    seed_double(double)
    double.add_validation(
        "CsContact", "Email", lambda value: not str(value).startswith("bob"), "Bob may not."
    )
    runner = runner_for(
        {"imis": imis_connection(double)},
        imis_task("InsertOrUpdate", mapping={"ID": "ID", "Email": "Email"}),
    )
    document = runner.run("sync", PARAMETERS)
    assert document["Status"] == "succeeded"
    assert counts(document) == expect(3, inserted=1, updated=1, errors=1)
    assert document["Errors"] == [{"Row": 2, "Message": "Update CsContact: Bob may not."}]
    assert emails(double) == {**OLD, "101": "ann@new.org", "106": "flo@new.org"}


def test_an_unknown_query_fails_the_job(double, runner_for):
    seed_double(double)
    task = imis_task("Update", mapping={"Email": "Email"})
    task["source"]["query"] = "$/Sync/Nowhere"
    runner = runner_for({"imis": imis_connection(double)}, task)
    document = runner.run("sync", PARAMETERS)
    assert document["Status"] == "failed"
    assert document["Error"]["Type"] == "SourceReadError"
    assert "$/Sync/Nowhere" in document["Error"]["Message"]
    assert "404" in document["Error"]["Message"]
    assert emails(double) == OLD


def test_a_source_failing_for_good_fails_the_job(double, runner_for):
    seed_double(double)
    runner = runner_for(
        {"imis": imis_connection(double, retries=2)},
        imis_task("Update", mapping={"Email": "Email"}),
    )
    for nth in (2, 3, 4):  # the IQA request and both its retries
        double.fail_nth(nth, 503, retry_after=0)
    document = runner.run("sync", PARAMETERS)
    assert document["Status"] == "failed"
    assert document["Error"]["Type"] == "SourceReadError"
    message = document["Error"]["Message"]
    assert "$/Sync/Changes" in message and "503" in message and "3 attempts" in message
    assert [(r.method, r.path) for r in double.requests] == [("POST", "/token")] + [
        ("GET", "/api/iqa")
    ] * 3
    assert emails(double) == OLD


def iqa_into_contacts() -> dict[str, Any]:
    """An IQA upserted into the SQL table ``contact`` by ``ext_id``, status set to "A"."""
    task = imis_task(
        "InsertOrUpdate",
        connection="db",
        match={"ext_id": "ID"},
        mapping={"ext_id": "ID", "email": "Email", "status": {"value": "A"}},
    )
    task["target"]["entity"] = "contact"
    return task


def test_an_iqa_into_a_sql_table(double, db, runner_for):
    seed_double(double)
    create_tables(db, staging=[], contacts=[("101", "ann@old.org", "I")])
    task = iqa_into_contacts()
    runner = runner_for({"imis": imis_connection(double), **sql_connection(db)}, task)
    document = runner.run("sync", PARAMETERS)
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(3, inserted=2, updated=1)
    assert contacts(db) == [
        ("101", "ann@new.org", "A"),
        ("102", "bob@new.org", "A"),
        ("106", "flo@new.org", "A"),
    ]


# -- connections: every app its own ------------------------------------------------------


def test_two_apps_of_one_task_file_share_no_connection_and_each_closes_its_own(
    double, sqlite_db, tmp_path, redis_url, queue_name, monkeypatch
):
    """Two apps built from one task file: each makes its own iMIS client and SQL engine
    on its first job and reuses them for its next; neither uses the other's (there is no
    process-wide cache), and ``state.connections.close()`` closes what its app made and
    nothing of the other's."""
    from flask_idms_webhooks.iupdate import imis, sql

    made: list[Any] = []
    real_create_engine, real_client = sql.create_engine, imis.ImisClient

    def recording_create_engine(url: str) -> sa.Engine:
        made.append(real_create_engine(url))
        return made[-1]

    class RecordingClient(imis.ImisClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(sql, "create_engine", recording_create_engine)
    monkeypatch.setattr(imis, "ImisClient", RecordingClient)

    def engines() -> list[sa.Engine]:
        return [one for one in made if isinstance(one, sa.Engine)]

    def clients() -> list[Any]:
        return [one for one in made if isinstance(one, real_client)]

    seed_double(double)
    create_tables(sqlite_db, staging=[], contacts=[])
    task = iqa_into_contacts()
    profiles = {"imis": imis_connection(double), **sql_connection(sqlite_db)}
    path = task_file(tmp_path / "tasks.toml", profiles, [task])
    first = Runner(engine_app(path, redis_url, queue_name))
    second = Runner(engine_app(path, redis_url, queue_name))
    assert first.state.connections is not second.state.connections
    assert made == []  # nothing connects before a job needs it

    assert counts(first.run("sync", PARAMETERS)) == expect(3, inserted=3)
    assert counts(first.run("sync", PARAMETERS)) == expect(3, updated=3)
    assert (len(clients()), len(engines())) == (1, 1)  # the first app's, made once
    assert counts(second.run("sync", PARAMETERS)) == expect(3, updated=3)
    assert (len(clients()), len(engines())) == (2, 2)  # the second app made its own
    client_a, client_b = clients()
    engine_a, engine_b = engines()
    assert client_a is not client_b and engine_a is not engine_b
    imis_profile = first.state.tasks["sync"].connections["imis"]
    assert first.state.connections.imis_client(imis_profile) is client_a
    assert second.state.connections.imis_client(imis_profile) is client_b
    assert (first.sql_engine("db"), second.sql_engine("db")) == (engine_a, engine_b)
    assert len(made) == 4

    pool_a, pool_b = engine_a.pool, engine_b.pool
    assert pool_a.checkedin() >= 1 and pool_b.checkedin() >= 1  # the jobs' connections
    first.state.connections.close()
    assert pool_a.checkedin() == 0 and engine_a.pool.checkedin() == 0
    sent = len(double.requests)
    with pytest.raises(RuntimeError, match="closed"):
        client_a.find("CsContact", {"ID": "101"})
    assert len(double.requests) == sent  # a closed client sends nothing
    # The second app's connections are untouched: still pooled, and its next job runs on them.
    assert engine_b.pool is pool_b and pool_b.checkedin() >= 1
    assert counts(second.run("sync", PARAMETERS)) == expect(3, updated=3)
    assert len(made) == 4
    second.state.connections.close()
    assert pool_b.checkedin() == 0
    with pytest.raises(RuntimeError, match="closed"):
        client_b.find("CsContact", {"ID": "101"})
