"""Redis round trips of the hot paths, counted on the client: a trigger is one, with an
Idempotency-Key two, a poll one (ARCHITECTURE.md; untimed)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import redis
from flask import Flask
from redis.connection import Connection

from flask_idms_webhooks import IdmsWebhooks
from flask_idms_webhooks.state import state_of
from tests.helpers import poll_path
from tests.sample_app import webhooks as sample_webhooks


class CountingConnection(Connection):
    """A connection that counts what it sends: one call is one round trip (a pipeline
    sends all its commands at once)."""

    sent: ClassVar[list[bytes]] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        packed = command if isinstance(command, bytes) else b"".join(command)
        CountingConnection.sent.append(packed)
        super().send_packed_command(command, check_health)


@pytest.fixture
def counting(redis_url, queue_name):
    if not redis_url.startswith("redis://"):
        pytest.fail(f"the round-trip test needs a TCP Redis URL, got {redis_url}")
    connection = redis.Redis(
        connection_pool=redis.ConnectionPool.from_url(
            redis_url, connection_class=CountingConnection
        )
    )
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s", IDMS_WEBHOOKS_REDIS_URL=redis_url, IDMS_WEBHOOKS_QUEUE_NAME=queue_name
    )
    extension = IdmsWebhooks(redis_connection=connection)
    for task in sample_webhooks._python_tasks.values():
        extension.register_task(task)
    extension.init_app(app)
    state = state_of(app)
    client = app.test_client()
    key = state.credentials.task_key(state.tasks["count"])
    client.post(f"/idms/tasks/count/jobs?key={key}", json={"QueryParameters": {"Count": 1}})  # warm
    CountingConnection.sent.clear()

    def round_trips(call):
        CountingConnection.sent.clear()
        answer = call(client, key)
        return answer, len(CountingConnection.sent)

    return round_trips


def test_a_trigger_is_one_round_trip(counting):
    answer, trips = counting(
        lambda client, key: client.post(
            f"/idms/tasks/count/jobs?key={key}", json={"QueryParameters": {"Count": 1}}
        )
    )
    assert answer.status_code == 202
    assert trips == 1


def test_a_trigger_with_an_idempotency_key_is_three(counting):
    """WATCH the key, read it, then the claim and its job in one transaction: a claim
    never exists without its job."""
    answer, trips = counting(
        lambda client, key: client.post(
            f"/idms/tasks/count/execute?key={key}",
            json={"QueryParameters": {"Count": 1}},
            headers={"Idempotency-Key": "once"},
        )
    )
    assert answer.status_code == 200
    assert trips == 3


def test_a_poll_is_one_round_trip(counting):
    answer, _ = counting(
        lambda client, key: client.post(
            f"/idms/tasks/count/jobs?key={key}", json={"QueryParameters": {"Count": 1}}
        )
    )
    location = poll_path(answer.headers["Location"])
    polled, trips = counting(lambda client, key: client.get(location))
    assert polled.status_code == 202
    assert trips == 1
