"""Shared by the engine tests: task files written as users write them, an app per test,
databases (a SQLite file, or a PostgreSQL schema of the test's own), and jobs run through
the real webhook and an in-process burst worker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from flask_idms_webhooks import IdmsWebhooks
from flask_idms_webhooks.iupdate.sql import create_engine
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import ADMIN, poll_path, postgres_schema

SECRET = "engine-test-secret"
ADMIN_TOKEN = ADMIN["Authorization"].removeprefix("Bearer ")


# -- task files ---------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A TOML value: JSON's string escapes are TOML's; tables become inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {toml_value(v)}" for key, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _lines(table: Mapping[str, Any]) -> list[str]:
    return [f"{key} = {toml_value(value)}" for key, value in table.items()]


def task_file(
    path: Path, connections: Mapping[str, Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]]
) -> Path:
    """Write a task file in the TASKS.md layout. A task is a dict with ``source`` (its
    ``filters`` a list of tables), ``target`` (its ``mapping`` a table), ``chain``, and
    the task's own keys."""
    lines: list[str] = []
    for name, profile in connections.items():
        lines += [f"[connections.{name}]", *_lines(profile), ""]
    for task in tasks:
        task = dict(task)
        source = dict(task.pop("source", {}))
        filters = source.pop("filters", [])
        target = dict(task.pop("target", {}))
        mapping = target.pop("mapping", None)
        chain = task.pop("chain", None)
        lines += ["[[tasks]]", *_lines(task), "", "[tasks.source]", *_lines(source), ""]
        for row in filters:
            lines += ["[[tasks.source.filters]]", *_lines(row), ""]
        lines += ["[tasks.target]", *_lines(target), ""]
        if mapping is not None:
            lines += ["[tasks.target.mapping]", *_lines(mapping), ""]
        if chain is not None:
            lines += ["[tasks.chain]", *_lines(chain), ""]
    path.write_text("\n".join(lines))
    return path


def sql_task(
    task_id: str,
    query: str,
    entity: str,
    action: str,
    *,
    connection: str = "db",
    page_size: int = 2,
    filters: Sequence[Mapping[str, Any]] = (),
    **target: Any,
) -> dict[str, Any]:
    """A task reading ``query`` from ``connection`` and writing ``entity`` there."""
    return {
        "id": task_id,
        "source": {
            "connection": connection,
            "query": query,
            "page_size": page_size,
            "filters": list(filters),
        },
        "target": {"connection": connection, "entity": entity, "action": action, **target},
    }


# -- the app and its jobs -----------------------------------------------------------------


