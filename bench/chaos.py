"""``make chaos`` (``python -m bench.chaos``): a storm of worker deaths, and the count of
what became of every accepted job.

Three forking workers serve a private Redis (AOF on), with a heartbeat timeout of
``--heartbeat-timeout`` seconds. Jobs (``--rows`` rows each, one every ``--delay``
seconds) are triggered one every ``--every`` seconds; every ``--kill-every`` seconds one
worker, chosen at random, is SIGKILLed with its work-horse (its whole process group), at
whatever instant that is (idle in RQ's dequeue, between dequeue and start, mid-run,
sealing), and a new worker takes its place. Once the last job is accepted the kills stop
and the jobs are given ``--settle`` seconds to end.

Each job writes its rows into a Redis set (a retry rewrites the same rows: its work is
safe to repeat, and its task has ``retries = 3``). The report counts the jobs accepted,
sealed (by status), run again (a later dispatch or attempt), stuck (not sealed in time)
and lost (their record gone), and checks that every succeeded job's rows are all there
and counted once. It exits 1 if any job is stuck, lost or untruthful.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import redis
from flask import Flask, current_app

from flask_idms_webhooks import DataType, FilterRow, IdmsWebhooks, JobContext, Prompt
from flask_idms_webhooks.jobs.store import loads
from flask_idms_webhooks.redis_server import PrivateRedis
from flask_idms_webhooks.state import state_of

ROOT = Path(__file__).resolve().parent.parent
SECRET = "chaos-secret-not-for-production"  # noqa: S105 (a throwaway storm)
HEARTBEAT_TIMEOUT = 4  # the default of --heartbeat-timeout

webhooks = IdmsWebhooks()


@webhooks.task(
    "storm",
    filters=[
        FilterRow("Storm", "Rows", type=DataType.INT32, prompt=Prompt.REQUIRED),
        FilterRow("Storm", "Delay", type=DataType.DOUBLE, prompt=Prompt.REQUIRED),
    ],
    retries=3,
    retry_delays=[1],
    idempotent=True,
)
def storm(parameters: Mapping[str, Any], context: JobContext) -> None:
    """Writes rows 1..Rows into the Redis set ``chaos:rows:<job>``, one every Delay s."""
    connection = redis.Redis.from_url(current_app.config["IDMS_WEBHOOKS_REDIS_URL"])
    rows = parameters["Rows"]
    context.set_row_count(rows)
    for row in range(1, rows + 1):
        context.check_cancelled()
        time.sleep(parameters["Delay"])
        connection.sadd(f"chaos:rows:{context.job_id}", row)
        context.count(updated=1)


def create_app() -> Flask:
    app = Flask("chaos")
    app.config.update(
        IDMS_WEBHOOKS_REDIS_URL=os.environ["CHAOS_REDIS_URL"],
        IDMS_WEBHOOKS_SECRET_KEY=SECRET,
        IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=int(
            os.environ.get("CHAOS_HEARTBEAT_TIMEOUT", HEARTBEAT_TIMEOUT)
        ),
        IDMS_WEBHOOKS_QUEUE_NAME="chaos",
    )
    webhooks.init_app(app)
    return app


def children(pid: int) -> list[int]:
    """The pids of a process's children (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


