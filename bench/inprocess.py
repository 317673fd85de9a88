"""``python -m bench.inprocess``: where a trigger's and a poll's time goes, in-process.

The HTTP benchmark says *how far* a hot route is from its bare baseline; this says
*where* the difference goes. Each route is called through the app's WSGI entry in this
process (no HTTP, no gunicorn), and timed in CPU time (``time.process_time``), one core,
in interleaved rounds; the figure is the minimum over rounds. A ladder of routes adds the
real route's steps one at a time to the bare baseline's work, so each rung's increase is
the CPU cost of one step: routing, credentials, body, parameters, the document, the
store. Every rung must answer its status (a broken step's 500 or a refused credential's
401 is not timed: the run stops). ``--profile NAME`` prints cProfile's view of one route
(``poll`` or ``trigger``); ``--json PATH`` also writes the ladders, figures and statuses.

Figures are for attribution, not targets: the ratios that count come from ``make bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request

from flask_idms_webhooks.jobs.store import dumps
from flask_idms_webhooks.model.tasks import Task
from flask_idms_webhooks.redis_server import PrivateRedis
from flask_idms_webhooks.state import WebhooksState, state_of
from flask_idms_webhooks.web.answers import json_answer, poll_headers
from flask_idms_webhooks.web.auth import known_task, read_job, require_task_key, unauthorized
from flask_idms_webhooks.web.triggers import resolve_parameters, trigger_body

from . import app as bench_app
from . import baselines

WsgiApp = Callable[..., Iterable[bytes]]
Environ = Callable[[], dict[str, Any]]
#: A rung: its name, the app that serves it, its request and the status it must answer.
Rung = tuple[str, WsgiApp, Environ, int]


def make_environ(
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Environ:
    def build() -> dict[str, Any]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:8000",
        }  # fmt: skip
        if body:
            environ["CONTENT_TYPE"] = "application/json"
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        return environ

    return build


def call(app: WsgiApp, environ: Environ) -> bytes:
    return b"".join(app(environ(), lambda status, headers, exc_info=None: None))


def answered(app: WsgiApp, environ: Environ) -> tuple[int, bytes]:
    """(status, body) of one call."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    body = b"".join(app(environ(), start_response))
    return int(statuses[-1].split()[0]), body


def add_rungs(app: Flask) -> None:
    """The ladder's routes, on the bench app (before its first request). Each adds one
    step of the real route (``web.triggers.trigger``, ``web.views.poll_job``), with the
    package's own functions, to the bare baseline's work."""
    state = state_of(app)
    connection, queue = state.redis, state.queue

    def bare_enqueue(body: Any) -> str:
        job_id = secrets.token_urlsafe(16)
        with connection.pipeline() as pipe:
            queue.enqueue_call("bench.baselines.noop", args=(job_id,), job_id=job_id, pipeline=pipe)
            pipe.set(f"bench:job:{job_id}", json.dumps(body), ex=3600)
            pipe.execute()
        return job_id

    def small_answer(job_id: str) -> Response:
        return Response(json.dumps({"ExecuteId": job_id}), 202, mimetype="application/json")

    def checked(task_id: str) -> tuple[WebhooksState, Task]:
        current = state_of(current_app)
        task = known_task(current, task_id)
        require_task_key(current, task)
        return current, task

    def t_route(task_id: str) -> Response:
        return small_answer(bare_enqueue(request.get_json(silent=True) or {}))

    def t_credentials(task_id: str) -> Response:
        checked(task_id)
        return small_answer(bare_enqueue(request.get_json(silent=True) or {}))

    def t_body(task_id: str) -> Response:
        current, task = checked(task_id)
        return small_answer(bare_enqueue(trigger_body(current, task)[0]))

    def t_parameters(task_id: str) -> Response:
        current, task = checked(task_id)
        body, _ = trigger_body(current, task)
        resolve_parameters(current, task, body)
        return small_answer(bare_enqueue(body))

    def t_document(task_id: str) -> Response:
        current, task = checked(task_id)
        body, _ = trigger_body(current, task)
        parameters = resolve_parameters(current, task, body)
        document = current.jobs.prepare(task, parameters, current.urls.base(request.url_root))
        record = dumps(document)
        job_id = document["ExecuteId"]
        with connection.pipeline() as pipe:
            queue.enqueue_call("bench.baselines.noop", args=(job_id,), job_id=job_id, pipeline=pipe)
            pipe.set(f"bench:job:{job_id}", record, ex=3600)
            pipe.execute()
        return json_answer(record, 202, poll_headers(document))

    def p_route(job_id: str) -> Response:
        return Response(connection.get(baselines.GET_KEY), 200, mimetype="application/json")

    def p_store(job_id: str) -> Response:
        return Response(state.store.read(job_id)[1], 200, mimetype="application/json")

    def p_token(job_id: str) -> Response:
        if not state.credentials.check_job_token(job_id, request.args.get("token")):
            unauthorized("This job token is not valid for this job.")
        return Response(state.store.read(job_id)[1], 200, mimetype="application/json")

    def p_document(job_id: str) -> Response:
        body, _, _ = read_job(state_of(current_app), job_id)
        return json_answer(body, 200)

    for name, view in [("t_route", t_route), ("t_credentials", t_credentials),
                       ("t_body", t_body), ("t_parameters", t_parameters),
                       ("t_document", t_document)]:  # fmt: skip
        app.add_url_rule(f"/idms/tasks/<task_id>/{name}", name, view, methods=["POST"])
    for name, poll_view in [("p_route", p_route), ("p_store", p_store),
                            ("p_token", p_token), ("p_document", p_document)]:  # fmt: skip
        app.add_url_rule(f"/idms/jobs/<job_id>/{name}", name, poll_view)


