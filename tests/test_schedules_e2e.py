"""Schedules end to end: real forking workers (and the standalone scheduler) sharing one
Redis, a due time every second (a seconds field: IDMS_WEBHOOKS_SCHEDULE_SECONDS).
Nothing here is timed: each due time is counted, and must have one job, or a skip."""

from __future__ import annotations

import itertools
import os
from datetime import datetime

import pytest

from flask_idms_webhooks.jobs.store import loads
from flask_idms_webhooks.state import state_of
from tests.helpers import WorkerProcess, wait_for
from tests.schedule_app import create_app
from tests.test_schedules import task_file

pytestmark = pytest.mark.e2e

EVERY_SECOND = """
schedule = "* * * * * *"
schedule_parameters = { Region = "EU" }
"""


@pytest.fixture
def env(tmp_path, redis_url, queue_name):
    path = task_file(tmp_path, EVERY_SECOND)
    return {
        "IDMS_WEBHOOKS_TASKS_FILE": str(path),
        "IDMS_WEBHOOKS_SCHEDULE_SECONDS": "1",
        "IDMS_WEBHOOKS_SCHEDULER_LEASE": "2s",
        "IDMS_WEBHOOKS_REDIS_URL": redis_url,
        "IDMS_WEBHOOKS_QUEUE_NAME": queue_name,
    }


@pytest.fixture
def state(env):
    return state_of(create_app(**env))


def scheduled_jobs(state) -> list[dict]:
    raw = state.store.history("nightly", 0, 1000)[1]
    return [job for job in map(loads, raw) if job.get("Trigger") == "schedule"]


def finished(state) -> list[dict]:
    return [job for job in scheduled_jobs(state) if job["Status"] == "succeeded"]


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def assert_one_job_per_due_time(state) -> list[dict]:
    """Every due time from the first to the last handled has one job, a recorded skip, or
    was folded into a catch-up run (``Missed``), and no due time has two jobs."""
    jobs = scheduled_jobs(state)
    due_times = [job["DueOn"] for job in jobs]
    assert len(due_times) == len(set(due_times)), sorted(due_times)
    runs = sorted(state.scheduler.views()["nightly"]["RecentRuns"], key=lambda r: r["DueOn"])
    handled = [epoch(run["DueOn"]) for run in runs]
    assert len(handled) == len(set(handled))
    # due times a second apart: none lost between the first and the last
    for earlier, later in itertools.pairwise(runs):
        gap = epoch(later["DueOn"]) - epoch(earlier["DueOn"])
        assert gap == later.get("Missed", 0) + 1, (earlier, later)
    started = {run["DueOn"]: run["ExecuteId"] for run in runs if "ExecuteId" in run}
    assert {job["DueOn"]: job["ExecuteId"] for job in jobs if job["DueOn"] in started} == started
    return jobs


def stop_together(*workers: WorkerProcess) -> None:
    """Warm shutdowns, all asked for before any is waited for (each waits up to a second
    for RQ's scheduler process)."""
    for worker in workers:
        worker.ask_to_stop()
    for worker in workers:
        worker.wait_stopped()


def test_two_workers_start_one_job_per_due_time(env, state, start_worker):
    workers = [start_worker("tests.schedule_app:create_app", **env) for _ in range(2)]
    wait_for(lambda: len(finished(state)) >= 8, timeout=60)
    stop_together(*workers)
    jobs = assert_one_job_per_due_time(state)
    assert all(job["PollingUrl"].startswith("https://sync.example.org/") for job in jobs)
    logs = [worker.log.read_text() for worker in workers]
    assert sum("took the scheduler role" in log for log in logs) >= 1


def test_the_scheduler_role_passes_on_when_its_holder_is_killed(env, state, start_worker):
    app = "tests.schedule_app:create_app"
    runner = start_worker(app, "worker", "--no-schedules", **env)  # runs the jobs only
    contenders = {
        "worker": start_worker(app, **env),
        "scheduler": start_worker(app, "scheduler", **env),
    }
    holder = wait_for(state.store.scheduler_holder, timeout=30)
    wait_for(lambda: len(finished(state)) >= 2, timeout=60)
    pid = int(holder.split(":")[1])
    name, killed = next((n, p) for n, p in contenders.items() if p.process.pid == pid)
    killed.kill()
    before = {job["ExecuteId"] for job in scheduled_jobs(state)}
    successor = wait_for(
        lambda: (h := state.store.scheduler_holder()) and h != holder and h, timeout=30
    )
    survivor = next(p for n, p in contenders.items() if n != name)
    assert int(successor.split(":")[1]) == survivor.process.pid
    wait_for(lambda: len({j["ExecuteId"] for j in finished(state)} - before) >= 2, timeout=60)
    stop_together(runner, survivor)
    assert_one_job_per_due_time(state)
    assert "took the scheduler role" in survivor.log.read_text()
    assert os.path.exists(runner.log) and "scheduler role" not in runner.log.read_text()