class Workers:
    """The storm's forking workers, each in a process group of its own."""

    def __init__(
        self, url: str, logs: Path, app: str = "bench.chaos:create_app", *options: str
    ) -> None:
        self.url, self.logs, self.app, self.options = url, logs, app, options
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log_files: list[IO[bytes]] = []
        self.started = 0

    def start(self) -> None:
        env = {**os.environ, "CHAOS_REDIS_URL": self.url, "PYTHONUNBUFFERED": "1"}
        env["CHAOS_HEARTBEAT_TIMEOUT"] = os.environ["CHAOS_HEARTBEAT_TIMEOUT"]
        log = (self.logs / f"worker-{self.started}.log").open("wb")
        self.log_files.append(log)
        self.started += 1
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", self.app,
                 "idms-webhooks", "worker", "--logging-level", "WARNING", *self.options],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip

    def kill_one(self, pid: int | None = None) -> None:
        """SIGKILL one worker (the one of ``pid``, else one at random) and its horse."""
        index = random.randrange(len(self.processes))
        if pid is not None:
            index = next(i for i, p in enumerate(self.processes) if p.pid == pid)
        victim = self.processes.pop(index)
        # The work-horse is in a process group of its own: kill it by its pid, with the
        # worker (and its scheduler) in theirs.
        for pid in children(victim.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []
        for log in self.log_files:
            log.close()


def storm_run(options: argparse.Namespace, directory: Path) -> int:
    server = PrivateRedis(directory / "redis", unix_socket=False, persistent=True).start()
    # the storm's own app (here) and its workers' read these
    os.environ["CHAOS_REDIS_URL"] = server.url
    os.environ["CHAOS_HEARTBEAT_TIMEOUT"] = str(options.heartbeat_timeout)
    workers = Workers(server.url, directory)
    try:
        app = create_app()
        state = state_of(app)
        client = app.test_client()
        key = state.credentials.task_key(state.tasks["storm"])
        for _ in range(3):
            workers.start()
        accepted: dict[str, int] = {}
        refused = 0
        kills = 0
        next_kill = time.monotonic() + options.kill_every
        for _ in range(options.jobs):
            rows = random.randint(*options.rows)
            answer = client.post(
                f"/idms/tasks/storm/jobs?key={key}",
                json={"QueryParameters": {"Rows": rows, "Delay": options.delay}},
            )
            if answer.status_code == 202:
                accepted[answer.get_json()["ExecuteId"]] = rows
            else:
                refused += 1
            deadline = time.monotonic() + options.every
            while time.monotonic() < deadline:
                if time.monotonic() >= next_kill:
                    workers.kill_one()
                    workers.start()
                    kills += 1
                    next_kill = time.monotonic() + options.kill_every * random.uniform(0.5, 1.5)
                time.sleep(0.05)
        settle_by = time.monotonic() + options.settle
        documents: dict[str, dict[str, Any] | None] = {}
        while time.monotonic() < settle_by:
            documents = {job_id: read(state, job_id) for job_id in accepted}
            if all(doc is not None and doc["CompletedOn"] for doc in documents.values()):
                break
            time.sleep(0.2)
        return report(state, options, accepted, documents, refused, kills)
    finally:
        workers.stop()
        server.stop()


def read(state: Any, job_id: str) -> dict[str, Any] | None:
    sealed, live, _ = state.store.read(job_id)
    record = sealed or live
    if record is None:
        return None
    document: dict[str, Any] = loads(record)
    return document


def report(
    state: Any,
    options: argparse.Namespace,
    accepted: Mapping[str, int],
    documents: Mapping[str, dict[str, Any] | None],
    refused: int,
    kills: int,
) -> int:
    statuses: Counter[str] = Counter()
    stuck = lost = rerun = untruthful = 0
    for job_id, rows in accepted.items():
        doc = documents.get(job_id)
        if doc is None:
            lost += 1
            continue
        if not doc["CompletedOn"]:
            stuck += 1
            print(f"stuck: {job_id} {doc['Status']}: {doc['StatusDescription']}")
            continue
        statuses[doc["Status"]] += 1
        if state.store.dispatch(job_id).number > 1 or doc.get("Attempt", 1) > 1:
            rerun += 1
        written = state.redis.scard(f"chaos:rows:{job_id}")
        if doc["Status"] == "succeeded" and not (doc["ProcessedCount"] == rows == written):
            untruthful += 1
            print(f"untruthful: {job_id} rows {rows}, counted {doc['ProcessedCount']}, "
                  f"written {written}")  # fmt: skip
    sealed = sum(statuses.values())
    print(
        f"chaos: {options.jobs} triggers ({refused} refused), {kills} worker kills every "
        f"~{options.kill_every:g} s, heartbeat timeout {options.heartbeat_timeout} s\n"
        f"  accepted {len(accepted)}, sealed {sealed} "
        f"({', '.join(f'{status} {n}' for status, n in sorted(statuses.items()))}), "
        f"re-run {rerun}, stuck {stuck}, lost {lost}, untruthful {untruthful}"
    )
    return 1 if stuck or lost or untruthful else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=30, help="jobs to trigger (default 30)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between triggers")
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds for jobs to end")
    parser.add_argument("--rows", type=int, nargs=2, default=(20, 80), metavar=("MIN", "MAX"),
                        help="rows per job, drawn between MIN and MAX (default 20 80)")  # fmt: skip
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per row (default 0.1)")
    parser.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=HEARTBEAT_TIMEOUT,
        help=f"IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT of the storm (default {HEARTBEAT_TIMEOUT})",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    options = parser.parse_args(argv)
    random.seed(options.seed)
    with tempfile.TemporaryDirectory(prefix="idms-chaos-") as directory:
        return storm_run(options, Path(directory))


if __name__ == "__main__":
    sys.exit(main())
