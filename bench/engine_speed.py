"""The engine's speed: ``engine-imis`` (rows in flight against the iMIS double with a
latency, against the bound of its calls) and ``engine-sql`` (pages in sets on SQLite and
PostgreSQL, against a bare SQLAlchemy ``executemany`` / ``INSERT ... ON CONFLICT`` of the
same rows). Each job runs as a worker runs it: a burst worker of this process, forking
for SQL as deployed, a SimpleWorker for iMIS (its pacer's curve is sampled here).

The double serves from a process of its own over kept-alive connections, so its work does
not share the engine's interpreter lock; it is driven over a pipe.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import Flask

from flask_idms_webhooks.iupdate.imis import pacing
from flask_idms_webhooks.jobs.store import JobStore
from flask_idms_webhooks.state import state_of

from . import app as bench_app

if TYPE_CHECKING:
    from .harness import Bench

USERNAME, PASSWORD = "manager", "bench-secret"
QUERY = "$/Bench/Feed"
#: The calls in flight the benchmark compares (1 is one row at a time).
CONCURRENCY = (1, 4, 8, 16)
#: The bare client's variant: calls with nothing else done, against the same double.
BARE = "imis-bare-8"
#: The 429 storm: every 10th call answers 429 until this many calls were made.
STORM_EVERY, STORM_CALLS = 10, 600
POSTGRES_URL = os.environ.get(
    "IDMS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SQL_ACTIONS = ("Insert", "Update", "InsertOrUpdate")
PAGE = 500


# -- the double, in a process of its own ----------------------------------------------------


def serve_double(pipe: Connection) -> None:
    """The double's process: serve, then answer commands ``(name, args)`` until ``stop``."""
    from flask_idms_webhooks.testing import ImisDouble

    double = ImisDouble(USERNAME, PASSWORD)

    def seed(rows: int, latency: float) -> None:
        """``Feed`` (the IQA's rows) and ``CsContact`` with every other row already there."""
        double.remove_entities("Feed")
        double.remove_entities("CsContact")
        feed = [
            {"Seq": f"{n:07d}", "ID": f"{10_000 + n}", "Email": f"new{n}@x.org"}
            for n in range(rows)
        ]
        double.add_entities("Feed", feed, key="Seq")
        existing = [{"ID": row["ID"], "Email": "old@x.org"} for row in feed[::2]]
        double.add_entities("CsContact", existing)
        double.add_query(QUERY, entity="Feed", columns=["ID", "Email"])
        double.latency(latency)
        double.reset_log()
        double.reset_peak()

    def storm(every: int, calls: int) -> None:
        for nth in range(every, calls + 1, every):
            double.fail_nth(nth, 429, retry_after=0)

    def figures() -> dict[str, Any]:
        emails = {record["ID"]: record["Email"] for record in double.entities("CsContact")}
        return {
            "peak": double.in_flight_peak,
            "connections": double.connections_opened,
            "records": len(emails),
            "new": sum(email.startswith("new") for email in emails.values()),
            "calls": len(double.requests),
        }

    commands: dict[str, Callable[..., Any]] = {"seed": seed, "storm": storm, "figures": figures}
    with double.serve(keep_alive=True) as url:
        pipe.send(url)
        while True:
            name, args = pipe.recv()
            if name == "stop":
                pipe.send(None)
                return
            pipe.send(commands[name](*args))


class RemoteDouble:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=serve_double, args=(child,), daemon=True)
        self._process.start()
        if not self._pipe.poll(60):
            raise RuntimeError("the iMIS double did not start")
        self.url: str = self._pipe.recv()

    def __call__(self, name: str, *args: Any) -> Any:
        self._pipe.send((name, args))
        return self._pipe.recv()

    def stop(self) -> None:
        if self._process.is_alive():
            self("stop")
        self._process.join(10)


# -- one job, as a worker runs it ----------------------------------------------------------


