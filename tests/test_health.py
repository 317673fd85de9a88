"""Health checks as a load balancer sees them: ``/idms/health`` answers 200 while the
process serves, Redis or not; ``/idms/ready`` answers 200 only when Redis answers and a
worker process beats, else 503 naming what is missing. Neither needs credentials, and
neither shows a secret."""

from __future__ import annotations

import pytest

from flask_idms_webhooks.jobs.liveness import ALIVE_FOR, WORKERS, WorkerBeat, workers_alive
from flask_idms_webhooks.redis_server import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def away_app(make_app):
    """An app whose Redis (with a password in its URL) does not answer."""
    return make_app(
        IDMS_WEBHOOKS_REDIS_URL=f"redis://:hunter2secret@127.0.0.1:{free_port()}/0",
        IDMS_WEBHOOKS_REDIS_TIMEOUT=0.5,
    )


def test_health_answers_without_redis(away_app):
    answer = away_app.test_client().get("/idms/health")
    assert answer.status_code == 200
    assert answer.get_json() == {"Status": "ok"}


def test_ready_is_503_when_redis_does_not_answer_and_shows_no_secret(away_app):
    answer = away_app.test_client().get("/idms/ready")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["Ready"] is False and body["Missing"] == ["redis"]
    assert body["Redis"].startswith("unreachable")
    assert "hunter2secret" not in answer.text and "127.0.0.1" not in answer.text


def test_ready_is_503_without_a_live_worker(client):
    answer = client.get("/idms/ready")
    assert answer.status_code == 503
    assert answer.get_json() == {
        "Ready": False,
        "Redis": "ok",
        "WorkersAlive": 0,
        "Missing": ["worker"],
    }


def test_ready_follows_a_workers_beat(client, state):
    beat = WorkerBeat(state.redis, "worker-under-test", every=0.2)
    beat.start()
    try:
        answer = wait_for(lambda: (a := client.get("/idms/ready")).status_code == 200 and a)
        assert answer.get_json() == {
            "Ready": True,
            "Redis": "ok",
            "WorkersAlive": 1,
            "Missing": [],
        }
    finally:
        beat.stop()
    assert client.get("/idms/ready").status_code == 503  # a stopped worker is gone at once


def test_a_worker_whose_beat_is_old_is_not_alive(state):
    now = int(state.redis.time()[0])
    state.redis.zadd(WORKERS, {"went-silent": now - ALIVE_FOR - 1, "just-beat": now})
    assert workers_alive(state.redis) == 1


@pytest.mark.e2e
def test_a_running_worker_makes_the_service_ready(client, start_worker):
    worker = start_worker()
    wait_for(lambda: client.get("/idms/ready").status_code == 200, timeout=30)
    assert client.get("/idms/ready").get_json()["WorkersAlive"] == 1
    worker.stop()  # its name out at once; a worker killed instead drops out after ALIVE_FOR
    wait_for(lambda: client.get("/idms/ready").status_code == 503, timeout=ALIVE_FOR + 5)
