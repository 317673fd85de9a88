"""The engine end to end: the webhook, a real forking worker (``flask idms-webhooks
worker``, a separate process), and the iMIS double served by this test process over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flask_idms_webhooks.testing import ImisDouble, QueryFilter
from tests.engine_e2e_app import create_app
from tests.engine_support import (
    Database,
    Runner,
    assert_consistent,
    close_connections,
    counts,
    expect,
    sql_task,
    task_file,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

APP = "tests.engine_e2e_app:create_app"


@pytest.fixture(autouse=True)
def fresh_connections() -> Iterator[None]:
    close_connections()
    yield
    close_connections()


@pytest.fixture
def e2e(tmp_path, redis_url, queue_name, monkeypatch, start_worker):
    """(write the task file and start a forking worker on it) -> Runner of this process."""

    def start(
        tasks: list[dict[str, Any]], imis: Mapping[str, Any] | None = None, **env: str
    ) -> Runner:
        connections = {
            "imis": {
                "kind": "imis",
                "base_url": "${ENGINE_E2E_IMIS_URL}",
                "username": "manager",
                "password": "${ENGINE_E2E_IMIS_PASSWORD}",
                **(imis or {}),
            },
            "db": {"kind": "sql", "url": "${ENGINE_E2E_DB_URL}"},
        }
        path = task_file(tmp_path / "tasks.toml", connections, tasks)
        env = {
            "ENGINE_E2E_IMIS_URL": "http://127.0.0.1:9",  # no double: a task that needs one fails
            "ENGINE_E2E_DB_URL": f"sqlite:///{tmp_path / 'e2e.db'}",
            "ENGINE_E2E_IMIS_PASSWORD": "secret",
            **env,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # this process loads the same file
        start_worker(app=APP, IDMS_WEBHOOKS_TASKS_FILE=str(path), **env)
        return Runner(
            create_app(
                IDMS_WEBHOOKS_REDIS_URL=redis_url,
                IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
                IDMS_WEBHOOKS_TASKS_FILE=str(path),
                IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=2,
            )
        )

    return start


def poll_until_finished(runner: Runner, location: str, timeout: float = 60) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status, document = runner.poll(location)
        assert status in (200, 202), document
        return document if status == 200 else None

    document: dict[str, Any] = wait_for(finished, timeout=timeout, interval=0.1)
    assert_consistent(document)
    assert runner.poll(location) == (200, document)  # sealed: the same body every time
    return document


ROWS, EXISTING = 40, 30


@pytest.fixture
def double() -> Iterator[ImisDouble]:
    double = ImisDouble("manager", "secret")
    double.add_entities(
        "Changes",
        [{"ID": str(1000 + i), "LastName": f"Name{i}", "Email": f"m{i}@new.org"}
         for i in range(1, ROWS + 1)],
    )  # fmt: skip
    double.add_entities(
        "CsContact",
        [{"ID": str(1000 + i), "Email": f"m{i}@old.org"} for i in range(1, EXISTING + 1)],
    )
    double.add_query(
        "$/Sync/Changes",
        entity="Changes",
        columns=["ID", "Email"],
        filters=[QueryFilter("Changes", "LastName", "StartsWith")],
    )
    with double.serve():
        yield double


def expire_the_token_during(double: ImisDouble, request_number: int) -> threading.Thread:
    """Once the double has seen ``request_number`` requests, expire the token (the next
    authenticated request is refused with a 401)."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while len(double.requests) < request_number and time.monotonic() < deadline:
            time.sleep(0.005)
        double.expire_token_once()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def test_imis_to_imis_through_faults_on_a_forking_worker(e2e, double):
    runner = e2e(
        [
            {
                "id": "sync",
                "source": {
                    "connection": "imis",
                    "query": "$/Sync/Changes",
                    # One page: the next page is read while a page is written, so a
                    # second page's request would land among the rows' at no fixed place.
                    "page_size": 40,
                    "filters": [
                        {"business_object": "Changes", "column": "LastName",
                         "operator": "StartsWith"},
                    ],
                },
                "target": {
                    "connection": "imis", "entity": "CsContact", "action": "Update",
                    "match": {"ID": "ID"}, "mapping": {"Email": "Email"},
                },
            }
        ],
        ENGINE_E2E_IMIS_URL=double.base_url,
        imis={"max_concurrency": 1},  # one row at a time: the requests in order
    )  # fmt: skip
    # Requests: 1 the login, 2 the IQA page, then a find and a PUT per row.
    double.fail_nth(6, 500)  # the second row's PUT
    double.fail_nth(13, 429, retry_after=1)  # the fifth row's PUT
    watcher = expire_the_token_during(double, 13)  # while the client waits out the 429
    location = runner.start("sync")
    document = poll_until_finished(runner, location)
    watcher.join()
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(ROWS, updated=EXISTING, skipped=ROWS - EXISTING)
    assert document["Errors"] == []
    assert double.entities("CsContact") == [
        {"ID": str(1000 + i), "Email": f"m{i}@new.org"} for i in range(1, EXISTING + 1)
    ]
    sent = [(r.method, r.path, r.query) for r in double.requests]
    assert sent[5] == sent[6] == ("PUT", "/api/CsContact/1002", "")  # the 500, retried
    assert sent[12] == sent[13] == ("PUT", "/api/CsContact/1005", "")  # the 429, retried
    assert sent[14] == ("POST", "/token", "")  # the retry was refused: a new login
    assert sent[15] == sent[13]
    assert [r for r in sent if r[1] == "/token"] == [("POST", "/token", "")] * 2
    pages = [r[2] for r in sent if r[1] == "/api/iqa"]
    assert pages == ["QueryName=%24%2FSync%2FChanges&offset=0&limit=40&parameter="]
    # 1 + 1 page + 40 finds + 30 PUTs, and the 500, the 429, the 401 and the new login.
    assert len(sent) == 1 + 1 + ROWS + EXISTING + 4


