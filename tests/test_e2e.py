"""End to end: real forking workers (``flask idms-webhooks worker``) on a real Redis."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from example_app import create_app as create_example_app
from flask_idms_webhooks.state import state_of
from tests.helpers import ADMIN, poll_path, wait_for

pytestmark = pytest.mark.e2e


def poll_until_finished(client, location: str, timeout: float = 60.0):
    seen = []

    def finished():
        answer = client.get(poll_path(location))
        seen.append(answer)
        return answer if answer.status_code == 200 else None

    final = wait_for(finished, timeout=timeout, interval=0.1)
    return final, seen


def test_polling_flow_with_forking_worker(client, key, start_worker):
    start_worker()
    answer = client.post(
        "/idms/tasks/count/jobs",
        json={"QueryParameters": {"Count": 300, "Delay": 0.005, "FailEvery": 50}},
        headers={"Authorization": f"Bearer {key('count')}"},
    )
    assert answer.status_code == 202
    location = answer.headers["Location"]
    assert location.startswith("http://")
    final, seen = poll_until_finished(client, location)
    running = [a for a in seen if a.status_code == 202]
    for interim in running:
        assert interim.headers["Location"] == location
        document = interim.get_json()
        retry_after = int(interim.headers["Retry-After"])
        assert retry_after == document["RetryAfter"]
        if document["Status"] == "queued":
            assert retry_after == 7 and document["EstimatedCompletionOn"] is None
        else:  # the time left, clamped between RETRY_AFTER_MIN (2) and the task's 7
            assert 2 <= retry_after <= 7
        if document["ProcessedCount"]:  # a rate was seen: when it ends, at that rate
            assert document["EstimatedCompletionOn"] >= document["StartedOn"]
        assert 0 <= document["PercentComplete"] < 100
    assert any(a.get_json()["Status"] == "in progress" for a in running)
    body = final.get_json()
    assert body["Status"] == "succeeded" and body["Success"] is True
    assert body["RowCount"] == 300 and body["ProcessedCount"] == 300
    assert body["ErrorCount"] == 6 and len(body["Errors"]) == 6
    assert body["Errors"][0] == {"Row": 50, "Message": "row 50 refused"}
    assert (
        body["InsertedCount"] + body["UpdatedCount"] + body["SkippedCount"] + body["ErrorCount"]
        == body["ProcessedCount"]
    )
    assert body["PercentComplete"] == 100
    assert body["StartedOn"] and body["CompletedOn"] and body["Error"] is None
    assert "Location" not in final.headers
    assert client.get(poll_path(location)).data == final.data


def test_standard_webhook_runs_the_job(client, key, start_worker):
    start_worker()
    answer = client.post(
        f"/idms/tasks/count/execute?key={key('count')}", json={"QueryParameters": {"Count": 5}}
    )
    assert answer.status_code == 200
    body = answer.get_json()
    assert body == {"ExecuteId": body["ExecuteId"], "TaskId": "count", "Status": "queued"}
    location = f"/idms/jobs/{body['ExecuteId']}?key={key('count')}"
    final, _ = poll_until_finished(client, location)
    assert final.get_json()["ProcessedCount"] == 5


def test_a_task_that_raises_ends_failed_with_an_error_object(client, key, start_worker):
    start_worker()
    answer = client.post("/idms/tasks/boom/jobs", headers={"X-Webhook-Key": key("boom")})
    final, _ = poll_until_finished(client, answer.headers["Location"])
    body = final.get_json()
    assert final.status_code == 200
    assert body["Status"] == "failed" and body["Success"] is False
    assert body["Error"] == {"Type": "RuntimeError", "Message": "the source could not be read"}
    assert "Traceback" not in final.get_data(as_text=True)
    assert body["PercentComplete"] < 100 and body["UpdatedCount"] == 2


def start_sleeping_job(client, key, start_worker, tmp_path: Path):
    pid_file = tmp_path / "horse.pid"
    worker = start_worker(IDMS_TEST_PID_FILE=str(pid_file))
    answer = client.post(
        "/idms/tasks/sleep/jobs",
        json={"QueryParameters": {"Seconds": 120}},
        headers={"X-Webhook-Key": key("sleep")},
    )
    location = answer.headers["Location"]
    horse = int(wait_for(lambda: pid_file.exists() and pid_file.read_text()))
    running = client.get(poll_path(location))
    assert running.status_code == 202 and running.get_json()["Status"] == "in progress"
    return worker, horse, location, answer.get_json()["ExecuteId"]


def test_killed_worker_and_horse_seal_failed_by_the_reaper(
    client, key, state, start_worker, tmp_path
):
    worker, horse, _, job_id = start_sleeping_job(client, key, start_worker, tmp_path)
    os.kill(horse, signal.SIGKILL)
    worker.kill()
    # No poll: a new worker's reaper must find the job (heartbeat bound: 2 s in tests).
    start_worker()
    sealed = wait_for(lambda: state.store.read(job_id)[0], timeout=30)
    document = json.loads(sealed)
    assert document["Status"] == "failed" and document["Success"] is False
    assert document["Error"]["Type"] == "WorkerDied"


def test_killed_worker_and_horse_with_no_worker_left_fail_on_poll(
    client, key, start_worker, tmp_path
):
    worker, horse, location, _ = start_sleeping_job(client, key, start_worker, tmp_path)
    os.kill(horse, signal.SIGKILL)
    worker.kill()
    final, _ = poll_until_finished(client, location, timeout=30)
    body = final.get_json()
    assert body["Status"] == "failed"
    assert body["Error"]["Type"] == "WorkerDied"
    assert client.get(poll_path(location)).data == final.data


def test_killed_horse_is_sealed_at_once_by_its_worker(client, key, state, start_worker, tmp_path):
    _, horse, _, job_id = start_sleeping_job(client, key, start_worker, tmp_path)
    os.kill(horse, signal.SIGKILL)
    sealed = wait_for(lambda: state.store.read(job_id)[0], timeout=30)
    assert json.loads(sealed)["Error"]["Type"] == "WorkerDied"


def test_cancel_a_queued_job(client, key, state, start_worker):
    answer = client.post(
        "/idms/tasks/count/jobs",
        json={"QueryParameters": {"Count": 3}},
        headers={"X-Webhook-Key": key("count")},
    )
    job_id = answer.get_json()["ExecuteId"]
    assert state.queue.count == 1
    cancelled = client.delete(f"/idms/jobs/{job_id}", headers={"X-Webhook-Key": key("count")})
    assert cancelled.status_code == 202
    assert cancelled.get_json()["Status"] == "cancelled"
    assert state.queue.count == 0
    start_worker()
    final = client.get(poll_path(answer.headers["Location"]))
    assert final.status_code == 200
    body = final.get_json()
    assert body["Status"] == "cancelled" and body["Success"] is False
    assert body["Error"]["Type"] == "Cancelled"
    assert body["StartedOn"] is None and body["ProcessedCount"] == 0
    again = client.delete(f"/idms/jobs/{job_id}", headers=ADMIN)
    assert again.status_code == 409


def test_cancel_a_running_job_on_a_forking_worker(client, key, start_worker):
    start_worker()
    answer = client.post(
        "/idms/tasks/count/jobs",
        json={"QueryParameters": {"Count": 2000, "Delay": 0.01}},
        headers={"X-Webhook-Key": key("count")},
    )
    location = answer.headers["Location"]
    wait_for(lambda: client.get(poll_path(location)).get_json()["ProcessedCount"] > 0)
    cancelled = client.delete(f"/idms/jobs/{answer.get_json()['ExecuteId']}", headers=ADMIN)
    assert cancelled.status_code == 202
    final, _ = poll_until_finished(client, location, timeout=20)
    body = final.get_json()
    assert body["Status"] == "cancelled" and body["Success"] is False
    assert 0 < body["ProcessedCount"] < 2000
    assert body["PercentComplete"] < 100


class Renewal:
    """The example app's renewal task over a database of its own, with a forking worker."""

    def __init__(self, tmp_path: Path, redis_url: str, queue_name: str, start_worker) -> None:
        self.database = tmp_path / "members.db"
        app = create_example_app(
            IDMS_WEBHOOKS_REDIS_URL=redis_url,
            IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
            IDMS_WEBHOOKS_SECRET_KEY="example-secret",
            EXAMPLE_DATABASE=str(self.database),
        )
        state = state_of(app)
        self.before = self.paid_through()
        start_worker(
            app="example_app:create_app",
            IDMS_WEBHOOKS_SECRET_KEY="example-secret",
            EXAMPLE_DATABASE=str(self.database),
        )
        self.client = app.test_client()
        key = state.credentials.task_key(state.tasks["renew-memberships"])
        self.task_key = {"X-Webhook-Key": key}

    def paid_through(self) -> dict[int, str]:
        return dict(sqlite3.connect(self.database).execute("SELECT id, paid_through FROM member"))

    def start(self):
        return self.client.post(
            "/idms/tasks/renew-memberships/jobs",
            json={"QueryParameters": {"LastName": "", "PaidBefore": "2026-06-30"}},
            headers=self.task_key,
        )

    def changed_rows(self) -> int:
        after = self.paid_through()
        return sum(1 for member_id, paid in after.items() if self.before[member_id] != paid)


