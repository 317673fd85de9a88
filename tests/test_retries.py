"""Retries for tasks that allow them: ``retries`` with back-off (``retry_delays``), the
``Attempt`` and ``Attempts`` of the job document, and the load errors that keep retries
off work that is not safe to repeat."""

from __future__ import annotations

from typing import Any

import pytest

from flask_idms_webhooks import IdmsWebhooks, TaskLoadError
from flask_idms_webhooks.iupdate.connections import Connections
from flask_idms_webhooks.taskfile import load_task_file
from tests.helpers import ADMIN, abandon_job, poll_path, wait_for


def flaky(app: Any, fail_times: int, mark: str, seconds: float = 0.0) -> Any:
    from flask_idms_webhooks.state import state_of

    state = state_of(app)
    key = state.credentials.task_key(state.tasks["flaky"])
    body = {"QueryParameters": {"FailTimes": fail_times, "Mark": mark, "Seconds": seconds}}
    return app.test_client().post(f"/idms/tasks/flaky/jobs?key={key}", json=body)


def poll(app: Any, answer: Any) -> dict[str, Any]:
    return app.test_client().get(poll_path(answer.headers["Location"])).get_json()


def test_a_transient_failure_is_retried_after_its_delay_and_the_document_says_so(
    app, state, start_worker
):
    """The target is unreachable on the first run: the job is queued again (its status
    says when it retries), runs again after the 1 s delay through RQ's scheduler (which
    the worker runs by default), and ends succeeded with the second run's counts and the
    first run in Attempts."""
    answer = flaky(app, 1, "retry-once")
    start_worker()
    waiting = wait_for(lambda: (doc := poll(app, answer))["Attempt"] == 2 and doc)
    if waiting["Status"] == "queued":
        assert "retrying at" in waiting["StatusDescription"]
        assert waiting["ProcessedCount"] == 0
    final = wait_for(lambda: (doc := poll(app, answer))["CompletedOn"] and doc)
    assert (final["Status"], final["Attempt"], final["ProcessedCount"]) == ("succeeded", 2, 3)
    (first,) = final["Attempts"]
    assert first["Attempt"] == 1
    assert first["Error"]["Type"] == "TransientError"
    assert "could not be reached (run 1)" in first["Error"]["Message"]
    assert first["StartedOn"] and first["EndedOn"]
    assert int(state.redis.get("retry-once")) == 2


def test_retries_that_run_out_end_failed_with_every_attempt(app, state, run_burst):
    """Three runs (1 + retries = 2), each unreachable: failed, with the last error and
    the two earlier attempts."""
    answer = flaky(app, 9, "always")
    for _ in range(3):
        run_burst()
        doc = poll(app, answer)
        if doc["CompletedOn"]:
            break
        # the retry is on RQ's schedule: queue it now, as RQ's scheduler would when due
        registry = state.queue.scheduled_job_registry
        for rq_id in registry.get_job_ids():
            state.queue.enqueue_job(state.queue.fetch_job(rq_id))
            registry.remove(rq_id)
    final = poll(app, answer)
    assert (final["Status"], final["Attempt"]) == ("failed", 3)
    assert final["Error"]["Type"] == "TransientError"
    assert [attempt["Attempt"] for attempt in final["Attempts"]] == [1, 2]
    assert int(state.redis.get("always")) == 3


def test_a_job_whose_worker_died_mid_run_is_retried_when_its_task_allows(app, client, state):
    answer = abandon_job(client, state, "flaky", {"FailTimes": 0, "Mark": "died"})
    assert state.recovery.reap() == 1
    doc = poll(app, answer)
    assert (doc["Status"], doc["Attempt"]) == ("queued", 2)
    assert doc["Attempts"][0]["Error"]["Type"] == "WorkerDied"
    assert state.queue.scheduled_job_registry.count == 1


def test_a_job_without_retries_whose_worker_died_still_fails(app, client, state):
    answer = abandon_job(client, state, "count", {"Count": 3})
    assert state.recovery.reap() == 1
    doc = poll(app, answer)
    assert (doc["Status"], doc["Error"]["Type"], doc["Attempts"]) == ("failed", "WorkerDied", [])


def test_a_cancel_while_a_retry_waits_is_sealed_at_once(app, state, run_burst):
    answer = flaky(app, 1, "cancel-wait")
    run_burst()
    assert poll(app, answer)["Status"] == "queued"
    cancel = app.test_client().delete(f"/idms/jobs/{answer.get_json()['ExecuteId']}", headers=ADMIN)
    assert cancel.status_code == 202
    assert cancel.get_json()["Status"] == "cancelled"
    final = poll(app, answer)
    assert (final["Status"], final["Attempt"]) == ("cancelled", 2)
    assert state.queue.scheduled_job_registry.count == 0


GOOD = """
[connections.db]
kind = "sql"
url = "sqlite:///members.db"

[[tasks]]
id = "t"
{extra}
[tasks.source]
connection = "db"
query = "SELECT id, email FROM member"
[tasks.target]
connection = "db"
entity = "member"
action = "{action}"
match = {{ id = "id" }}
[tasks.target.mapping]
email = "email"
"""


def load(tmp_path, extra: str, action: str = "InsertOrUpdate"):
    path = tmp_path / "tasks.toml"
    path.write_text(GOOD.format(extra=extra, action=action))
    return load_task_file(path, Connections())


def test_the_task_file_takes_retries_and_their_delays(tmp_path):
    (task,) = load(tmp_path, 'retries = 2\nretry_delays = ["30s", "5m"]')
    assert (task.retries, task.retry_delays) == (2, (30, 300))
    assert [task.retry_delay(n) for n in (1, 2, 3)] == [30, 300, 300]
    (task,) = load(tmp_path, "")
    assert task.retries == 0


@pytest.mark.parametrize(
    ("extra", "action", "message"),
    [
        ("retries = 1", "Insert", "a plain Insert is not safe to repeat"),
        ("retries = -1", "Update", "from 0"),
        ('retries = "2"', "Update", "from 0"),
        ('retries = 1\nretry_delays = "30s"', "Update", "list of durations"),
        ('retries = 1\nretry_delays = ["soon"]', "Update", "not a duration"),
    ],
)
def test_retries_on_work_not_safe_to_repeat_or_badly_written_fail_to_load(
    tmp_path, extra, action, message
):
    with pytest.raises(TaskLoadError) as raised:
        load(tmp_path, extra, action)
    assert message in str(raised.value)
    assert "task 't'" in str(raised.value)


def test_a_python_task_must_say_it_is_idempotent_to_be_retried():
    webhooks = IdmsWebhooks()
    with pytest.raises(TaskLoadError) as raised:
        webhooks.task("once", retries=1)(lambda parameters, context: None)
    assert "idempotent = true" in str(raised.value) and "'retries'" in str(raised.value)
    webhooks.task("safe", retries=1, idempotent=True)(lambda parameters, context: None)
