"""Schedules under faults: Redis paused before or in the middle of a due time's claim, and
a scheduled job whose worker died. The due time ends with the one job that really
started, and the failure counter counts what really happened, once."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import time_machine

from flask_idms_webhooks.errors import StoreUnavailable
from flask_idms_webhooks.jobs.store import loads
from flask_idms_webhooks.state import state_of
from tests.schedule_app import create_app
from tests.test_faults import paused
from tests.test_schedules import NIGHTLY, at, history, task_file


@pytest.fixture
def stalling_app(tmp_path, stallable_redis, queue_name):
    return create_app(
        IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url,
        IDMS_WEBHOOKS_REDIS_TIMEOUT=0.3,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        IDMS_WEBHOOKS_TASKS_FILE=str(task_file(tmp_path, NIGHTLY)),
    )


def test_a_redis_pause_before_the_claim_leaves_the_due_time_to_the_next_tick(
    stalling_app, stallable_redis
):
    state = state_of(stalling_app)
    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False) as clock:
        state.scheduler.tick()
        clock.move_to(at("2026-12-06T02:00:00Z"))
        with paused(stallable_redis), pytest.raises(StoreUnavailable):
            state.scheduler.tick()
        assert state.scheduler.tick()["nightly"].outcome == "started"
        assert state.scheduler.tick() == {}
    assert [job["DueOn"] for job in history(state)] == ["2026-12-06T02:00:00Z"]


def test_a_redis_pause_with_the_claim_on_the_socket_ends_with_one_job(
    stalling_app, stallable_redis, monkeypatch
):
    """The claim's transaction is sent and Redis stops before answering: the scheduler
    cannot know; Redis runs it on resume, and the next tick finds the due time taken."""
    state = state_of(stalling_app)
    store = state.store
    real_write = store._write_new

    def pause_before_the_transaction(*args: Any, **kwargs: Any) -> None:
        real_write(*args, **kwargs)
        os.kill(stallable_redis.process.pid, signal.SIGSTOP)

    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False) as clock:
        state.scheduler.tick()
        clock.move_to(at("2026-12-06T02:00:00Z"))
        monkeypatch.setattr(store, "_write_new", pause_before_the_transaction)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                state.scheduler.tick()
        finally:
            os.kill(stallable_redis.process.pid, signal.SIGCONT)
        monkeypatch.undo()
        assert caught.value.sent
        assert state.scheduler.tick() == {}  # taken: the transaction ran on resume
    jobs = history(state)
    runs = state.scheduler.views()["nightly"]["RecentRuns"]
    assert [job["DueOn"] for job in jobs] == ["2026-12-06T02:00:00Z"]
    assert runs == [{"DueOn": "2026-12-06T02:00:00Z", "ExecuteId": jobs[0]["ExecuteId"]}]


def test_a_scheduled_job_whose_worker_died_counts_as_one_failure(scheduled_with_limit):
    """A poller and the reaper both see the dead job's end: it is sealed once, failed
    (WorkerDied), and counted once; with max_failures = 1 that turns the schedule off."""
    app = scheduled_with_limit
    state = state_of(app)
    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False) as clock:
        state.scheduler.tick()
        clock.move_to(at("2026-12-06T02:00:00Z"))
        job_id = state.scheduler.tick()["nightly"].job_id
    # As a worker that died mid-run leaves it: started, heartbeat gone, long unseen.
    (document,) = history(state)
    document["Status"] = "in progress"
    assert state.store.start(document) == 1
    state.redis.delete(state.store.heartbeat_key(job_id))
    since = time.time() - state.settings.heartbeat_timeout
    state.redis.set(state.store.suspect_key(job_id), str(since))
    sealed, finished, _ = state.jobs.current(job_id)  # a poller sees the end first ...
    assert finished and loads(sealed)["Error"]["Type"] == "WorkerDied"
    state.recovery.reap()  # ... then the reaper: nothing more is sealed or counted
    assert state.jobs.current(job_id)[0] == sealed
    view = state.scheduler.views()["nightly"]
    assert view["ConsecutiveFailures"] == 1 and view["LastOutcome"] == "failed"
    assert view["Enabled"] is False and "WorkerDied" in view["DisabledReason"]


@pytest.fixture
def scheduled_with_limit(tmp_path, redis_url, queue_name):
    return create_app(
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=2,
        IDMS_WEBHOOKS_TASKS_FILE=str(task_file(tmp_path, NIGHTLY + "max_failures = 1\n")),
    )