def ladders(ours: Flask, trigger_answer: bytes) -> dict[str, list[Rung]]:
    state = state_of(ours)
    key = state.credentials.task_key(state.tasks[bench_app.TASK_ID])
    body = json.dumps(bench_app.TRIGGER_BODY).encode()
    document = json.loads(trigger_answer)
    job_id = document["ExecuteId"]
    query = document["PollingUrl"].partition("?")[2]
    keyed = {"X-Webhook-Key": key}
    task = f"/idms/tasks/{bench_app.TASK_ID}"

    def post(path: str, headers: dict[str, str] | None = None) -> Environ:
        return make_environ("POST", path, body=body, headers=headers)

    def poll(path: str) -> Environ:
        return make_environ("GET", path, query)

    return {
        "trigger": [
            ("bare pipelined enqueue (baseline)", baselines.create_app("pipelined"),
             post("/baseline"), 202),
            ("+ a route with a task id", ours, post(f"{task}/t_route", keyed), 202),
            ("+ task and key checked", ours, post(f"{task}/t_credentials", keyed), 202),
            ("+ hardened body parse, schema", ours, post(f"{task}/t_body", keyed), 202),
            ("+ QueryParameters resolved", ours, post(f"{task}/t_parameters", keyed), 202),
            ("+ job document, token, answer", ours, post(f"{task}/t_document", keyed), 202),
            ("= the polling webhook", ours, post(f"{task}/jobs", keyed), 202),
        ],
        "poll": [
            ("bare Redis GET (baseline)", baselines.create_app("get"),
             make_environ("GET", "/baseline"), 200),
            ("+ a route with a job id", ours, poll(f"/idms/jobs/{job_id}/p_route"), 200),
            ("+ MGET of record, seal, beat", ours, poll(f"/idms/jobs/{job_id}/p_store"), 200),
            ("+ job token checked", ours, poll(f"/idms/jobs/{job_id}/p_token"), 200),
            ("+ record read, status checked", ours, poll(f"/idms/jobs/{job_id}/p_document"),
             200),
            ("= the poll (202, running)", ours, poll(f"/idms/jobs/{job_id}"), 202),
        ],
    }  # fmt: skip


def check_statuses(rungs: list[Rung]) -> dict[str, int]:
    """Each rung's status; a rung that does not answer as it should (a 500 of a broken
    step, a 401 of a wrong credential) is refused rather than timed."""
    found = {}
    for name, app, environ, expected in rungs:
        status, body = answered(app, environ)
        if status != expected:
            raise SystemExit(f"rung {name!r} answered {status}, not {expected}: {body[:500]!r}")
        found[name] = status
    return found


def measure(rungs: list[Rung], rounds: int, calls: int) -> dict[str, float]:
    for _, app, environ, _ in rungs:
        for _ in range(200):
            call(app, environ)
    times: dict[str, list[float]] = {name: [] for name, _, _, _ in rungs}
    for _ in range(rounds):
        for name, app, environ, _ in rungs:
            started = time.process_time()
            for _ in range(calls):
                call(app, environ)
            times[name].append((time.process_time() - started) / calls * 1e6)
    return {name: min(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inprocess",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=1000, help="requests per rung and round")
    parser.add_argument("--profile", metavar="NAME", help="cProfile one route: poll or trigger")
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the ladders (figures, statuses)"
    )
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    written: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as directory, PrivateRedis(directory) as server:
        os.environ["BENCH_REDIS_URL"] = server.url
        ours = bench_app.create_app()
        add_rungs(ours)
        state = state_of(ours)
        key = state.credentials.task_key(state.tasks[bench_app.TASK_ID])
        status, answer = answered(ours, make_environ(
            "POST", f"/idms/tasks/{bench_app.TASK_ID}/jobs",
            body=json.dumps(bench_app.TRIGGER_BODY).encode(), headers={"X-Webhook-Key": key},
        ))  # fmt: skip
        if status != 202:
            raise SystemExit(f"the polling webhook answered {status}, not 202: {answer[:500]!r}")
        state.redis.set(baselines.GET_KEY, answer)
        for route, rungs in ladders(ours, answer).items():
            if args.profile:
                if args.profile != route:
                    continue
                _, app, environ, _ = rungs[-1]
                check_statuses(rungs[-1:])
                profile = cProfile.Profile(time.process_time)
                profile.enable()
                for _ in range(args.calls):
                    call(app, environ)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(30)
                continue
            statuses = check_statuses(rungs)
            figures = measure(rungs, args.rounds, args.calls)
            check_statuses(rungs)  # and still so after all those calls
            base = next(iter(figures.values()))
            previous = base
            print(f"\n{route}: CPU per request, in-process (min of {args.rounds} rounds)")
            for name, value in figures.items():
                step = value - previous
                print(
                    f"  {name:36s} {value:7.1f} us   step {step:+6.1f}   total {value - base:+6.1f}"
                )
                previous = value
            written[route] = [
                {"rung": name, "us": value, "status": statuses[name]}
                for name, value in figures.items()
            ]
        state.redis.close()
    if args.json is not None:
        args.json.write_text(
            json.dumps({"rounds": args.rounds, "calls": args.calls, "ladders": written}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
