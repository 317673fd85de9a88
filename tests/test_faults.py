"""Truth under faults, with real processes: Redis paused, killed, restarted and full;
workers and work-horses killed at any instant. Every accepted job ends sealed with what
really happened; every 503 says what is known of its effect."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis

from flask_idms_webhooks.redis_server import PrivateRedis, free_port
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import ADMIN, poll_path, wait_for

BODY = {"QueryParameters": {"Count": 1}}


@contextmanager
def paused(server: PrivateRedis) -> Iterator[None]:
    """Redis stopped (SIGSTOP) for the block: it keeps what was written to its socket
    and runs it when it resumes (SIGCONT)."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def webhook(app: Any) -> Callable[..., Any]:
    """POST the polling webhook of task ``count`` (with an ``Idempotency-Key`` if given)."""
    state = state_of(app)
    client = app.test_client()
    key = state.credentials.task_key(state.tasks["count"])

    def post(idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return client.post(f"/idms/tasks/count/jobs?key={key}", json=BODY, headers=headers)

    return post


def jobs_of(app: Any) -> int:
    return state_of(app).store.history("count", 0, 100)[0]


def test_a_503_after_the_writes_were_sent_says_the_job_may_exist(make_app, stallable_redis):
    """Reproduction 2: Redis paused past the client's timeout. The trigger's transaction
    is on the socket, Redis runs it on resume: the 503 must not say "nothing started"; it
    carries the job it tried to create, and a poll there finds it."""
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url, IDMS_WEBHOOKS_REDIS_TIMEOUT=0.3)
    post = webhook(app)
    assert post().status_code == 202  # a connection is open: the pause hits a sent request
    with paused(stallable_redis):
        answer = post()
    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) > 0
    body = answer.get_json()
    assert body["Outcome"] == "Unknown"
    assert "may have started" in body["message"]
    poll = app.test_client().get(poll_path(body["PollingUrl"]))
    assert poll.status_code == 202
    assert poll.get_json()["ExecuteId"] == body["ExecuteId"]
    assert jobs_of(app) == 2


def test_retrying_a_503_with_its_idempotency_key_ends_with_one_job_that_polls(
    make_app, stallable_redis, monkeypatch
):
    """Reproduction 3: the claim and the job land together or not at all, so the retry a
    503 asks for replays the first answer, and its Location works (no ghost key). Redis
    pauses once before anything is sent (nothing started), once with the transaction on
    the socket (it runs on resume)."""
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url, IDMS_WEBHOOKS_REDIS_TIMEOUT=0.3)
    store = state_of(app).store
    post = webhook(app)
    assert post().status_code == 202
    with paused(stallable_redis):
        before = post("before")
    assert (before.status_code, before.get_json()["Outcome"]) == (503, "NotStarted")

    real_write = store._write_new

    def pause_before_the_transaction(*args: Any, **kwargs: Any) -> None:
        real_write(*args, **kwargs)
        os.kill(stallable_redis.process.pid, signal.SIGSTOP)

    monkeypatch.setattr(store, "_write_new", pause_before_the_transaction)
    try:
        during = post("during")
    finally:
        os.kill(stallable_redis.process.pid, signal.SIGCONT)
    monkeypatch.undo()
    assert (during.status_code, during.get_json()["Outcome"]) == (503, "Unknown")

    for lost in ("before", "during"):
        retry = post(lost)
        assert retry.status_code == 202
        assert post(lost).get_json() == retry.get_json()
        poll = app.test_client().get(poll_path(retry.headers["Location"]))
        assert poll.status_code == 202
    assert post("during").get_json()["ExecuteId"] == during.get_json()["ExecuteId"]
    assert jobs_of(app) == 1 + 2


def test_a_503_when_redis_is_unreachable_says_nothing_started(make_app):
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    answer = webhook(app)("key-1")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["Outcome"] == "NotStarted"
    assert "ExecuteId" not in body
    assert "nothing changed" in body["message"]


