"""What the tests share besides fixtures: paths, the admin header, a poll path from a
Location, a real forking worker process, waiting for a condition, PostgreSQL for the SQL
cases, a job left as a dead worker leaves it, and gunicorn with the shipped config."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from flask_idms_webhooks import IdmsWebhooks
from flask_idms_webhooks.redis_server import free_port
from flask_idms_webhooks.state import WebhooksState

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": "Bearer admin-token"}


def bound_app(webhooks: IdmsWebhooks | None, redis_url: str, **config: Any) -> Flask:
    """A bare Flask app on the suite's Redis, with a secret and the admin token, and
    ``webhooks`` bound to it (a new ``IdmsWebhooks``, for a task file's tasks, if None);
    ``config``: more settings, by their full keys."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s",
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_ADMIN_TOKEN="admin-token",
        **config,
    )
    (webhooks or IdmsWebhooks()).init_app(app)
    return app


def poll_path(location: str) -> str:
    """The path and query of an absolute Location, for the test client."""
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


class WorkerProcess:
    """A real forking worker: ``flask --app tests.sample_app idms-webhooks worker`` (or
    another ``command`` of ``flask idms-webhooks``)."""

    def __init__(
        self, env: dict[str, str], log: Path, app: str, command: tuple[str, ...] = ()
    ) -> None:
        self.log = log
        self._log_file = log.open("wb")
        command = command or ("worker", "--logging-level", "INFO")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", app, "idms-webhooks", *command],
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), waited for."""
        self.ask_to_stop()
        self.wait_stopped()

    def ask_to_stop(self, *, drop_rq_scheduler: bool = False) -> None:
        """SIGTERM, not waited for. With ``drop_rq_scheduler`` (once the test is over),
        RQ's scheduler process is SIGKILLed first: it sleeps a second between rounds and
        the worker's shutdown waits for it to wake, a second of every test with a worker.
        The lock it leaves is on the test's own queue."""
        if self.process.poll() is not None:
            return
        if drop_rq_scheduler:
            for pid in group_children(self.process.pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log_file.close()

    def kill(self) -> None:
        """SIGKILL the worker alone (its work-horse, in a group of its own, lives on)."""
        self.process.kill()
        self.process.wait()


def group_children(pid: int) -> list[int]:
    """The children of process ``pid`` in its process group (from /proc): a worker's RQ
    scheduler, not its work-horse, which makes a group of its own."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, ValueError):
                # the fields after the command's closing parenthesis: state, ppid, pgrp
                _state, ppid, pgrp = (entry / "stat").read_text().rpartition(")")[2].split()[:3]
                if int(ppid) == pid and int(pgrp) == pid:
                    found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Wait until ``condition()`` is truthy; answers its value (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


#: PostgreSQL for the SQL cases: IDMS_TEST_POSTGRES_URL, else this machine's trust-auth server.
POSTGRES_URL = os.environ.get(
    "IDMS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def require_postgres() -> str:
    """The PostgreSQL URL; fails (never skips) when the server cannot be reached."""
    engine = sa.create_engine(POSTGRES_URL)
    problem = None
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as error:
        problem = str(error.orig).splitlines()[0]
    finally:
        engine.dispose()
    if problem:
        where = engine.url.render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL at {where} is unreachable ({problem}); the SQL tests need one:"
            " start it or set IDMS_TEST_POSTGRES_URL",
            pytrace=False,
        )
    return POSTGRES_URL


@contextmanager
def postgres_schema(prefix: str, close: Callable[[], None]) -> Iterator[str]:
    """A URL on a fresh PostgreSQL schema of this test's own, dropped afterwards (after
    ``close`` has given every connection back: an open one would block the drop)."""
    base = require_postgres()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield (
                sa.make_url(base)
                .update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(hide_password=False)
            )
        finally:
            close()
            with admin.begin() as connection:
                connection.execute(sa.text("SET LOCAL lock_timeout = '10s'"))  # fail, not hang
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def abandon_job(
    client: FlaskClient, state: WebhooksState, task_id: str, parameters: dict[str, Any]
) -> Any:
    """Start a job and leave it as a dead worker would: in progress, heartbeat gone, and
    first seen so longer ago than the half heartbeat timeout after which it is presumed
    dead. Answers the polling webhook's answer."""
    key = state.credentials.task_key(state.tasks[task_id])
    answer = client.post(
        f"/idms/tasks/{task_id}/jobs?key={key}", json={"QueryParameters": parameters}
    )
    document = answer.get_json()
    document["Status"] = "in progress"
    state.store.start(document)
    state.redis.delete(state.store.heartbeat_key(document["ExecuteId"]))
    since = time.time() - state.settings.heartbeat_timeout
    state.redis.set(state.store.suspect_key(document["ExecuteId"]), str(since))
    return answer


#: The gunicorn config the package ships.
SHIPPED_CONFIG = "python:flask_idms_webhooks.gunicorn_conf"


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextmanager
def gunicorn(
    tmp_path: Path, redis_url: str, queue_name: str, workers: int = 1, **extra_env: str
) -> Iterator[tuple[int, Path]]:
    """gunicorn with the shipped config serving the test app: (port, its log file)."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = dict(
        os.environ,
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        GUNICORN_WORKERS=str(workers),
        **extra_env,
    )
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", SHIPPED_CONFIG,
             "--bind", f"127.0.0.1:{port}", "tests.sample_app:create_app()"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:

            def serving() -> bool:
                try:
                    return get(port, "/idms/openapi.json")[0] == 200
                except OSError:
                    return False

            wait_for(serving, timeout=30, interval=0.2)
            yield port, log
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
