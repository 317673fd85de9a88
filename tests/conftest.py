"""Fixtures: a real Redis (private, started by the suite, or IDMS_TEST_REDIS_URL), the app,
a test client, task keys, and workers (in-process burst, or a real forking one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from flask_idms_webhooks.extension import WebhooksState, state_of
from flask_idms_webhooks.redis_server import PrivateRedis
from flask_idms_webhooks.worker import make_worker
from tests.sample_app import create_app

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bool]]:
    """(URL, ours): IDMS_TEST_REDIS_URL when given (never flushed), else a private server."""
    given = os.environ.get("IDMS_TEST_REDIS_URL")
    if given:
        yield given, False
        return
    server = PrivateRedis(tmp_path_factory.mktemp("redis"), unix_socket=False, persistent=False)
    server.start()
    try:
        yield server.url, True
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: tuple[str, bool]) -> str:
    url, ours = redis_server
    if ours:
        redis.Redis.from_url(url).flushall()
    return url


@pytest.fixture
def queue_name() -> str:
    """A queue of this test's own, so tests never take each other's jobs."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_app(redis_url: str, queue_name: str) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        settings = {
            "IDMS_WEBHOOKS_REDIS_URL": redis_url,
            "IDMS_WEBHOOKS_QUEUE_NAME": queue_name,
            "IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT": 2,
        }
        settings.update(config)
        return create_app(**settings)

    return factory


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def state(app: Flask) -> WebhooksState:
    return state_of(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def key(state: WebhooksState) -> Callable[[str], str]:
    """The webhook key of a task, by id."""
    return lambda task_id: state.credentials.task_key(state.tasks[task_id])


@pytest.fixture
def run_burst(app: Flask) -> Callable[[], None]:
    """Run every queued job now, in this process (an RQ SimpleWorker in burst mode)."""

    def run() -> None:
        make_worker(app, simple=True).work(burst=True, logging_level="WARNING")

    return run


def poll_path(location: str) -> str:
    """The path and query of an absolute Location, for the test client."""
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


class WorkerProcess:
    """A real forking worker: ``flask --app tests.sample_app idms-webhooks worker``."""

    def __init__(self, env: dict[str, str], log: Path, app: str) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", app,
             "idms-webhooks", "worker", "--logging-level", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
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


@pytest.fixture
def start_worker(
    redis_url: str, queue_name: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(app: str = "tests.sample_app:create_app", **extra_env: str) -> WorkerProcess:
        env = dict(os.environ)
        env.update(
            IDMS_WEBHOOKS_REDIS_URL=redis_url,
            IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
            IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT="2",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env)
        worker = WorkerProcess(env, tmp_path / f"worker-{len(workers)}.log", app)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


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


@pytest.fixture
def live_server(app) -> Iterator[tuple[str, int]]:
    """The app behind Werkzeug's threaded HTTP server on a free port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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
    """Start a job and leave it as a dead worker would: in progress, heartbeat gone.
    Answers the polling webhook's answer."""
    key = state.credentials.task_key(state.tasks[task_id])
    answer = client.post(
        f"/idms/tasks/{task_id}/jobs?key={key}", json={"QueryParameters": parameters}
    )
    document = answer.get_json()
    document["Status"] = "in progress"
    state.store.start(document)
    state.redis.delete(state.store.heartbeat_key(document["ExecuteId"]))
    return answer