def test_redis_out_of_memory_is_a_503_not_a_500_and_writes_nothing(make_app, stallable_redis):
    """Reproduction 5 (web side): Redis at maxmemory with noeviction refuses writes."""
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
    post = webhook(app)
    first = post()
    assert first.status_code == 202
    admin = redis.Redis.from_url(stallable_redis.url)
    admin.config_set("maxmemory", 1)
    try:
        for idempotency_key in (None, "full"):
            answer = post(idempotency_key)
            assert answer.status_code == 503, answer.get_data(as_text=True)
            assert answer.get_json()["Outcome"] == "NotStarted"
            assert int(answer.headers["Retry-After"]) > 0
        assert app.test_client().get(poll_path(first.headers["Location"])).status_code == 202
    finally:
        admin.config_set("maxmemory", 0)
    assert jobs_of(app) == 1
    assert post("full").status_code == 202
    wait_for(lambda: jobs_of(app) == 2)


# -- workers that die ---------------------------------------------------------------------
def document_of(app: Any, answer: Any) -> dict[str, Any]:
    return app.test_client().get(poll_path(answer.headers["Location"])).get_json()


def sealed(app: Any, answer: Any, timeout: float = 30.0) -> dict[str, Any]:
    """The job's document once it is sealed (fails the test if it is not in time)."""
    return wait_for(
        lambda: (doc := document_of(app, answer))["CompletedOn"] is not None and doc,
        timeout=timeout,
    )


def test_a_job_taken_by_a_worker_that_died_before_starting_it_runs_again(app, state, start_worker):
    """Reproduction 1: a worker took the job off the queue (RQ moved it to its
    intermediate list) and died before the task started. The reaper finds it and
    dispatches it again; it runs once and succeeds (RQ alone would fail it after ten
    minutes, or never with no worker doing maintenance)."""
    answer = webhook(app)()
    taken = state.queue.dequeue_any([state.queue], None, connection=state.redis)
    assert taken is not None  # the job is now in RQ's intermediate list, and no one runs it
    assert state.redis.lrange(state.queue.intermediate_queue_key, 0, -1)
    start_worker()
    final = sealed(app, answer)
    assert (final["Status"], final["ProcessedCount"], final["Error"]) == ("succeeded", 1, None)
    assert not state.redis.lrange(state.queue.intermediate_queue_key, 0, -1)


def test_a_stopped_idle_worker_killed_after_a_trigger_leaves_no_job_behind(
    app, state, start_worker
):
    """An idle worker blocked in RQ's dequeue is stopped (SIGSTOP): Redis still hands it
    the next job. Killed then, it never starts it; another worker's reaper runs it."""
    idle = start_worker()
    wait_for(
        lambda: any(
            state.redis.hget(key, "state") == b"idle" for key in state.redis.keys("rq:worker:*")
        )
    )
    # from idle to blocked in RQ's BLMOVE (the last command of a client blocked in it)
    wait_for(lambda: any(c["cmd"] == "blmove" for c in state.redis.client_list()))
    os.killpg(idle.process.pid, signal.SIGSTOP)
    answer = webhook(app)()
    wait_for(lambda: state.redis.lrange(state.queue.intermediate_queue_key, 0, -1))
    os.killpg(idle.process.pid, signal.SIGKILL)
    idle.process.wait()
    start_worker()
    final = sealed(app, answer)
    assert (final["Status"], final["ProcessedCount"]) == ("succeeded", 1)


def test_a_job_whose_start_attempts_all_died_ends_failed_not_started(make_app):
    app = make_app(IDMS_WEBHOOKS_START_ATTEMPTS=2, IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=1)
    state = state_of(app)
    answer = webhook(app)()
    for _ in range(2):  # each dispatch is taken, and its worker dies
        wait_for(lambda: state.queue.dequeue_any([state.queue], None, connection=state.redis))
        wait_for(lambda: state.recovery.reap(), interval=0.2)
    final = document_of(app, answer)
    assert final["Status"] == "failed"
    assert final["Error"]["Type"] == "NotStarted"
    assert "2 time(s)" in final["Error"]["Message"]
    assert state.queue.count == 0