def run_job(
    bench: Bench, app: Flask, task_id: str, *, simple: bool = True
) -> tuple[float, dict[str, Any]]:
    """Start ``task_id``, work it off in a burst worker (a SimpleWorker, or a forking one
    as deployed); its seconds and sealed document."""
    from flask_idms_webhooks.worker import make_worker

    state = state_of(app)
    bench.redis.delete(f"rq:queue:{bench_app.DEFAULT_QUEUE}")
    document = state.jobs.trigger(
        state.tasks[task_id], state.parameters[task_id].resolve(None), "http://127.0.0.1"
    )
    worker = make_worker(app, simple=simple)
    started = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    seconds = time.perf_counter() - started
    worker.connection.close()
    sealed = json.loads(bench.redis.get(JobStore.result_key(document["ExecuteId"])) or b"{}")
    return seconds, sealed


def expect_sealed(sealed: dict[str, Any], rows: int, **counts: int) -> None:
    wanted = {"Status": "succeeded", "ProcessedCount": rows, "ErrorCount": 0, **counts}
    got = {name: sealed.get(name) for name in wanted}
    if got != wanted:
        raise RuntimeError(f"the engine job wrote other than expected: {got} != {wanted}")


@contextmanager
def task_app(bench: Bench, text: str) -> Iterator[Flask]:
    path = bench.tmp / f"tasks-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text)
    app = bench_app.create_app(
        IDMS_WEBHOOKS_REDIS_URL=bench.redis_url, IDMS_WEBHOOKS_TASKS_FILE=str(path)
    )
    try:
        yield app
    finally:
        state_of(app).connections.close()
        state_of(app).redis.close()


# -- engine-imis -------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    concurrency: int
    batch_match: bool = False

    @property
    def calls_per_row(self) -> int:
        return 1 if self.batch_match else 2


def imis_variants() -> list[Variant]:
    found = [Variant(f"imis-{n}", n) for n in CONCURRENCY]
    return [*found, Variant("imis-8-batch", 8, batch_match=True)]


def imis_tasks(url: str, variants: list[Variant]) -> str:
    parts = []
    for v in variants:
        parts.append(
            f"[connections.{v.name.replace('-', '_')}]\n"
            f'kind = "imis"\nbase_url = "{url}"\nusername = "{USERNAME}"\n'
            'password = "${BENCH_IMIS_PASSWORD}"\n'
            f"max_concurrency = {v.concurrency}\nbatch_match = {str(v.batch_match).lower()}\n"
        )
    for v in variants:
        connection = v.name.replace("-", "_")
        parts.append(
            f'[[tasks]]\nid = "{v.name}"\n'
            f'source = {{ connection = "{connection}", query = "{QUERY}", page_size = {PAGE} }}\n'
            f"[tasks.target]\n"
            f'connection = "{connection}"\nentity = "CsContact"\naction = "InsertOrUpdate"\n'
            'match = { ID = "ID" }\nmapping = { ID = "ID", Email = "Email" }\n'
        )
    return "\n".join(parts)


@dataclass
class Curve:
    """The AIMD limit of the job's pacer over time: (seconds, limit, calls in flight)."""

    pacers: list[pacing.Pacer]
    points: list[tuple[float, int, int]] = field(default_factory=list)


