"""``python -m bench.schedules``: two (or more) forking workers run the schedules for a
while; the report lists every due time with its job, and counts the due times with no job
or with two.

A private Redis; task ``every-2s`` is due every two seconds (a seconds field), task
``always-fails`` every three seconds with ``max_failures = 3``. With ``--kill-holder``
the worker holding the scheduler role is SIGKILLed halfway (its work-horse too) and a new
worker starts. Exits 1 if a due time between the first and the last has no job (other
than a recorded skip or catch-up) or has two, or if ``always-fails`` did not turn itself
off after three failures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask

from flask_idms_webhooks import IdmsWebhooks, JobContext
from flask_idms_webhooks.jobs.store import loads
from flask_idms_webhooks.redis_server import PrivateRedis
from flask_idms_webhooks.state import WebhooksState, state_of

from .chaos import Workers

webhooks = IdmsWebhooks()


@webhooks.task("every-2s", schedule="*/2 * * * * *")
def every_two_seconds(parameters: Mapping[str, Any], context: JobContext) -> None:
    """A short run: one row, a fifth of a second."""
    context.set_row_count(1)
    time.sleep(0.2)
    context.count(updated=1)


@webhooks.task("always-fails", schedule="*/3 * * * * *", max_failures=3)
def always_fails(parameters: Mapping[str, Any], context: JobContext) -> None:
    raise RuntimeError("the target refused the login")


def create_app() -> Flask:
    app = Flask("schedules")
    app.config.update(
        IDMS_WEBHOOKS_REDIS_URL=os.environ["CHAOS_REDIS_URL"],
        IDMS_WEBHOOKS_SECRET_KEY="schedules-demo-secret",  # noqa: S106 (a throwaway run)
        IDMS_WEBHOOKS_PUBLIC_URL="http://127.0.0.1:8000",
        IDMS_WEBHOOKS_SCHEDULE_SECONDS=True,
        IDMS_WEBHOOKS_SCHEDULER_LEASE="3s",
        IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=4,
        IDMS_WEBHOOKS_QUEUE_NAME="schedules",
    )
    webhooks.init_app(app)
    return app


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def jobs_of(state: WebhooksState, task_id: str) -> list[dict[str, Any]]:
    raw = state.store.history(task_id, 0, 10_000)[1]
    return sorted((loads(item) for item in raw), key=lambda job: job["DueOn"] or "")


def report(state: WebhooksState, kills: list[str], runs: dict[str, Any]) -> int:
    jobs = jobs_of(state, "every-2s")
    per_due = Counter(job["DueOn"] for job in jobs)
    print(f"every-2s: {len(jobs)} scheduled job(s)")
    print(f"  {'DueOn':22} {'ExecuteId':24} {'Status':10} Trigger")
    for job in jobs:
        print(f"  {job['DueOn']:22} {job['ExecuteId']:24} {job['Status']:10} {job['Trigger']}")
    runs.update(recent_runs(state))
    first, last = epoch(jobs[0]["DueOn"]), epoch(jobs[-1]["DueOn"])
    expected = int((last - first) / 2) + 1
    twice = [due for due, count in per_due.items() if count > 1]
    folded = sum(int(run.get("Missed", 0)) for run in runs.values())
    folded_into = [due for due, run in sorted(runs.items()) if run.get("Missed")]
    skipped = [due for due, run in runs.items() if "Skipped" in run]
    gaps = expected - len(per_due) - folded - len(skipped)
    print(
        f"  due times from first to last: {expected}; with one job: {len(per_due) - len(twice)};"
        f" with two or more: {len(twice)}; skipped: {len(skipped)}; folded into a"
        f" catch-up: {folded}; without a job: {gaps}"
    )
    for kill in kills:
        print(f"  killed the scheduler role's holder: {kill}")
    for due in folded_into:
        print(f"  {due} ran for {runs[due]['Missed']} earlier due time(s) too (catch_up)")
    failing = state.scheduler.views()["always-fails"]
    failed = jobs_of(state, "always-fails")
    statuses = sorted({job["Status"] for job in failed})
    print(f"always-fails: {len(failed)} scheduled job(s), {', '.join(statuses)}")
    shown = {key: failing[key] for key in (  # type: ignore[literal-required]
        "Enabled", "NextRunOn", "ConsecutiveFailures", "MaxFailures", "LastOutcome",
        "DisabledReason")}  # fmt: skip
    print("  Schedule: " + json.dumps(shown, indent=None))
    disabled = failing["Enabled"] is False and len(failed) == 3
    return 0 if not twice and gaps <= 0 and disabled else 1


def recent_runs(state: WebhooksState) -> dict[str, Any]:
    """The due times ``every-2s`` remembers now (the last 20), by due time."""
    return {run["DueOn"]: run for run in state.scheduler.views()["every-2s"]["RecentRuns"]}


def run(options: argparse.Namespace, directory: Path) -> int:
    server = PrivateRedis(directory / "redis", unix_socket=False, persistent=True).start()
    os.environ["CHAOS_REDIS_URL"] = server.url
    workers = Workers(server.url, directory, "bench.schedules:create_app")
    kills: list[str] = []
    runs: dict[str, Any] = {}  # every due time handled, gathered as the run goes
    try:
        state = state_of(create_app())
        for _ in range(options.workers):
            workers.start()
        halfway = time.monotonic() + options.seconds / 2
        end = time.monotonic() + options.seconds
        while time.monotonic() < end:
            holder = state.store.scheduler_holder()
            if options.kill_holder and not kills and holder and time.monotonic() > halfway:
                pid = int(holder.split(":")[1])
                workers.kill_one(pid)
                workers.start()
                kills.append(f"{holder} at {time.strftime('%H:%M:%S', time.gmtime())}Z")
            runs.update(recent_runs(state))
            time.sleep(0.2)
        workers.stop()
        return report(state, kills, runs)
    finally:
        workers.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="how long the workers run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-holder", action="store_true", help="SIGKILL the role's holder")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idms-schedules-") as directory:
        return run(options, Path(directory))


if __name__ == "__main__":
    sys.exit(main())
