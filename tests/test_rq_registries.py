"""RQ's registries say what our records say, so rq-dashboard and ``rq info`` pointed at the
same Redis agree with the job documents: a job sealed succeeded is in RQ's finished
registry, one sealed failed in its failed registry (with the job's error), one sealed
cancelled, running or still queued, in its canceled registry. RQ's job is kept as long as
the sealed record (``IDMS_WEBHOOKS_RESULT_TTL``)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from tests.helpers import ADMIN, poll_path, wait_for

RESULT_TTL = 3600


@pytest.fixture
def app(make_app):
    return make_app(IDMS_WEBHOOKS_RESULT_TTL=RESULT_TTL)


#: The Location of each job started here, by job id.
LOCATIONS: dict[str, str] = {}


def start(client, key, task_id: str, parameters: dict[str, Any] | None = None) -> str:
    answer = client.post(
        f"/idms/tasks/{task_id}/jobs",
        json={"QueryParameters": parameters or {}},
        headers={"X-Webhook-Key": key(task_id)},
    )
    assert answer.status_code == 202, answer.get_json()
    LOCATIONS[answer.get_json()["ExecuteId"]] = answer.headers["Location"]
    return answer.get_json()["ExecuteId"]


def registries(state) -> dict[str, list[str]]:
    queue = state.queue
    return {
        "finished": queue.finished_job_registry.get_job_ids(),
        "failed": queue.failed_job_registry.get_job_ids(),
        "canceled": queue.canceled_job_registry.get_job_ids(),
        "started": queue.started_job_registry.get_job_ids(),
    }


def filed(state, job_id: str) -> tuple[str, Job]:
    """The one registry RQ's job of ``job_id`` is in, and the job."""
    rq_id = state.store.dispatch(job_id).rq_id
    found = [name for name, ids in registries(state).items() if rq_id in ids]
    assert len(found) == 1, (rq_id, registries(state))
    job = Job.fetch(rq_id, connection=state.queue.connection, serializer=JSONSerializer)
    return found[0], job


def sealed(client, job_id: str) -> dict[str, Any]:
    answer = client.get(poll_path(LOCATIONS[job_id]))
    assert answer.status_code == 200
    return answer.get_json()


def kept_for(state, job: Job) -> int:
    return int(state.queue.connection.ttl(job.key))


def test_a_succeeded_job_is_in_rqs_finished_registry(client, key, state, run_burst):
    job_id = start(client, key, "count", {"Count": 3})
    run_burst()
    assert sealed(client, job_id)["Status"] == "succeeded"
    registry, job = filed(state, job_id)
    assert registry == "finished" and job.get_status() == JobStatus.FINISHED
    assert RESULT_TTL - 60 < kept_for(state, job) <= RESULT_TTL


def test_a_failed_job_is_in_rqs_failed_registry_with_its_error(client, key, state, run_burst):
    job_id = start(client, key, "boom")
    run_burst()
    document = sealed(client, job_id)
    assert document["Status"] == "failed"
    registry, job = filed(state, job_id)
    assert registry == "failed" and job.get_status() == JobStatus.FAILED
    assert "the source could not be read" in (job.latest_result().exc_string or "")
    assert RESULT_TTL - 60 < kept_for(state, job) <= RESULT_TTL


def test_a_job_cancelled_while_queued_is_in_rqs_canceled_registry(client, key, state):
    job_id = start(client, key, "count", {"Count": 3})
    assert client.delete(f"/idms/jobs/{job_id}", headers=ADMIN).get_json()["Status"] == (
        "cancelled"
    )
    registry, job = filed(state, job_id)
    assert registry == "canceled" and job.get_status() == JobStatus.CANCELED
    assert state.queue.count == 0  # off the queue: no worker will take it
    assert RESULT_TTL - 60 < kept_for(state, job) <= RESULT_TTL


def test_a_running_job_cancelled_is_in_rqs_canceled_registry(client, key, state, run_burst):
    job_id = start(client, key, "count", {"Count": 400, "Delay": 0.01})

    def cancel_once_running() -> None:
        wait_for(lambda: state.store.dispatch(job_id).started, timeout=20)
        assert client.delete(f"/idms/jobs/{job_id}", headers=ADMIN).status_code == 202

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    run_burst()
    canceller.join()
    document = sealed(client, job_id)
    assert document["Status"] == "cancelled" and document["ProcessedCount"] < 400
    registry, job = filed(state, job_id)
    assert registry == "canceled" and job.get_status() == JobStatus.CANCELED
    assert RESULT_TTL - 60 < kept_for(state, job) <= RESULT_TTL
