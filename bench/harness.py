"""The benchmark run: servers, scenarios (each interleaved with its baseline), the table."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from flask_idms_webhooks.jobs.store import JobStore
from flask_idms_webhooks.redis_server import PrivateRedis, free_port
from flask_idms_webhooks.state import state_of

from . import app as bench_app
from .baselines import GET_KEY
from .load import LoadResult, run_load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("trigger", "poll", "growth", "worker", "engine", "engine-imis", "engine-sql", "memory")
DEFAULT_GUNICORN_ARGS = "-k sync -w 4"
EXT_QUEUE = bench_app.DEFAULT_QUEUE
BARE_QUEUE = "bench-bare"


@dataclass
class Options:
    scenarios: tuple[str, ...] = SCENARIOS
    duration: float = 4.0
    reps: int = 3
    growth_duration: float = 3.0
    growth_reps: int = 2
    connections: int = 8
    max_requests: int = 100_000
    gunicorn_args: str = DEFAULT_GUNICORN_ARGS
    loader: str = "auto"
    worker_jobs: int = 2000
    engine_rows: int = 100_000
    imis_rows: int = 2_000
    imis_latency: float = 0.02
    imis_reps: int = 2
    growth_levels: tuple[int, ...] = (1_000, 10_000, 100_000)
    out: Path = RESULTS

    @classmethod
    def smoke(cls, **changes: Any) -> Options:
        tiny = cls(
            duration=0.2,
            reps=1,
            growth_duration=0.2,
            growth_reps=1,
            connections=2,
            max_requests=2_000,
            gunicorn_args="-k sync -w 2",
            worker_jobs=20,
            engine_rows=500,
            imis_rows=40,
            imis_latency=0.002,
            imis_reps=1,
            growth_levels=(10, 100, 1_000),
        )
        for name, value in changes.items():
            setattr(tiny, name, value)
        return tiny


@dataclass
class Sample:
    """One measurement: a rate (req/s, jobs/s or rows/s), latencies and Redis commands."""

    rate: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    commands: float | None = None  # Redis commands per request (or per job / per row)
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    scenario: str
    unit: str
    samples: list[Sample]
    baseline: str = ""
    baseline_samples: list[Sample] = field(default_factory=list)
    target: str = ""
    #: compares the median ratio; answers whether the target is met (None: no target)
    check: Callable[[float], bool] | None = None
    #: ratio of time (lower is better) instead of rate
    time_ratio: bool = False
    note: str = ""

    def figures(self, name: str, samples: list[Sample] | None = None) -> list[float]:
        """One figure of each sample (the row's own, or ``samples``: its baseline's)."""
        chosen = self.samples if samples is None else samples
        return [getattr(s, name) for s in chosen if getattr(s, name) is not None]

    def ratios(self) -> list[float]:
        if not self.baseline_samples:
            return []
        pairs = zip(self.samples, self.baseline_samples, strict=False)
        if self.time_ratio:
            return [a.seconds / b.seconds for a, b in pairs if a.seconds and b.seconds]
        return [a.rate / b.rate for a, b in pairs if b.rate]

    def ratio(self) -> float | None:
        if not self.baseline_samples:
            return None
        if self.time_ratio:
            return median(self.figures("seconds")) / median(
                self.figures("seconds", self.baseline_samples)
            )
        return median(self.figures("rate")) / median(self.figures("rate", self.baseline_samples))

    def met(self) -> bool | None:
        if self.check is None:
            return None
        value = self.ratio() if self.baseline_samples else median(self.figures("rate"))
        return None if value is None else self.check(value)

    def as_dict(self) -> dict[str, Any]:
        def spread(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"median": median(values), "min": min(values), "max": max(values)}

        return {
            "scenario": self.scenario,
            "unit": self.unit,
            "rate": spread(self.figures("rate")),
            "p50_ms": spread(self.figures("p50_ms")),
            "p99_ms": spread(self.figures("p99_ms")),
            "seconds": spread(self.figures("seconds")),
            "commands_per_request": spread(self.figures("commands")),
            "baseline": self.baseline,
            "baseline_rate": spread(self.figures("rate", self.baseline_samples)),
            "ratio": self.ratio(),
            "ratio_range": spread(self.ratios()),
            "target": self.target,
            "met": self.met(),
            "note": self.note,
            "samples": [asdict(s) for s in self.samples],
            "baseline_samples": [asdict(s) for s in self.baseline_samples],
        }


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# -- processes --------------------------------------------------------------------------


def wait_http(
    url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 (127.0.0.1 only)
                answer.read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it serves
        except OSError:
            if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"server at {url} did not start") from None
            time.sleep(0.1)


class Gunicorn:
    def __init__(self, name: str, app_spec: str, env: dict[str, str], args: str, logdir: Path):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logdir / f"gunicorn-{name}.log"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            *shlex.split(args),
            "--no-control-socket",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--error-logfile",
            str(self.log),
            "--log-level",
            "warning",
            app_spec,
        ]  # fmt: skip  (no --access-logfile: the access log is off)
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def wait(self, probe: str) -> None:
        try:
            wait_http(self.url + probe, process=self.process)
        except RuntimeError:
            raise RuntimeError(f"gunicorn {self.name} did not start:\n{self.tail()}") from None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def command_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_ping")
    )


# -- the run ----------------------------------------------------------------------------


class Bench:
    def __init__(self, options: Options, log: Callable[[str], None] = print) -> None:
        self.options = options
        self.log = log
        self.rows: list[Row] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="idms-bench-"))
        self.redis_server = PrivateRedis(self.tmp / "redis", unix_socket=False, persistent=False)
        self.servers: dict[str, Gunicorn] = {}
        self.finished_body: bytes = b""

    # -- set-up ----------------------------------------------------------------------
    @contextmanager
    def running(self) -> Iterator[Bench]:
        try:
            self.redis_server.start()
            self.redis_url = self.redis_server.url
            self.redis = redis.Redis.from_url(
                self.redis_url, socket_timeout=30, socket_connect_timeout=5
            )
            self.env = dict(
                os.environ,
                BENCH_REDIS_URL=self.redis_url,
                BENCH_SECRET=bench_app.DEFAULT_SECRET,
                BENCH_QUEUE=EXT_QUEUE,
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            )
            os.environ["BENCH_REDIS_URL"] = self.redis_url  # for the in-process app
            self.app = bench_app.create_app(IDMS_WEBHOOKS_REDIS_URL=self.redis_url)
            self.state = state_of(self.app)
            self.task = self.state.tasks[bench_app.TASK_ID]
            self.key = self.state.credentials.task_key(self.task)
            yield self
        finally:
            for server in self.servers.values():
                server.stop()
            if hasattr(self, "redis"):
                self.redis.close()
            if hasattr(self, "state"):
                self.state.redis.close()
            self.redis_server.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start_servers(self) -> None:
        if self.servers:
            return
        args = self.options.gunicorn_args
        specs = {
            "ext": ("bench.app:create_app()", "/idms/openapi.json", EXT_QUEUE),
            "pipelined": ('bench.baselines:create_app("pipelined")', "/", BARE_QUEUE),
            "enqueue": ('bench.baselines:create_app("enqueue")', "/", BARE_QUEUE),
            "get": ('bench.baselines:create_app("get")', "/", BARE_QUEUE),
        }
        for name, (spec, _, queue) in specs.items():
            env = dict(self.env, BENCH_QUEUE=queue)
            self.servers[name] = Gunicorn(name, spec, env, args, self.tmp)
        for name, (_, probe, _) in specs.items():
            self.servers[name].wait(probe)
        self.log(f"servers up: gunicorn {args} --no-control-socket, x{len(specs)}")

    # -- measurement -----------------------------------------------------------------
    def http(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        duration: float | None = None,
    ) -> Sample:
        before = command_calls(self.redis)
        result: LoadResult = run_load(
            url,
            method=method,
            body=body,
            headers=headers,
            duration=duration or self.options.duration,
            max_requests=self.options.max_requests,
            connections=self.options.connections,
            loader=self.options.loader,
        )
        after = command_calls(self.redis)
        if result.errors or result.non2xx:
            self.log(f"  ! {url}: {result.non2xx} non-2xx, {result.errors} socket errors")
        return Sample(
            rate=result.rate,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            commands=(after - before) / result.requests if result.requests else None,
            seconds=result.seconds,
            extra={"requests": result.requests, "non2xx": result.non2xx, "errors": result.errors},
        )

    def interleave(
        self, variants: dict[str, Callable[[], Sample]], reps: int | None = None
    ) -> dict[str, list[Sample]]:
        found: dict[str, list[Sample]] = {name: [] for name in variants}
        for rep in range(reps or self.options.reps):
            for name, measure in variants.items():
                sample = measure()
                found[name].append(sample)
                self.log(f"  {name} #{rep + 1}: {sample.rate:,.1f}/s")
        return found

    # -- the HTTP targets ------------------------------------------------------------
    def trigger_request(self) -> tuple[str, bytes, dict[str, str]]:
        url = f"{self.servers['ext'].url}/idms/tasks/{bench_app.TASK_ID}/jobs"
        headers = {"Content-Type": "application/json", "X-Webhook-Key": self.key}
        return url, json.dumps(bench_app.TRIGGER_BODY).encode(), headers

    def post_job_in_process(self) -> str:
        """One trigger through the app in this process (same Redis, same secret)."""
        client = self.app.test_client()
        answer = client.post(
            f"/idms/tasks/{bench_app.TASK_ID}/jobs",
            json=bench_app.TRIGGER_BODY,
            headers={"X-Webhook-Key": self.key},
        )
        assert answer.status_code == 202, answer.get_data(as_text=True)
        location = str(answer.headers["Location"])
        answer.close()
        return location

    def prepare_jobs(self) -> None:
        """A finished job (run once by a burst SimpleWorker) and a queued one (no worker)."""
        if self.finished_body:
            return
        from flask_idms_webhooks.worker import make_worker

        self.redis.delete(f"rq:queue:{EXT_QUEUE}")
        self.finished_location = self.post_job_in_process()
        worker = make_worker(self.app, simple=True)
        worker.work(burst=True, logging_level="WARNING")
        worker.connection.close()
        self.finished_id = self.finished_location.split("/jobs/")[1].split("?")[0]
        body = self.redis.get(JobStore.result_key(self.finished_id))
        assert isinstance(body, bytes), "the finished job was not sealed"
        self.finished_body = body
        self.running_location = self.post_job_in_process()
        self.redis.set(GET_KEY, body)

    def scenario_trigger(self) -> None:
        self.start_servers()
        url, body, headers = self.trigger_request()
        base_body = body
        json_header = {"Content-Type": "application/json"}
        found = self.interleave(
            {
                "trigger": lambda: self.http(url, "POST", body, headers),
                "bare pipelined enqueue": lambda: self.http(
                    self.servers["pipelined"].url + "/baseline", "POST", base_body, json_header
                ),
                "bare Queue.enqueue": lambda: self.http(
                    self.servers["enqueue"].url + "/baseline", "POST", base_body, json_header
                ),
            }
        )
        self.rows.append(Row(
            "trigger: polling POST, 3 params, key", "req/s", found["trigger"],
            "bare pipelined enqueue", found["bare pipelined enqueue"], ">= 0.90x",
            lambda r: r >= 0.90,
        ))  # fmt: skip
        self.rows.append(Row(
            "trigger vs plain enqueue", "req/s", found["trigger"],
            "bare Queue.enqueue", found["bare Queue.enqueue"], "> 1.00x", lambda r: r > 1.0,
        ))  # fmt: skip
        for name in ("bare pipelined enqueue", "bare Queue.enqueue"):
            self.rows.append(Row(f"  baseline: {name}", "req/s", found[name]))

    def scenario_poll(self) -> None:
        self.start_servers()
        self.prepare_jobs()
        base = self.servers["ext"].url
        running = base + poll_path(self.running_location)
        finished = base + poll_path(self.finished_location)
        found = self.interleave(
            {
                "poll running": lambda: self.http(running),
                "poll finished": lambda: self.http(finished),
                "bare GET": lambda: self.http(self.servers["get"].url + "/baseline"),
            }
        )
        for name in ("poll running", "poll finished"):
            self.rows.append(Row(
                f"{name} job (GET, token)", "req/s", found[name], "bare Redis GET",
                found["bare GET"], ">= 0.95x", lambda r: r >= 0.95,
            ))  # fmt: skip
        self.rows.append(Row("  baseline: bare Redis GET", "req/s", found["bare GET"]))

    def seed_finished(self, count: int) -> None:
        """``count`` finished job records in the store's key layout (and history index)."""
        template = json.loads(self.finished_body)
        ttl = self.state.settings.result_ttl
        history = JobStore.history_key(bench_app.TASK_ID)
        now = time.time()
        batch = 5_000
        for start in range(0, count, batch):
            with self.redis.pipeline(transaction=False) as pipe:
                for number in range(start, min(count, start + batch)):
                    job_id = f"seed{number:07d}-{template['ExecuteId'][:12]}"
                    document = dict(template, ExecuteId=job_id)
                    pipe.set(
                        JobStore.result_key(job_id),
                        json.dumps(document, separators=(",", ":")),
                        ex=ttl,
                    )
                    pipe.zadd(history, {job_id: now})
                pipe.execute()

    def reset_store(self) -> None:
        """An empty store but the finished job (its record put back as it was)."""
        self.redis.flushdb()
        ttl = self.state.settings.result_ttl
        self.redis.set(JobStore.result_key(self.finished_id), self.finished_body, ex=ttl)

    def scenario_growth(self) -> None:
        self.start_servers()
        self.prepare_jobs()
        url, body, headers = self.trigger_request()
        finished = self.servers["ext"].url + poll_path(self.finished_location)
        per_level: dict[int, dict[str, list[Sample]]] = {}
        seconds = self.options.growth_duration
        for level in self.options.growth_levels:
            self.reset_store()
            started = time.monotonic()
            self.seed_finished(level)
            self.log(f"  seeded {level:,} finished records in {time.monotonic() - started:.1f} s")
            per_level[level] = self.interleave(
                {
                    f"trigger @{level:,}": lambda: self.http(url, "POST", body, headers, seconds),
                    f"poll finished @{level:,}": lambda: self.http(finished, duration=seconds),
                },
                reps=self.options.growth_reps,
            )
        self.reset_store()
        first = self.options.growth_levels[0]
        for kind in ("trigger", "poll finished"):
            for level, found in per_level.items():
                self.rows.append(Row(
                    f"growth: {kind}, {level:,} retained", "req/s", found[f"{kind} @{level:,}"],
                    f"same @{first:,}" if level != first else "",
                    per_level[first][f"{kind} @{first:,}"] if level != first else [],
                    "flat (>= 0.90x)" if level != first else "",
                    (lambda r: r >= 0.90) if level != first else None,
                ))  # fmt: skip

    # -- workers ---------------------------------------------------------------------
    def enqueue_extension_jobs(self, count: int) -> list[str]:
        parameters = self.state.parameters[bench_app.TASK_ID].resolve(None)
        ids = []
        for _ in range(count):
            document = self.state.jobs.trigger(self.task, parameters, "http://127.0.0.1")
            ids.append(document["ExecuteId"])
        return ids

    def enqueue_bare_jobs(self, count: int) -> list[str]:
        from rq import Queue
        from rq.serializers import JSONSerializer

        queue = Queue(BARE_QUEUE, connection=self.redis, serializer=JSONSerializer)
        ids = []
        with self.redis.pipeline() as pipe:
            for number in range(count):
                job = queue.enqueue_call("bench.baselines.noop", args=(str(number),), pipeline=pipe)
                ids.append(job.id)
            pipe.execute()
        return ids

    def run_worker(self, kind: str) -> Sample:
        count = self.options.worker_jobs
        self.redis.flushdb()
        if kind == "extension":
            ids = self.enqueue_extension_jobs(count)
            command = [
                sys.executable, "-m", "flask", "--app", "bench.app:create_app()",
                "idms-webhooks", "worker", "--burst", "--logging-level", "WARNING",
            ]  # fmt: skip
        else:
            ids = self.enqueue_bare_jobs(count)
            command = [
                sys.executable,
                "-m",
                "bench.baselines",
                "worker",
                self.redis_url,
                BARE_QUEUE,
            ]
            if kind == "simple":
                command.append("simple")
        before = command_calls(self.redis)
        started = time.monotonic()
        completed = subprocess.run(
            command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=900
        )
        wall = time.monotonic() - started
        after = command_calls(self.redis)
        if completed.returncode != 0:
            raise RuntimeError(f"{kind} worker failed:\n{completed.stderr[-3000:]}")
        starts, durations, ends = [], [], []
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at", "status")
            fields = pipe.execute()
        done = 0
        for started_at, ended_at, status in fields:
            if status == b"finished":
                done += 1
            if started_at and ended_at:
                begin, end = parse_time(started_at), parse_time(ended_at)
                starts.append(begin)
                ends.append(end)
                durations.append((end - begin) * 1000)
        if done != count:
            raise RuntimeError(f"{kind} worker finished {done} of {count} jobs")
        span = max(ends) - min(starts) if starts else wall
        durations.sort()
        return Sample(
            rate=count / span,
            p50_ms=durations[len(durations) // 2] if durations else None,
            p99_ms=durations[min(len(durations) - 1, int(len(durations) * 0.99))]
            if durations
            else None,
            commands=(after - before) / count,
            seconds=span,
            extra={"wall_seconds": wall, "jobs": count},
        )

    def scenario_worker(self) -> None:
        self.prepare_jobs()
        found = self.interleave(
            {
                "extension worker (fork)": lambda: self.run_worker("extension"),
                "bare RQ Worker (fork)": lambda: self.run_worker("bare"),
                "bare RQ SimpleWorker": lambda: self.run_worker("simple"),
            }
        )
        self.reset_store()
        jobs = self.options.worker_jobs
        self.rows.append(Row(
            f"worker: {jobs:,} trivial jobs, idms-webhooks worker --burst", "jobs/s",
            found["extension worker (fork)"], "bare RQ Worker (fork)",
            found["bare RQ Worker (fork)"], ">= 0.90x", lambda r: r >= 0.90,
            note="p50/p99: per-job time, started_at to ended_at",
        ))  # fmt: skip
        self.rows.append(Row(
            f"  reference: bare RQ SimpleWorker, {jobs:,} jobs", "jobs/s",
            found["bare RQ SimpleWorker"], "bare RQ Worker (fork)", found["bare RQ Worker (fork)"],
        ))  # fmt: skip
        self.rows.append(
            Row("  baseline: bare RQ Worker (fork)", "jobs/s", found["bare RQ Worker (fork)"])
        )

    # -- the engine ------------------------------------------------------------------
    def engine_setup(self) -> tuple[Path, Path, Path]:
        rows = self.options.engine_rows
        directory = self.tmp / "engine"
        directory.mkdir(exist_ok=True)
        template, database = directory / "template.sqlite", directory / "work.sqlite"
        with sqlite3.connect(template) as db:
            db.execute("CREATE TABLE staging (seq INTEGER PRIMARY KEY, ext_id TEXT, email TEXT)")
            db.execute(
                "CREATE TABLE contact (id INTEGER PRIMARY KEY AUTOINCREMENT, ext_id TEXT,"
                " email TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'A')"
            )
            db.execute("CREATE INDEX contact_ext_id ON contact (ext_id)")
            db.executemany(
                "INSERT INTO staging (seq, ext_id, email) VALUES (?, ?, ?)",
                ((n, f"E{n:07d}", f"new{n}@example.org") for n in range(rows)),
            )
            # Half the rows exist already: an even mix of inserts and updates.
            db.executemany(
                "INSERT INTO contact (ext_id, email) VALUES (?, ?)",
                ((f"E{n:07d}", f"old{n}@example.org") for n in range(0, rows, 2)),
            )
        db.close()
        tasks = directory / "tasks.toml"
        tasks.write_text(
            "[connections.db]\n"  # noqa: S608 (a TOML file, not SQL)
            'kind = "sql"\n'
            f"url = {json.dumps('sqlite:///' + str(database))}\n\n"
            "[[tasks]]\n"
            'id = "engine"\n\n'
            "[tasks.source]\n"
            'connection = "db"\n'
            'query = \'SELECT ext_id AS "ExtId", email AS "Email" FROM staging ORDER BY seq\'\n'
            "page_size = 500\n\n"
            "[tasks.target]\n"
            'connection = "db"\n'
            'entity = "contact"\n'
            'action = "InsertOrUpdate"\n'
            'match = { ext_id = "ExtId" }\n\n'
            "[tasks.target.mapping]\n"
            'ext_id = "ExtId"\n'
            'email = "Email"\n'
        )
        return template, database, tasks

    def run_engine(self, engine_app: Any, template: Path, database: Path, progress: bool) -> Sample:
        from flask_idms_webhooks.jobs.context import JobContext
        from flask_idms_webhooks.worker import make_worker

        shutil.copyfile(template, database)
        state = state_of(engine_app)
        task = state.tasks["engine"]
        self.redis.delete(f"rq:queue:{EXT_QUEUE}")
        document = state.jobs.trigger(
            task, state.parameters["engine"].resolve(None), "http://127.0.0.1"
        )
        original = JobContext._flush
        if not progress:
            JobContext._flush = lambda self, force=False: None  # type: ignore[method-assign]
        before = command_calls(self.redis)
        try:
            worker = make_worker(engine_app, simple=True)
            started = time.perf_counter()
            worker.work(burst=True, logging_level="WARNING")
            seconds = time.perf_counter() - started
            worker.connection.close()
        finally:
            JobContext._flush = original  # type: ignore[method-assign]
            state.connections.close()  # the SQL engine: the next run opens a fresh copy
        after = command_calls(self.redis)
        sealed = json.loads(self.redis.get(JobStore.result_key(document["ExecuteId"])) or b"{}")
        rows = self.options.engine_rows
        if sealed.get("Status") != "succeeded" or sealed.get("ProcessedCount") != rows:
            raise RuntimeError(f"engine job did not succeed: {sealed}")
        return Sample(
            rate=rows / seconds,
            commands=after - before,
            seconds=seconds,
            extra={"inserted": sealed["InsertedCount"], "updated": sealed["UpdatedCount"]},
        )

    def scenario_engine(self) -> None:
        template, database, tasks = self.engine_setup()
        engine_app = bench_app.create_app(
            IDMS_WEBHOOKS_REDIS_URL=self.redis_url, IDMS_WEBHOOKS_TASKS_FILE=str(tasks)
        )
        try:
            found = self.interleave(
                {
                    "progress on": lambda: self.run_engine(engine_app, template, database, True),
                    "progress off": lambda: self.run_engine(engine_app, template, database, False),
                }
            )
        finally:
            state_of(engine_app).connections.close()
            state_of(engine_app).redis.close()
        rows = self.options.engine_rows
        self.rows.append(Row(
            f"engine: {rows:,} SQLite rows, InsertOrUpdate, progress", "rows/s",
            found["progress on"], "progress off", found["progress off"], "time <= 1.03x",
            lambda r: r <= 1.03, time_ratio=True, note="ratio is of time; cmds column: per run",
        ))  # fmt: skip
        self.rows.append(
            Row(
                "  baseline: engine, progress off",
                "rows/s",
                found["progress off"],
                note="cmds column: per run",
            )
        )

    def scenario_engine_imis(self) -> None:
        from .engine_speed import scenario_imis

        scenario_imis(self)

    def scenario_engine_sql(self) -> None:
        from .engine_speed import scenario_sql

        scenario_sql(self)

    def scenario_memory(self) -> None:
        self.prepare_jobs()
        size = self.redis.memory_usage(JobStore.result_key(self.finished_id)) or 0
        self.log(
            f"  MEMORY USAGE idms:result:<id> = {size} bytes ({len(self.finished_body)} of JSON)"
        )
        self.rows.append(Row(
            "memory: bytes per finished record", "bytes", [Sample(rate=float(size))],
            target="<= 2048 B", check=lambda b: b <= 2048,
            note=f"MEMORY USAGE of idms:result:<id>; JSON {len(self.finished_body)} B",
        ))  # fmt: skip

    # -- all ---------------------------------------------------------------------------
    def run(self) -> list[Row]:
        for name in self.options.scenarios:
            self.log(f"== {name}")
            started = time.monotonic()
            getattr(self, f"scenario_{name.replace('-', '_')}")()
            self.log(f"   ({time.monotonic() - started:.0f} s)")
        return self.rows


def poll_path(location: str) -> str:
    """The path and query of a Location (``http://host/idms/jobs/…?token=…``)."""
    return "/" + location.split("://", 1)[1].split("/", 1)[1]


def parse_time(raw: bytes) -> float:
    text = raw.decode()
    for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, pattern).timestamp()
        except ValueError:
            continue
    raise ValueError(text)