def test_example_app_changed_rows_equal_updated_count(
    tmp_path, redis_url, queue_name, start_worker
):
    renewal = Renewal(tmp_path, redis_url, queue_name, start_worker)
    answer = renewal.start()
    assert answer.status_code == 202
    final, _ = poll_until_finished(renewal.client, answer.headers["Location"], timeout=90)
    body = final.get_json()
    changed = renewal.changed_rows()
    assert body["Success"] is True
    assert body["RowCount"] > 1000
    assert changed == body["UpdatedCount"] > 1000
    assert body["ErrorCount"] > 0 and body["SkippedCount"] > 0
    assert body["ProcessedCount"] == body["RowCount"]


@pytest.mark.parametrize("delay", [0.0, 0.6, 1.2])
def test_a_cancel_racing_a_renewal_seals_the_rows_it_really_changed(
    tmp_path, redis_url, queue_name, start_worker, delay
):
    """Reproduction 6 against the example database: a DELETE at any instant of a
    renewal (queued, starting, mid-run). The sealed counts are the rows changed in the
    database, and a cancelled job changed none it did not count."""
    renewal = Renewal(tmp_path, redis_url, queue_name, start_worker)
    answer = renewal.start()
    time.sleep(delay)
    cancel = renewal.client.delete(
        f"/idms/jobs/{answer.get_json()['ExecuteId']}", headers=renewal.task_key
    )
    assert cancel.status_code == 202
    final, _ = poll_until_finished(renewal.client, answer.headers["Location"], timeout=90)
    body = final.get_json()
    assert renewal.changed_rows() == body["UpdatedCount"], body
    if body["Status"] == "cancelled":
        assert body["Chain"] == []
    else:
        assert body["Status"] == "succeeded"