def test_a_redis_restart_mid_job_ends_succeeded_with_its_true_counts(
    make_app, stallable_redis, start_worker
):
    """Reproduction 4: Redis killed (kill -9, AOF everysec) mid-job and back 2 s later:
    the worker rides it out and the job ends succeeded with every row counted."""
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
    start_worker(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url, IDMS_WEBHOOKS_STORE_OUTAGE="60")
    client = app.test_client()
    key = state_of(app).credentials.task_key(state_of(app).tasks["count"])
    answer = client.post(
        f"/idms/tasks/count/jobs?key={key}",
        json={"QueryParameters": {"Count": 40, "Delay": 0.05}},
    )
    wait_for(lambda: document_of(app, answer)["ProcessedCount"] >= 10)
    assert stallable_redis.process is not None
    stallable_redis.process.kill()
    stallable_redis.process.wait()
    time.sleep(2)  # the outage: the job's 30 rows left take 1.5 s
    stallable_redis.start()  # same port, same directory: it reloads its AOF
    final = sealed(app, answer, timeout=60)
    assert (final["Status"], final["ProcessedCount"], final["Error"]) == ("succeeded", 40, None)


def test_a_redis_pause_mid_job_is_ridden_out_and_the_job_succeeds(
    make_app, stallable_redis, start_worker
):
    """Redis stopped (SIGSTOP) for 3 s mid-job, longer than the heartbeat timeout (2 s):
    polls answer 503 meanwhile; the job is not declared dead, and ends succeeded with
    every row counted."""
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
    start_worker(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
    key = state_of(app).credentials.task_key(state_of(app).tasks["count"])
    answer = app.test_client().post(
        f"/idms/tasks/count/jobs?key={key}",
        json={"QueryParameters": {"Count": 40, "Delay": 0.05}},
    )
    wait_for(lambda: document_of(app, answer)["ProcessedCount"] >= 10)
    with paused(stallable_redis):  # the job's 30 rows left take 1.5 s
        poll = app.test_client().get(poll_path(answer.headers["Location"]))
        assert poll.status_code == 503
        time.sleep(3)
    final = sealed(app, answer, timeout=60)
    assert (final["Status"], final["ProcessedCount"], final["Error"]) == ("succeeded", 40, None)


def test_a_worker_outlives_redis_out_of_memory_and_serves_when_it_is_back(
    make_app, stallable_redis, start_worker
):
    """Reproduction 5 (workers): RQ's worker quits on Redis's OOM answer; ours waits and
    serves the queued job once memory is freed."""
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
    answer = webhook(app)()
    admin = redis.Redis.from_url(stallable_redis.url)
    admin.config_set("maxmemory", 1)
    try:
        worker = start_worker(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
        # RQ's own worker quits at the first refusal; ours tries again, and again
        wait_for(lambda: worker.log.read_text().count("Redis unavailable (OutOfMemoryError") >= 3)
        assert worker.process.poll() is None, worker.log.read_text()[-2000:]
    finally:
        admin.config_set("maxmemory", 0)
    final = sealed(app, answer)
    assert (final["Status"], final["ProcessedCount"]) == ("succeeded", 1)


def marker_jobs(app: Any, count: int, mark: str) -> Any:
    state = state_of(app)
    key = state.credentials.task_key(state.tasks["marker"])
    return app.test_client().post(
        f"/idms/tasks/marker/jobs?key={key}",
        json={"QueryParameters": {"Count": count, "Mark": mark}},
    )


def test_a_cancel_racing_the_start_seals_what_really_happened(app, state):
    """Reproduction 6: DELETE reads the job while queued, as a worker starts it. The
    sealed document must match what ran: cancelled with the rows it wrote (0 only if it
    never ran), no chained child for a cancelled job; else succeeded, child started."""
    client = app.test_client()
    outcomes = set()
    for attempt in range(12):
        mark = f"mark-{attempt}"
        answer = marker_jobs(app, 30, mark)
        job_id = answer.get_json()["ExecuteId"]
        cancel = threading.Timer(
            0.002 * attempt,
            lambda job_id=job_id: client.delete(f"/idms/jobs/{job_id}", headers=ADMIN),
        )
        cancel.start()
        make_worker(app, simple=True).work(burst=True, logging_level="ERROR")
        cancel.join(30)
        make_worker(app, simple=True).work(burst=True, logging_level="ERROR")  # any child
        final = document_of(app, answer)
        written = state.redis.llen(mark)
        assert final["CompletedOn"] is not None
        assert final["ProcessedCount"] == final["UpdatedCount"] == written, final
        children = [entry for entry in final["Chain"] if entry["ExecuteId"]]
        if final["Status"] == "cancelled":
            assert children == []
        else:
            assert final["Status"] == "succeeded" and written == 30 and len(children) == 1
        outcomes.add((final["Status"], 0 < written < 30))
    assert ("cancelled", False) in outcomes or ("cancelled", True) in outcomes


def test_a_horse_killed_between_its_chain_and_its_seal_keeps_its_children(app, state, monkeypatch):
    """Reproduction 7: the work-horse dies after starting its on_success children and
    before sealing (here: after claiming them, before creating the second one). The
    reaper seals the parent with those children in its Chain, and creates the missing
    one."""
    answer = marker_jobs(app, 2, "chain")
    real_create = state.store.create_once

    def die_after_the_first(*args: Any, **kwargs: Any) -> bool:
        monkeypatch.setattr(state.store, "create_once", real_create)
        raise SystemExit("the work-horse died")

    monkeypatch.setattr(state.store, "create_once", die_after_the_first)
    job_id = answer.get_json()["ExecuteId"]
    with app.app_context(), suppress(SystemExit):
        state.jobs.run(job_id, job_id)
    state.redis.delete(state.store.heartbeat_key(job_id))
    state.redis.set(state.store.suspect_key(job_id), str(time.time() - 60))
    assert state.recovery.reap() == 1
    final = document_of(app, answer)
    assert final["Status"] == "failed"
    (entry,) = final["Chain"]
    assert entry["TaskId"] == "child" and entry["ExecuteId"]
    child = app.test_client().get(poll_path(entry["PollingUrl"]))
    assert child.status_code == 202


def test_an_evicting_redis_is_warned_about_loudly_by_the_web_side_and_the_worker(
    make_app, stallable_redis, caplog
):
    """A Redis that may evict keys would lose records and queued jobs silently: both
    sides say so at start. Where CONFIG is refused (a managed Redis), nothing is said."""
    admin = redis.Redis.from_url(stallable_redis.url)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with caplog.at_level("WARNING", logger="flask_idms_webhooks"):
            app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
            make_worker(app)
        warnings = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        assert len(warnings) == 2
        assert all("'allkeys-lru'" in w and "silently delete" in w for w in warnings)

        admin.execute_command(
            "ACL", "SETUSER", "managed", "on", ">pw", "~*", "&*", "+@all", "-config"
        )
        caplog.clear()
        host = stallable_redis.url.removeprefix("redis://")
        with caplog.at_level("WARNING", logger="flask_idms_webhooks"):
            managed = make_app(IDMS_WEBHOOKS_REDIS_URL=f"redis://managed:pw@{host}")
            make_worker(managed)
            assert webhook(managed)().status_code == 202
        assert not [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
    caplog.clear()
    with caplog.at_level("WARNING", logger="flask_idms_webhooks"):
        make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url)
    assert not [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]


def test_a_running_job_that_ignores_its_cancel_is_killed_after_the_grace(app, state, start_worker):
    """A task that never checks for a cancel (it blocks) is stopped by its worker once
    IDMS_WEBHOOKS_CANCEL_GRACE has passed; its record says its counts may lag."""
    start_worker(IDMS_WEBHOOKS_CANCEL_GRACE="1")
    key = state.credentials.task_key(state.tasks["sleep"])
    client = app.test_client()
    answer = client.post(
        f"/idms/tasks/sleep/jobs?key={key}", json={"QueryParameters": {"Seconds": 60}}
    )
    wait_for(lambda: document_of(app, answer)["Status"] == "in progress")
    asked = time.monotonic()
    cancel = client.delete(f"/idms/jobs/{answer.get_json()['ExecuteId']}", headers=ADMIN)
    assert cancel.status_code == 202
    assert cancel.get_json()["StatusDescription"] == "Cancellation requested"
    assert document_of(app, answer)["Status"] == "in progress"  # not killed at once
    final = sealed(app, answer, timeout=20)
    assert time.monotonic() - asked >= 1
    assert final["Status"] == "cancelled"
    assert "counts may lag" in final["Error"]["Message"]
    assert final["Chain"] == []


# -- upgrades -------------------------------------------------------------------------------
def old_release_job(app: Any, count: int) -> tuple[str, str]:
    """A job as the previous release wrote it: its record without Attempt or Attempts,
    RQ job id = job id, no dispatch record, not in the queued list. Answers (job id,
    poll path)."""
    from flask_idms_webhooks.jobs.lifecycle import ENTRY_POINT
    from flask_idms_webhooks.jobs.store import dumps

    state = state_of(app)
    document = state.jobs.prepare(
        state.tasks["count"],
        state.parameters["count"].resolve({"Count": count}),
        "http://localhost",
    )
    del document["Attempt"], document["Attempts"]  # type: ignore[misc]
    job_id = document["ExecuteId"]
    state.redis.set(state.store.live_key(job_id), dumps(document), ex=3600)
    state.redis.zadd(state.store.history_key("count"), {job_id: time.time()})
    state.queue.enqueue_call(ENTRY_POINT, args=(job_id,), job_id=job_id, timeout=3600)
    return job_id, poll_path(document["PollingUrl"])


def test_a_job_the_previous_release_queued_still_polls_and_runs(app, state, run_burst):
    _job_id, path = old_release_job(app, 4)
    client = app.test_client()
    assert client.get(path).status_code == 202
    run_burst()
    final = client.get(path).get_json()
    assert (final["Status"], final["ProcessedCount"]) == ("succeeded", 4)
    assert (final["Attempt"], final["Attempts"]) == (1, [])


def test_a_job_the_previous_release_queued_is_recovered_if_its_worker_died(
    make_app,
):
    """Not in our queued list, but in RQ's intermediate list: the reaper still finds it."""
    app = make_app(IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=1)
    state = state_of(app)
    _job_id, path = old_release_job(app, 2)
    assert state.queue.dequeue_any([state.queue], None, connection=state.redis)
    wait_for(lambda: state.recovery.reap(), interval=0.2)
    doc = app.test_client().get(path).get_json()
    assert doc["Status"] == "queued" and "start attempt 2" in doc["StatusDescription"]
    make_worker(app, simple=True).work(burst=True, logging_level="ERROR")
    assert app.test_client().get(path).get_json()["Status"] == "succeeded"


def test_a_job_the_previous_release_queued_cancels_in_one_step(app, state):
    job_id, _path = old_release_job(app, 2)
    cancel = app.test_client().delete(f"/idms/jobs/{job_id}", headers=ADMIN)
    assert cancel.get_json()["Status"] == "cancelled"
    assert state.queue.count == 0


def test_a_short_storm_of_worker_kills_leaves_no_job_behind(capsys):
    """``make chaos`` in small: workers and their work-horses SIGKILLed at random
    instants while jobs come in; every job ends sealed, truthfully, none stuck or lost.
    (Short jobs, the suite's heartbeat timeout: a kill every ~1 s while 8 jobs come in
    over 3 s is at least two kills.)"""
    from bench import chaos

    status = chaos.main(
        ["--jobs", "8", "--every", "0.4", "--kill-every", "1", "--rows", "10", "30",
         "--delay", "0.05", "--heartbeat-timeout", "2", "--settle", "60", "--seed", "3"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert "accepted 8, sealed 8" in out and "stuck 0, lost 0, untruthful 0" in out
    kills = re.search(r"(\d+) worker kills", out)
    assert kills is not None and int(kills[1]) >= 2, out


def test_a_dispatch_that_started_meanwhile_is_never_dispatched_again(app, state):
    """The reaper read a job as taken and not started; its worker starts it before the
    reaper writes: the job is not dispatched a second time (no double run), and the death
    of an old dispatch's process does not seal the job another dispatch runs."""
    answer = webhook(app)()
    job_id = answer.get_json()["ExecuteId"]
    assert state.queue.dequeue_any([state.queue], None, connection=state.redis)
    before = state.store.dispatch(job_id)
    document = document_of(app, answer)
    document["Status"] = "in progress"
    assert state.store.start(document, job_id) == 1  # the worker wins the race
    state.recovery.dispatch_again(job_id, before)
    assert state.queue.count == 0
    assert document_of(app, answer)["Status"] == "in progress"
    state.recovery.seal_abandoned(job_id, ("WorkerDied", "old horse"), f"{job_id}--7")
    assert document_of(app, answer)["CompletedOn"] is None