@contextmanager
def pacer_curve(every: float = 0.02) -> Iterator[Curve]:
    """Samples the limit of every Pacer created in the block."""
    created: list[pacing.Pacer] = []
    original = pacing.Pacer.__init__

    def recording(self: pacing.Pacer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        created.append(self)

    curve, done = Curve(created), threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while not done.wait(every):
            if created:
                pacer = created[-1]
                curve.points.append((time.perf_counter() - started, pacer.limit, pacer.in_flight))

    pacing.Pacer.__init__ = recording  # type: ignore[method-assign]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield curve
    finally:
        done.set()
        sampler.join()
        pacing.Pacer.__init__ = original  # type: ignore[method-assign]


def bare_calls(url: str, calls: int, width: int) -> float:
    """The machine's ceiling: ``calls`` finds by key sent by ``width`` threads through one
    kept-alive httpx client (as the engine's), with nothing else done; their seconds."""
    import httpx

    login = {"grant_type": "password", "username": USERNAME, "password": PASSWORD}
    limits = httpx.Limits(max_connections=width + 2, max_keepalive_connections=width + 2)
    with httpx.Client(base_url=url, limits=limits) as client:
        token = client.post("/token", data=login).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def find(n: int) -> None:
            wanted = {"ID": f"eq:{10_000 + n}"}
            client.get("/api/CsContact", params=wanted, headers=headers).raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(width) as pool:
            list(pool.map(find, range(calls)))
        return time.perf_counter() - started


def scenario_imis(bench: Bench) -> None:
    from .harness import Row, Sample

    options = bench.options
    rows, latency = options.imis_rows, options.imis_latency
    ms = f"{latency * 1000:g} ms"
    variants = imis_variants()
    updated = (rows + 1) // 2  # every other row is in CsContact already
    os.environ["BENCH_IMIS_PASSWORD"] = PASSWORD
    double = RemoteDouble()
    curve = Curve([])

    def bare(width: int) -> Sample:
        double("seed", rows, latency)
        seconds = bare_calls(double.url, rows, width)
        return Sample(rate=rows / seconds, seconds=seconds, extra={"rows": rows})

    def measure(variant: Variant, app: Flask, storm: bool = False) -> Sample:
        double("seed", rows, latency)
        if storm:
            double("storm", STORM_EVERY, min(STORM_CALLS, rows * 2 // 3))
        seconds, sealed = run_job(bench, app, variant.name)
        expect_sealed(sealed, rows, InsertedCount=rows - updated, UpdatedCount=updated)
        seen = double("figures")
        if (seen["records"], seen["new"]) != (rows, rows):
            raise RuntimeError(f"{variant.name}: the double holds {seen} after {rows} rows")
        return Sample(
            rate=rows / seconds,
            seconds=seconds,
            extra={"rows": rows, "peak": seen["peak"], "connections": seen["connections"],
                   "calls": seen["calls"]},
        )  # fmt: skip

    try:
        with task_app(bench, imis_tasks(double.url, variants)) as app:
            measures: dict[str, Callable[[], Sample]] = {
                v.name: (lambda v=v: measure(v, app))  # type: ignore[misc]
                for v in variants
            }
            measures[BARE] = lambda: bare(8)
            found = bench.interleave(measures, options.imis_reps)
            with pacer_curve() as curve:
                stormed = [measure(variants[2], app, storm=True)]
            bench.log(f"  429 storm: {stormed[0].rate:,.1f}/s")
    finally:
        double.stop()

    for variant in variants:
        bound = variant.concurrency / (variant.calls_per_row * latency)
        samples = found[variant.name]
        formula = f"{variant.concurrency}/({variant.calls_per_row} x {ms})".replace("1 x ", "")
        measured = ", batch_match" if variant.batch_match else ""
        goal = variant.concurrency == 8
        peaks = sorted({s.extra["peak"] for s in samples})
        bench.rows.append(Row(
            f"engine-imis: {rows:,} rows, {ms}, max_concurrency {variant.concurrency}{measured}",
            "rows/s", samples, f"bound {formula}", bound_samples(samples, bound, rows),
            ">= 0.80x" if goal else "", (lambda r: r >= 0.80) if goal else None,
            note=f"peak calls in flight {'/'.join(map(str, peaks))} (the IQA read-ahead adds 1)",
        ))  # fmt: skip
    bench.rows.append(Row(
        f"engine-imis: bare httpx client, 8 calls in flight, {ms}", "calls/s", found[BARE],
        f"bound 8/{ms}", bound_samples(found[BARE], 8 / latency, rows),
        note="the machine's ceiling: one find per call, nothing else done; the double and the"
        " client share the 2 cores as in the engine's runs",
    ))  # fmt: skip
    pacer = curve.pacers[-1] if curve.pacers else None
    bench.rows.append(Row(
        "engine-imis: 429 storm, max_concurrency 8", "rows/s", stormed,
        "no storm", found["imis-8"][: len(stormed)],
        note=(f"every {STORM_EVERY}th call 429 for a while; AIMD limit 8 -> lowest "
              f"{pacer.lowest if pacer else '?'} after {pacer.decreases if pacer else '?'} "
              "slow-downs; every row written once"),
    ))  # fmt: skip
    chart_imis(bench, variants, found, latency, curve)


def bound_samples(samples: list[Any], bound: float, rows: int) -> list[Any]:
    from .harness import Sample

    return [Sample(rate=bound, seconds=rows / bound, extra={"rows": rows}) for _ in samples]


def chart_imis(
    bench: Bench, variants: list[Variant], found: dict[str, list[Any]], latency: float, curve: Curve
) -> None:
    """``engine-imis.png``: rows/s against max_concurrency with the bound; the AIMD curve."""
    try:
        import matplotlib
    except ImportError:
        return
    from .harness import median

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        plain = [v for v in variants if not v.batch_match]
        levels = [v.concurrency for v in plain]
        rates = [median([s.rate for s in found[v.name]]) for v in plain]
        left.plot(
            levels, [n / (2 * latency) for n in levels], "k:", label="bound n / (2 x latency)"
        )
        left.plot(levels, rates, "o-", color="tab:blue", label="InsertOrUpdate, measured")
        for v in variants:
            if v.batch_match:
                rate = median([s.rate for s in found[v.name]])
                left.plot([v.concurrency], [rate], "s", color="tab:green", label="batch_match")
                left.plot([v.concurrency], [v.concurrency / latency], "x", color="tab:green",
                          label="batch_match bound n / latency")  # fmt: skip
        left.set_xscale("log", base=2)
        left.set_xticks(levels, [str(n) for n in levels])
        left.set_xlabel("max_concurrency (calls in flight)")
        left.set_ylabel("rows/s")
        left.set_title(f"iMIS double, {latency * 1000:g} ms per call", fontsize=10)
        left.legend(fontsize=8)
        if curve.points:
            times = [p[0] for p in curve.points]
            right.step(times, [p[1] for p in curve.points], where="post", label="limit (AIMD)")
            right.plot(times, [p[2] for p in curve.points], ",", alpha=0.5, label="calls in flight")
        right.set_xlabel("seconds into the job")
        right.set_ylabel("calls")
        right.set_title(f"429 on every {STORM_EVERY}th call for a while, max_concurrency 8",
                        fontsize=10)  # fmt: skip
        right.legend(fontsize=8)
        figure.tight_layout()
        out = Path(bench.options.out)
        out.mkdir(parents=True, exist_ok=True)
        figure.savefig(out / "engine-imis.png", dpi=110)
    finally:
        plt.close(figure)


# -- engine-sql --------------------------------------------------------------------------------


@contextmanager
def sql_databases(bench: Bench) -> Iterator[dict[str, str]]:
    """A SQLite file, and a PostgreSQL schema of the run's own when a server answers."""
    found = {"sqlite": f"sqlite:///{bench.tmp / 'engine-sql.sqlite'}"}
    admin = sa.create_engine(POSTGRES_URL)
    schema = f"idms_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as error:
        bench.log(f"  PostgreSQL not reachable ({type(error.orig).__name__}): SQLite only")
        schema = ""
    if schema:
        found["postgresql"] = (
            sa.make_url(POSTGRES_URL)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    try:
        yield found
    finally:
        if schema:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def create_tables(url: str, rows: int) -> None:
    engine = sa.create_engine(url)
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    with engine.begin() as db:
        db.execute(
            sa.text("CREATE TABLE staging (seq INTEGER PRIMARY KEY, ext_id TEXT, email TEXT)")
        )
        db.execute(sa.text(
            f"CREATE TABLE contact (id {serial} PRIMARY KEY, ext_id TEXT NOT NULL UNIQUE,"
            " email TEXT NOT NULL)"
        ))  # fmt: skip
        db.execute(
            sa.text("INSERT INTO staging (seq, ext_id, email) VALUES (:seq, :ext, :email)"),
            [{"seq": n, "ext": f"E{n:07d}", "email": f"new{n}@x.org"} for n in range(rows)],
        )
    engine.dispose()


def reset_contacts(url: str, action: str) -> None:
    """The target before a run: empty (Insert), every key (Update), every other key."""
    keep = {"Insert": None, "Update": 1, "InsertOrUpdate": 2}[action]
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("DELETE FROM contact"))
        if keep:
            every = sa.text(
                "INSERT INTO contact (ext_id, email) SELECT ext_id, 'old' FROM staging"
                " WHERE seq % :keep = 0"
            )
            db.execute(every, {"keep": keep})
    with engine.connect() as db:
        db.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE contact")
        )
    engine.dispose()


def sql_tasks(urls: dict[str, str]) -> str:
    parts = [f"[connections.{kind}]\nkind = \"sql\"\nurl = {json.dumps(url)}\n"
             for kind, url in urls.items()]  # fmt: skip
    for kind in urls:
        for action in SQL_ACTIONS:
            parts.append(
                f'[[tasks]]\nid = "sql-{kind}-{action}"\n'  # noqa: S608 (a TOML task file)
                f'source = {{ connection = "{kind}", page_size = {PAGE}, query = '
                '\'SELECT ext_id AS "ExtId", email AS "Email" FROM staging ORDER BY seq\' }\n'
                f'[tasks.target]\nconnection = "{kind}"\nentity = "contact"\naction = "{action}"\n'
                'match = { ext_id = "ExtId" }\nmapping = { ext_id = "ExtId", email = "Email" }\n'
            )
    return "\n".join(parts)


def bare_run(url: str, action: str) -> float:
    """The same rows by hand: pages of 500 read by key, each written in one transaction by
    one ``executemany`` (``INSERT ... ON CONFLICT DO UPDATE`` for InsertOrUpdate)."""
    engine = sa.create_engine(url)
    contact = sa.table("contact", sa.column("ext_id"), sa.column("email"))
    page = sa.text(
        "SELECT seq, ext_id, email FROM staging WHERE seq > :after ORDER BY seq LIMIT :n"
    )
    if action == "Insert":
        statement: Any = sa.insert(contact)
    elif action == "Update":
        statement = (
            sa.update(contact)
            .where(contact.c.ext_id == sa.bindparam("key"))
            .values(email=sa.bindparam("new"))
        )
    else:
        dialect = __import__(f"sqlalchemy.dialects.{engine.dialect.name}", fromlist=["insert"])
        upsert = dialect.insert(contact)
        statement = upsert.on_conflict_do_update(
            index_elements=["ext_id"], set_={"email": upsert.excluded.email}
        )
    started = time.perf_counter()
    with engine.connect() as db:
        after = -1
        while True:
            with db.begin():
                rows = db.execute(page, {"after": after, "n": PAGE}).all()
                if not rows:
                    break
                after = rows[-1].seq
                if action == "Update":
                    db.execute(statement, [{"key": r.ext_id, "new": r.email} for r in rows])
                else:
                    db.execute(statement, [{"ext_id": r.ext_id, "email": r.email} for r in rows])
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def scenario_sql(bench: Bench) -> None:
    from .harness import Row, Sample

    rows = bench.options.engine_rows
    wanted = {
        "Insert": {"InsertedCount": rows, "UpdatedCount": 0},
        "Update": {"InsertedCount": 0, "UpdatedCount": rows},
        "InsertOrUpdate": {"InsertedCount": rows // 2, "UpdatedCount": rows - rows // 2},
    }
    with sql_databases(bench) as urls:
        for url in urls.values():
            create_tables(url, rows)
        with task_app(bench, sql_tasks(urls)) as app:

            def engine_run(kind: str, action: str) -> Sample:
                reset_contacts(urls[kind], action)
                seconds, sealed = run_job(bench, app, f"sql-{kind}-{action}", simple=False)
                state_of(app).connections.close()
                expect_sealed(sealed, rows, **wanted[action])
                return Sample(rate=rows / seconds, seconds=seconds, extra={"rows": rows})

            def bare(kind: str, action: str) -> Sample:
                reset_contacts(urls[kind], action)
                seconds = bare_run(urls[kind], action)
                return Sample(rate=rows / seconds, seconds=seconds, extra={"rows": rows})

            variants: dict[str, Callable[[], Sample]] = {}
            for kind in urls:
                for action in SQL_ACTIONS:
                    variants[f"{kind} {action}"] = lambda k=kind, a=action: engine_run(k, a)  # type: ignore[misc]
                    variants[f"{kind} {action} bare"] = lambda k=kind, a=action: bare(k, a)  # type: ignore[misc]
            found = bench.interleave(variants)
    for kind in urls:
        for action in SQL_ACTIONS:
            goal = kind == "postgresql" and action == "InsertOrUpdate"
            bare_name = "INSERT ... ON CONFLICT" if action == "InsertOrUpdate" else "executemany"
            bench.rows.append(Row(
                f"engine-sql: {rows:,} rows, {kind}, {action}", "rows/s",
                found[f"{kind} {action}"], f"bare {bare_name}", found[f"{kind} {action} bare"],
                ">= 0.50x" if goal else "", (lambda r: r >= 0.50) if goal else None,
                note="pages of 500, one transaction each, in both",
            ))  # fmt: skip
