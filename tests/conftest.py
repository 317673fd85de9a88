"""Fixtures: a real Redis (private, started by the suite, or IDMS_TEST_REDIS_URL), the app,
a test client, task keys, and workers (in-process burst, or a real forking one)."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from flask_idms_webhooks.redis_server import PrivateRedis
from flask_idms_webhooks.state import WebhooksState, state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import WorkerProcess
from tests.sample_app import create_app

# The `flask idms-webhooks` commands read instance/idms.env, which a running `make run`
# writes: the suite's commands must not pick up that server's settings.
os.environ["IDMS_WEBHOOKS_ENV_FILE"] = os.devnull


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
def stallable_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis server of this test's own (AOF on), to pause, kill, restart or fill."""
    server = PrivateRedis(tmp_path / "stall", unix_socket=False, persistent=True).start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
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


@pytest.fixture
def start_worker(
    redis_url: str, queue_name: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(
        app: str = "tests.sample_app:create_app", *command: str, **extra_env: str
    ) -> WorkerProcess:
        env = dict(os.environ)
        env.update(
            IDMS_WEBHOOKS_REDIS_URL=redis_url,
            IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
            IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT="2",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env)
        worker = WorkerProcess(env, tmp_path / f"worker-{len(workers)}.log", app, command)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:  # all at once
        worker.ask_to_stop(drop_rq_scheduler=True)
    for worker in workers:
        worker.wait_stopped()


@pytest.fixture
def live_server(app) -> Iterator[tuple[str, int]]:
    """The app behind Werkzeug's threaded HTTP server on a free port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # Shut down within 50 ms (the default poll of 0.5 s was half of some tests' time).
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
