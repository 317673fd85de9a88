"""Faults: Redis refused or stalled, result expiry, long jobs, secrets in logs,
cooperative cancellation."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from rq.job import Job

from flask_idms_webhooks.accesslog import RedactingLogger, redact_query
from flask_idms_webhooks.redis_server import free_port
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import ADMIN, poll_path, wait_for

HANG = 10  # seconds: far above the ~1 s the client waits; only a hang crosses it


def assert_fast_503(answer, elapsed: float) -> None:
    assert answer.status_code == 503
    assert answer.get_json()["code"] == 503
    assert int(answer.headers["Retry-After"]) > 0
    assert elapsed < HANG


def timed(call):
    start = time.monotonic()
    answer = call()
    return answer, time.monotonic() - start


def test_redis_refused_is_a_fast_503(make_app):
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    key = state_of(app).credentials.task_key(state_of(app).tasks["count"])
    for call in (
        lambda: client.post(
            f"/idms/tasks/count/jobs?key={key}", json={"QueryParameters": {"Count": 1}}
        ),
        lambda: client.post(
            f"/idms/tasks/count/execute?key={key}", json={"QueryParameters": {"Count": 1}}
        ),
        lambda: client.get(f"/idms/jobs/x?key={key}"),
        lambda: client.get("/idms/tasks/count/jobs", headers=ADMIN),
    ):
        assert_fast_503(*timed(call))


def test_redis_stalled_is_a_fast_503_and_recovers(make_app, stallable_redis):
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
    client = app.test_client()
    key = state_of(app).credentials.task_key(state_of(app).tasks["count"])
    body = {"QueryParameters": {"Count": 1}}
    ok = client.post(f"/idms/tasks/count/jobs?key={key}", json=body)
    assert ok.status_code == 202
    os.kill(stallable_redis.process.pid, signal.SIGSTOP)
    try:
        assert_fast_503(*timed(lambda: client.post(f"/idms/tasks/count/jobs?key={key}", json=body)))
        assert_fast_503(*timed(lambda: client.get(poll_path(ok.headers["Location"]))))
    finally:
        os.kill(stallable_redis.process.pid, signal.SIGCONT)
    assert client.post(f"/idms/tasks/count/jobs?key={key}", json=body).status_code == 202
    assert client.get(poll_path(ok.headers["Location"])).status_code == 202


def test_a_refused_trigger_writes_nothing(make_app, stallable_redis):
    # a short timeout: the default's 503 within ~2 s is the test above's
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url, IDMS_WEBHOOKS_REDIS_TIMEOUT=0.3)
    state = state_of(app)
    client = app.test_client()
    key = state.credentials.task_key(state.tasks["count"])
    os.kill(stallable_redis.process.pid, signal.SIGSTOP)
    try:
        answer = client.post(
            f"/idms/tasks/count/jobs?key={key}", json={"QueryParameters": {"Count": 1}}
        )
    finally:
        os.kill(stallable_redis.process.pid, signal.SIGCONT)
    assert answer.status_code == 503
    assert state.queue.count == 0
    assert state.store.history("count", 0, 10) == (0, [])


def test_finished_record_expires_after_the_result_ttl(make_app):
    app = make_app(IDMS_WEBHOOKS_RESULT_TTL=2)
    state = state_of(app)
    client = app.test_client()
    key = state.credentials.task_key(state.tasks["count"])
    answer = client.post(
        f"/idms/tasks/count/jobs?key={key}", json={"QueryParameters": {"Count": 2}}
    )
    make_worker(app, simple=True).work(burst=True, logging_level="WARNING")
    location = poll_path(answer.headers["Location"])
    assert client.get(location).status_code == 200
    gone = wait_for(lambda: (got := client.get(location)).status_code == 404 and got, timeout=10)
    assert gone.get_json()["code"] == 404


def test_sealed_record_and_rqs_job_are_kept_for_the_retention(client, key, state, run_burst):
    answer = client.post(
        f"/idms/tasks/count/jobs?key={key('count')}", json={"QueryParameters": {"Count": 2}}
    )
    job_id = answer.get_json()["ExecuteId"]
    run_burst()
    ttl = state.redis.ttl(state.store.result_key(job_id))
    assert 7 * 86400 - 60 < ttl <= 7 * 86400
    # RQ's own copy (in its finished registry) as long: rq-dashboard shows what we keep
    assert 7 * 86400 - 60 < state.redis.ttl(f"rq:job:{job_id}") <= 7 * 86400


def test_long_jobs_get_hours_not_rqs_180_seconds(client, key, state, make_app):
    answer = client.post(
        f"/idms/tasks/count/jobs?key={key('count')}", json={"QueryParameters": {"Count": 2}}
    )
    job = Job.fetch(
        answer.get_json()["ExecuteId"], connection=state.redis, serializer=state.queue.serializer
    )
    assert job.timeout == 6 * 3600
    other = make_app(IDMS_WEBHOOKS_JOB_TIMEOUT="90m")
    other_state = state_of(other)
    other_key = other_state.credentials.task_key(other_state.tasks["count"])
    answer = other.test_client().post(
        f"/idms/tasks/count/jobs?key={other_key}", json={"QueryParameters": {"Count": 2}}
    )
    job = Job.fetch(
        answer.get_json()["ExecuteId"], connection=state.redis, serializer=state.queue.serializer
    )
    assert job.timeout == 90 * 60


def cancel_once_running(client, state, job_id: str) -> threading.Thread:
    """A thread that cancels the job (DELETE, admin) as soon as it is in progress."""

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            live = state.store.live(job_id)
            if live and b'"in progress"' in live:
                assert client.delete(f"/idms/jobs/{job_id}", headers=ADMIN).status_code == 202
                return
            time.sleep(0.02)

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    return canceller


def test_cooperative_cancel_stops_a_running_job_on_a_simple_worker(client, key, state, run_burst):
    answer = client.post(
        f"/idms/tasks/count/jobs?key={key('count')}",
        json={"QueryParameters": {"Count": 5000, "Delay": 0.002}},
    )
    canceller = cancel_once_running(client, state, answer.get_json()["ExecuteId"])
    run_burst()
    canceller.join()
    final = client.get(poll_path(answer.headers["Location"])).get_json()
    assert final["Status"] == "cancelled"
    assert final["ProcessedCount"] < 5000


def test_access_log_redacts_keys_tokens_and_secret_headers():
    logger = RedactingLogger(Config())
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/idms/tasks/t/jobs?key=SECRET1&x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "QUERY_STRING": "key=SECRET1&x=1",
        "PATH_INFO": "/idms/tasks/t/jobs",
        "HTTP_REFERER": "https://h/idms/jobs/j?token=SECRET2",
    }
    request = SimpleNamespace(
        headers=[("Authorization", "Bearer SECRET3"), ("X-Webhook-Key", "SECRET4")]
    )
    response = SimpleNamespace(status="202 Accepted", sent=10, headers=[("Location", "x")])
    atoms = logger.atoms(response, request, environ, timedelta(seconds=0.01))
    text = " ".join(str(value) for value in atoms.values())
    for secret in ("SECRET1", "SECRET2", "SECRET3", "SECRET4"):
        assert secret not in text
    assert atoms["r"] == "POST /idms/tasks/t/jobs?key=[redacted]&x=1 HTTP/1.1"
    assert redact_query("a?token=abc;key=def&keyx=1") == "a?token=[redacted];key=[redacted]&keyx=1"


def test_application_logs_never_show_keys_or_tokens(client, key, run_burst, caplog):
    caplog.set_level(logging.DEBUG)
    answer = client.post(f"/idms/tasks/boom/jobs?key={key('boom')}")
    token = answer.headers["Location"].rsplit("token=", 1)[1]
    run_burst()
    client.get(poll_path(answer.headers["Location"]))
    client.get("/idms/jobs/nope?token=wrong-token-value")
    assert caplog.records  # the failing task was logged
    for record in caplog.records:
        message = record.getMessage()
        assert key("boom") not in message and token not in message


def test_a_cancel_the_task_never_looks_for_still_ends_cancelled(client, key, state, run_burst):
    answer = client.post(
        f"/idms/tasks/sleep/jobs?key={key('sleep')}", json={"QueryParameters": {"Seconds": 1.0}}
    )
    canceller = cancel_once_running(client, state, answer.get_json()["ExecuteId"])
    run_burst()  # a SimpleWorker: RQ's stop command cannot reach it; the sleep runs to its end
    canceller.join()
    final = client.get(poll_path(answer.headers["Location"])).get_json()
    assert final["Status"] == "cancelled"
    assert final["Success"] is False


def test_a_work_horse_opens_one_redis_connection(client, key, state):
    """A forking worker's horse writes its job's record through RQ's own connection: one
    new connection to Redis per job, not one for RQ and another for the record."""

    def burst_of(jobs: int) -> int:
        ids = []
        for _ in range(jobs):
            answer = client.post(
                f"/idms/tasks/count/jobs?key={key('count')}", json={"QueryParameters": {"Count": 1}}
            )
            ids.append(answer.get_json()["ExecuteId"])
        before = state.redis.info("stats")["total_connections_received"]
        make_worker(client.application).work(burst=True, logging_level="WARNING")
        opened = state.redis.info("stats")["total_connections_received"] - before
        for job_id in ids:
            sealed = state.redis.get(state.store.result_key(job_id))
            assert sealed is not None and json.loads(sealed)["Status"] == "succeeded"
        return opened

    assert burst_of(8) - burst_of(4) == 4


def test_a_poll_that_cannot_seal_a_dead_job_is_a_503_at_once_then_seals(client, state, monkeypatch):
    """A poll finds a job whose worker died; sealing it fails (Redis hiccup): the poll
    answers 503 after one attempt, without sleeping in the request, and the next poll
    seals the job failed ("worker died")."""
    from flask_idms_webhooks.jobs import lifecycle
    from tests.helpers import abandon_job

    location = abandon_job(client, state, "count", {"Count": 5}).headers["Location"]
    real_seal = state.store.seal
    attempts = []

    def refused(*args, **kwargs):
        attempts.append(1)
        raise lifecycle.StoreUnavailable("simulated: Redis stalled")

    def no_sleeping(seconds):
        raise AssertionError(f"a request slept {seconds} s")

    monkeypatch.setattr(lifecycle.time, "sleep", no_sleeping)
    monkeypatch.setattr(state.store, "seal", refused)
    answer = client.get(poll_path(location))
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert attempts == [1]
    monkeypatch.setattr(state.store, "seal", real_seal)
    answer = client.get(poll_path(location))
    assert answer.status_code == 200
    assert answer.get_json()["Status"] == "failed"
    assert answer.get_json()["Error"]["Type"] == "WorkerDied"


def test_a_killed_work_horse_is_sealed_failed_through_a_redis_hiccup(
    client, key, state, monkeypatch
):
    """The forking worker sees its work-horse die (SIGKILL mid-job) while Redis refuses
    the first write of the seal: it tries again, and the job ends failed, "worker died",
    not left in progress until the reaper."""
    import dataclasses

    from flask_idms_webhooks.jobs import lifecycle

    def killed_mid_job(parameters, context):
        context.set_row_count(10)
        context.count(updated=3)
        os.kill(os.getpid(), signal.SIGKILL)

    state.tasks["count"] = dataclasses.replace(state.tasks["count"], handler=killed_mid_job)
    real_seal = state.store.seal
    refusals = []

    def once_refused(*args, **kwargs):
        if not refusals:
            refusals.append(1)
            raise lifecycle.StoreUnavailable("simulated: Redis stalled")
        return real_seal(*args, **kwargs)

    monkeypatch.setattr(state.store, "seal", once_refused)  # the worker's, in this process
    monkeypatch.setattr(lifecycle.time, "sleep", lambda seconds: None)
    answer = client.post(
        f"/idms/tasks/count/jobs?key={key('count')}", json={"QueryParameters": {"Count": 10}}
    )
    make_worker(client.application).work(burst=True, logging_level="WARNING")
    assert refusals == [1]
    final = client.get(poll_path(answer.headers["Location"]))
    assert final.status_code == 200
    body = final.get_json()
    assert body["Status"] == "failed" and body["Error"]["Type"] == "WorkerDied"
    assert body["UpdatedCount"] == 3