def engine_app(task_path: Path, redis_url: str, queue_name: str, **config: Any) -> Flask:
    """A fresh app whose only tasks are those of ``task_path``."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET,
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        IDMS_WEBHOOKS_TASKS_FILE=str(task_path),
        IDMS_WEBHOOKS_ADMIN_TOKEN=ADMIN_TOKEN,
        IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=2,
    )
    app.config.update(config)
    IdmsWebhooks(app)
    return app


def assert_consistent(document: Mapping[str, Any]) -> None:
    """What every finished document must hold, whatever its outcome."""
    assert document["Success"] is (document["Status"] == "succeeded")
    processed = document["ProcessedCount"]
    assert processed == (
        document["InsertedCount"]
        + document["UpdatedCount"]
        + document["SkippedCount"]
        + document["ErrorCount"]
    ), document
    if document["RowCount"] is not None:
        assert processed <= document["RowCount"], document
    else:
        assert processed == 0, document
    assert document["DeletedCount"] <= document["UpdatedCount"]
    assert len(document["Errors"]) <= document["ErrorCount"]
    if document["Status"] == "succeeded":
        assert document["Error"] is None and document["PercentComplete"] == 100
    else:
        assert set(document["Error"]) == {"Type", "Message"}
        assert "Traceback" not in document["Error"]["Message"]
        assert document["PercentComplete"] < 100


class Runner:
    """Triggers a task's polling webhook, runs the queue in this process, polls the end.
    Its app's connections are closed by ``close_connections``."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.state = state_of(app)
        self.client = app.test_client()
        _OPEN.append(self.state.connections.close)

    def key(self, task_id: str) -> str:
        return self.state.credentials.task_key(self.state.tasks[task_id])

    def sql_engine(self, connection: str = "db") -> sa.Engine:
        """The engine the app's jobs use for the task file's ``[connections.NAME]``
        (every task of one file holds the file's profiles, as loaded)."""
        profile = next(iter(self.state.tasks.values())).connections[connection]
        return self.state.connections.sql_engine(profile)

    def start(self, task_id: str, parameters: Mapping[str, Any] | None = None) -> str:
        """Trigger a job; answers its Location."""
        body = {"QueryParameters": dict(parameters)} if parameters is not None else None
        answer = self.client.post(
            f"/idms/tasks/{task_id}/jobs", json=body, headers={"X-Webhook-Key": self.key(task_id)}
        )
        assert answer.status_code == 202, answer.get_json()
        return str(answer.headers["Location"])

    def burst(self) -> None:
        make_worker(self.app, simple=True).work(burst=True, logging_level="WARNING")

    def poll(self, location: str) -> tuple[int, dict[str, Any]]:
        answer = self.client.get(poll_path(location))
        return answer.status_code, answer.get_json()

    def finished(self, location: str) -> dict[str, Any]:
        answer = self.client.get(poll_path(location))
        assert answer.status_code == 200, answer.get_json()
        assert "Traceback" not in answer.get_data(as_text=True)
        document: dict[str, Any] = answer.get_json()
        assert_consistent(document)
        return document

    def run(self, task_id: str, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        location = self.start(task_id, parameters)
        self.burst()
        return self.finished(location)


def counts(document: Mapping[str, Any]) -> dict[str, Any]:
    """The counters of a document, for one comparison."""
    names = ("RowCount", "ProcessedCount", "InsertedCount", "UpdatedCount", "SkippedCount")
    return {name: document[name] for name in (*names, "ErrorCount", "DeletedCount")}


def expect(
    rows: int,
    *,
    inserted: int = 0,
    updated: int = 0,
    skipped: int = 0,
    errors: int = 0,
    deleted: int = 0,
) -> dict[str, int]:
    return {
        "RowCount": rows,
        "ProcessedCount": inserted + updated + skipped + errors,
        "InsertedCount": inserted,
        "UpdatedCount": updated,
        "SkippedCount": skipped,
        "ErrorCount": errors,
        "DeletedCount": deleted,
    }


#: How to close what the tests opened and have not closed yet: each Runner's app's
#: ``Connections`` (its iMIS clients and SQL engines) and each Database's engine.
_OPEN: list[Callable[[], None]] = []


def close_connections() -> None:
    """Close what the tests opened in this process: every Runner's app's iMIS clients and
    SQL engines, and every Database's engine (a test must not leave sockets behind, and a
    PostgreSQL schema cannot be dropped while a connection holds it)."""
    while _OPEN:
        _OPEN.pop()()


# -- databases ----------------------------------------------------------------------------


@dataclass
class Database:
    """The test's own view of a database: an engine of its own (not the app's), made on
    first use and disposed by ``close`` or ``close_connections``."""

    kind: str
    url: str
    _engine: sa.Engine | None = field(default=None, init=False, repr=False)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_engine(self.url)
            _OPEN.append(self.close)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def serial(self) -> str:
        """An auto-numbered integer primary key column type."""
        if self.kind == "sqlite":
            return "INTEGER PRIMARY KEY"
        return "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def run(self, sql: str, params: Any = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.text(sql), params or {})

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql), params or {})]

    def scalar(self, sql: str) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar()


@contextmanager
def open_database(kind: str, tmp_path: Path) -> Iterator[Database]:
    """A SQLite file in ``tmp_path``, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        try:
            yield Database(kind, f"sqlite:///{tmp_path / 'engine.db'}")
        finally:
            close_connections()
        return
    with postgres_schema("idms_engine", close_connections) as url:
        yield Database(kind, url)