def test_a_chained_pair_over_sql_on_a_forking_worker(e2e, tmp_path):
    database = Database("sqlite", f"sqlite:///{tmp_path / 'e2e.db'}")
    database.run("CREATE TABLE staging (seq INTEGER PRIMARY KEY, ext_id TEXT, email TEXT)")
    database.run(
        "CREATE TABLE contact (id INTEGER PRIMARY KEY, ext_id TEXT, email TEXT, status TEXT)"
    )
    database.run(
        "INSERT INTO staging VALUES (:seq, :ext, :email)",
        [{"seq": i, "ext": f"E{i}", "email": f"e{i}@x.org"} for i in range(1, 26)],
    )
    database.run("INSERT INTO contact (ext_id, email, status) VALUES ('E1', 'e1@old.org', 'A')")
    load = sql_task(
        "load",
        'SELECT ext_id AS "ExtId", email AS "Email" FROM staging ORDER BY seq',
        "contact",
        "InsertWithMatching",
        page_size=10,
        match={"ext_id": "ExtId"},
        mapping={"ext_id": "ExtId", "email": "Email", "status": {"value": "I"}},
    )
    load["chain"] = {"on_success": ["activate"]}
    activate = sql_task(
        "activate",
        """SELECT ext_id AS "ExtId" FROM contact WHERE status = 'I' ORDER BY id""",
        "contact",
        "Update",
        page_size=10,
        match={"ext_id": "ExtId"},
        mapping={"status": {"value": "A"}},
    )
    runner = e2e([load, activate], ENGINE_E2E_DB_URL=database.url)
    parent = poll_until_finished(runner, runner.start("load"))
    assert parent["Status"] == "succeeded", parent["Error"]
    assert counts(parent) == expect(25, inserted=24, skipped=1)
    [child] = parent["Chain"]
    assert child["TaskId"] == "activate" and child["Error"] is None
    assert child["PollingUrl"].startswith("http://localhost/idms/jobs/" + child["ExecuteId"])
    document = poll_until_finished(runner, child["PollingUrl"])
    assert document["ExecuteId"] == child["ExecuteId"]
    assert document["Status"] == "succeeded", document["Error"]
    assert counts(document) == expect(24, updated=24)
    assert database.rows("SELECT status, COUNT(*) FROM contact GROUP BY status") == [("A", 25)]
