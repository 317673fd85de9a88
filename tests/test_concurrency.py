"""One job at a time: ``concurrency = "reject"`` answers 409 while a job of the task is
queued or running, ``"join"`` follows that job when the parameters are the same; atomic
under triggers arriving together; chains obey it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_idms_webhooks import FilterRow, IdmsWebhooks, JobContext, TaskLoadError
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import ADMIN, abandon_job, bound_app, poll_path


def work(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.set_row_count(0)


@pytest.fixture
def app(redis_url: str, queue_name: str) -> Flask:
    webhooks = IdmsWebhooks()
    region = [FilterRow("Test", "Region", default="EU")]
    webhooks.task("solo", filters=region, concurrency="reject")(work)
    webhooks.task("joined", filters=region, concurrency="join")(work)
    webhooks.task("free", filters=region)(work)
    webhooks.task("parent", filters=region, on_success=["solo", "joined"])(work)
    return bound_app(webhooks, redis_url, IDMS_WEBHOOKS_QUEUE_NAME=queue_name)


def headers(app: Flask, task_id: str, **extra: str) -> dict[str, str]:
    state = state_of(app)
    return {"X-Webhook-Key": state.credentials.task_key(state.tasks[task_id]), **extra}


def start(app: Flask, task_id: str, route: str = "jobs", region: str | None = None, **extra: str):
    body = {"QueryParameters": {"Region": region}} if region else None
    return app.test_client().post(
        f"/idms/tasks/{task_id}/{route}", json=body, headers=headers(app, task_id, **extra)
    )


def jobs_of(app: Flask, task_id: str) -> int:
    return state_of(app).store.history(task_id, 0, 100)[0]


def run_all(app: Flask) -> None:
    make_worker(app, simple=True).work(burst=True, logging_level="WARNING")


def test_reject_answers_409_with_the_running_jobs_location(app: Flask) -> None:
    first = start(app, "solo")
    assert first.status_code == 202
    for route in ("jobs", "execute"):
        refused = start(app, "solo", route)
        assert refused.status_code == 409
        assert refused.headers["Location"] == first.headers["Location"]
        assert refused.headers["Retry-After"] == first.headers["Retry-After"]
        body = refused.get_json()
        assert body["code"] == 409 and "concurrency = reject" in body["message"]
        assert body["errors"]["Job"] == {
            "ExecuteId": first.get_json()["ExecuteId"],
            "Status": "queued",
            "Location": first.headers["Location"],
        }
    assert jobs_of(app, "solo") == 1
    assert start(app, "free").status_code == start(app, "free").status_code == 202  # parallel


def test_once_the_job_has_ended_a_new_one_starts(app: Flask) -> None:
    first = start(app, "solo")
    run_all(app)
    assert app.test_client().get(poll_path(first.headers["Location"])).status_code == 200
    second = start(app, "solo")
    assert second.status_code == 202
    assert second.headers["Location"] != first.headers["Location"]


def test_join_follows_the_running_job_with_the_same_parameters(app: Flask) -> None:
    first = start(app, "joined", region="US")
    joined = start(app, "joined", region="US")
    assert joined.status_code == 202
    assert joined.headers["Location"] == first.headers["Location"]
    assert joined.get_json()["ExecuteId"] == first.get_json()["ExecuteId"]
    fired = start(app, "joined", "execute", region="US")
    assert fired.status_code == 200
    assert fired.get_json() == {
        "ExecuteId": first.get_json()["ExecuteId"],
        "TaskId": "joined",
        "Status": "queued",
    }
    other = start(app, "joined", region="FR")
    assert other.status_code == 409
    assert "with other QueryParameters" in other.get_json()["message"]
    assert other.headers["Location"] == first.headers["Location"]
    assert jobs_of(app, "joined") == 1


def test_a_joined_answer_is_what_its_idempotency_key_replays(app: Flask) -> None:
    """A join claims its key too: repeated once the job has ended, it starts nothing."""
    first = start(app, "joined", region="US")
    joined = start(app, "joined", region="US", **{"Idempotency-Key": "j1"})
    assert joined.status_code == 202 and joined.headers["Location"] == first.headers["Location"]
    run_all(app)
    again = start(app, "joined", region="US", **{"Idempotency-Key": "j1"})
    assert (again.status_code, again.data) == (202, joined.data)
    assert again.headers["Location"] == first.headers["Location"]
    assert jobs_of(app, "joined") == 1


@pytest.mark.parametrize("task_id", ["solo", "joined"])
def test_a_job_whose_worker_died_does_not_hold_its_task(app: Flask, task_id: str) -> None:
    """Its worker died mid-run (no heartbeat, long enough): the next trigger seals it
    failed, as a poll would, and starts a job of its own instead of a 409 or a join."""
    client = app.test_client()
    dead = abandon_job(client, state_of(app), task_id, {})
    started = start(app, task_id)
    assert started.status_code == 202
    assert started.headers["Location"] != dead.headers["Location"]
    sealed = client.get(poll_path(dead.headers["Location"])).get_json()
    assert (sealed["Status"], sealed["Error"]["Type"]) == ("failed", "WorkerDied")
    assert jobs_of(app, task_id) == 2


def test_a_job_just_seen_without_its_heartbeat_still_holds_its_task(app: Flask) -> None:
    """A heartbeat missing for a moment proves nothing (Redis was away): 409, and the job
    goes on."""
    client = app.test_client()
    first = start(app, "solo")
    running = first.get_json() | {"Status": "in progress"}
    state = state_of(app)
    assert state.store.start(running) == 1
    state.redis.delete(state.store.heartbeat_key(running["ExecuteId"]))
    assert start(app, "solo").status_code == 409
    assert client.get(poll_path(first.headers["Location"])).get_json()["Status"] == "in progress"


def test_an_idempotency_key_repeat_still_replays_its_first_answer(app: Flask) -> None:
    first = start(app, "solo", **{"Idempotency-Key": "k1"})
    again = start(app, "solo", **{"Idempotency-Key": "k1"})
    assert again.status_code == 202 and again.data == first.data


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    served = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=served.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{served.server_port}"
    served.shutdown()
    served.server_close()
    thread.join(5)


@pytest.mark.parametrize("task_id", ["solo", "joined"])
def test_twenty_triggers_at_once_start_exactly_one_job(
    app: Flask, server: str, task_id: str
) -> None:
    barrier = threading.Barrier(20)

    def trigger(_: int) -> httpx.Response:
        with httpx.Client(base_url=server, timeout=30) as client:
            barrier.wait()
            return client.post(f"/idms/tasks/{task_id}/jobs", headers=headers(app, task_id))

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(trigger, range(20)))
    assert jobs_of(app, task_id) == 1
    assert len({answer.headers["Location"] for answer in answers}) == 1
    codes = sorted(answer.status_code for answer in answers)
    assert codes == ([202] + [409] * 19 if task_id == "solo" else [202] * 20)


def test_chains_obey_it(app: Flask) -> None:
    solo = start(app, "solo")  # queued: the parent's child "solo" cannot start
    joined = start(app, "joined")  # same Region (the default) as the parent passes on
    parent = start(app, "parent")
    state_of(app).jobs.run(parent.get_json()["ExecuteId"])  # the parent alone: the others wait
    done = app.test_client().get(poll_path(parent.headers["Location"])).get_json()
    refused, followed = done["Chain"]
    assert refused["TaskId"] == "solo" and refused["ExecuteId"] is None
    assert refused["Error"].startswith(f"Not started: job {solo.get_json()['ExecuteId']}")
    assert followed == {
        "TaskId": "joined",
        "ExecuteId": joined.get_json()["ExecuteId"],
        "PollingUrl": joined.headers["Location"],
        "Error": None,
    }
    assert jobs_of(app, "solo") == jobs_of(app, "joined") == 1


def test_the_task_file_key(tmp_path: Path, redis_url: str) -> None:
    task_file = tmp_path / "tasks.toml"
    line = '[[tasks]]\nid = "t"\nhandler = "tests.test_concurrency:work"\nconcurrency = "{}"\n'

    def load(value: str) -> Flask:
        task_file.write_text(line.format(value))
        return bound_app(None, redis_url, IDMS_WEBHOOKS_TASKS_FILE=str(task_file))

    assert state_of(load("join")).tasks["t"].concurrency == "join"
    with pytest.raises(TaskLoadError, match="'serial' is not one of parallel, reject, join") as e:
        load("serial")
    assert (e.value.task, e.value.key) == ("t", "concurrency")


def test_the_openapi_document_lists_409_on_the_webhooks(app: Flask) -> None:
    paths = app.test_client().get("/idms/openapi.json").get_json()["paths"]
    for path in ("/idms/tasks/{task_id}/jobs", "/idms/tasks/{task_id}/execute"):
        conflict = paths[path]["post"]["responses"]["409"]
        assert set(conflict["headers"]) == {"Location", "Retry-After"}


def test_the_task_document_says_it(app: Flask) -> None:
    admin = app.test_client()
    assert admin.get("/idms/tasks/solo", headers=ADMIN).get_json()["Concurrency"] == "reject"
    assert admin.get("/idms/tasks/free", headers=ADMIN).get_json()["Concurrency"] == "parallel"
