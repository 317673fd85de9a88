"""``python -m bench.inprocess``: where a trigger's and a poll's time goes, in-process.

The HTTP benchmark says *how far* a hot route is from its bare baseline; this says
*where* the difference goes. Each route is called through the app's WSGI entry in this
process (no HTTP, no gunicorn), and timed in CPU time (``time.process_time``), one core,
in interleaved rounds; the figure is the minimum over rounds. A ladder of routes adds the
real route's steps one at a time to the bare baseline's work, so each rung's increase is
the CPU cost of one step: routing, credentials, body, parameters, the document, the
store. ``--profile NAME`` prints cProfile's view of one rung (or ``poll``/``trigger``).

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
from typing import Any

from flask import Flask, Response

from flask_idms_webhooks import views
from flask_idms_webhooks.extension import state_of
from flask_idms_webhooks.redis_server import PrivateRedis
from flask_idms_webhooks.store import dumps

from . import app as bench_app
from . import baselines

WsgiApp = Callable[..., Iterable[bytes]]
Environ = Callable[[], dict[str, Any]]


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


def add_rungs(app: Flask) -> None:
    """The ladder's routes, on the bench app (before its first request)."""
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

    def checked(task_id: str) -> Any:
        current = views.state()
        task = views.known_task(task_id, current)
        views.require_task_key(task, current)
        return current, task

    def t_route(task_id: str) -> Response:
        from flask import request

        return small_answer(bare_enqueue(request.get_json(silent=True) or {}))

    def t_credentials(task_id: str) -> Response:
        from flask import request

        checked(task_id)
        return small_answer(bare_enqueue(request.get_json(silent=True) or {}))

    def t_body(task_id: str) -> Response:
        current, _ = checked(task_id)
        return small_answer(bare_enqueue(views.trigger_body(current)))

    def t_parameters(task_id: str) -> Response:
        current, task = checked(task_id)
        body = views.trigger_body(current)
        views.resolve_parameters(task, body, current)
        return small_answer(bare_enqueue(body))

    def t_document(task_id: str) -> Response:
        current, task = checked(task_id)
        body = views.trigger_body(current)
        parameters = views.resolve_parameters(task, body, current)
        document = current.jobs.prepare(task, parameters, views.base_url(current))
        record = dumps(document)
        job_id = document["ExecuteId"]
        with connection.pipeline() as pipe:
            queue.enqueue_call("bench.baselines.noop", args=(job_id,), job_id=job_id, pipeline=pipe)
            pipe.set(f"bench:job:{job_id}", record, ex=3600)
            pipe.execute()
        return views.JsonAnswer(record, 202, poll=views.poll_headers(document))

    def p_route(job_id: str) -> Response:
        return Response(connection.get(baselines.GET_KEY), 200, mimetype="application/json")

    def p_store(job_id: str) -> Response:
        return Response(state.store.read(job_id)[1], 200, mimetype="application/json")

    def p_token(job_id: str) -> Response:
        state.credentials.check_job_token(job_id, views.given_job_token() or "")
        return Response(state.store.read(job_id)[1], 200, mimetype="application/json")

    def p_document(job_id: str) -> Response:
        state.credentials.check_job_token(job_id, views.given_job_token() or "")
        found = state.jobs.current(job_id)
        return Response(found[0] if found else b"", 200, mimetype="application/json")

    for name, view in [("t_route", t_route), ("t_credentials", t_credentials),
                       ("t_body", t_body), ("t_parameters", t_parameters),
                       ("t_document", t_document)]:  # fmt: skip
        app.add_url_rule(f"/idms/tasks/<task_id>/{name}", name, view, methods=["POST"])
    for name, poll_view in [("p_route", p_route), ("p_store", p_store),
                            ("p_token", p_token), ("p_document", p_document)]:  # fmt: skip
        app.add_url_rule(f"/idms/jobs/<job_id>/{name}", name, poll_view)


def ladders(ours: Flask, trigger_answer: bytes) -> dict[str, list[tuple[str, WsgiApp, Environ]]]:
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
             post("/baseline")),
            ("+ a route with a task id", ours, post(f"{task}/t_route", keyed)),
            ("+ task and key checked", ours, post(f"{task}/t_credentials", keyed)),
            ("+ hardened body parse, schema", ours, post(f"{task}/t_body", keyed)),
            ("+ QueryParameters resolved", ours, post(f"{task}/t_parameters", keyed)),
            ("+ job document, token, answer", ours, post(f"{task}/t_document", keyed)),
            ("= the polling webhook", ours, post(f"{task}/jobs", keyed)),
        ],
        "poll": [
            ("bare Redis GET (baseline)", baselines.create_app("get"),
             make_environ("GET", "/baseline")),
            ("+ a route with a job id", ours, poll(f"/idms/jobs/{job_id}/p_route")),
            ("+ MGET of record, seal, beat", ours, poll(f"/idms/jobs/{job_id}/p_store")),
            ("+ job token checked", ours, poll(f"/idms/jobs/{job_id}/p_token")),
            ("+ record read, status checked", ours, poll(f"/idms/jobs/{job_id}/p_document")),
            ("= the poll (202, running)", ours, poll(f"/idms/jobs/{job_id}")),
        ],
    }  # fmt: skip


def measure(rungs: list[tuple[str, WsgiApp, Environ]], rounds: int, calls: int) -> dict[str, float]:
    for _, app, environ in rungs:
        for _ in range(200):
            call(app, environ)
    times: dict[str, list[float]] = {name: [] for name, _, _ in rungs}
    for _ in range(rounds):
        for name, app, environ in rungs:
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
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as directory, PrivateRedis(directory) as server:
        os.environ["BENCH_REDIS_URL"] = server.url
        ours = bench_app.create_app()
        add_rungs(ours)
        state = state_of(ours)
        key = state.credentials.task_key(state.tasks[bench_app.TASK_ID])
        answer = call(ours, make_environ("POST", f"/idms/tasks/{bench_app.TASK_ID}/jobs",
                                         body=json.dumps(bench_app.TRIGGER_BODY).encode(),
                                         headers={"X-Webhook-Key": key}))  # fmt: skip
        state.redis.set(baselines.GET_KEY, answer)
        for route, rungs in ladders(ours, answer).items():
            if args.profile:
                if args.profile != route:
                    continue
                _, app, environ = rungs[-1]
                profile = cProfile.Profile(time.process_time)
                profile.enable()
                for _ in range(args.calls):
                    call(app, environ)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(30)
                continue
            figures = measure(rungs, args.rounds, args.calls)
            base = next(iter(figures.values()))
            previous = base
            print(f"\n{route}: CPU per request, in-process (min of {args.rounds} rounds)")
            for name, value in figures.items():
                step = value - previous
                print(
                    f"  {name:36s} {value:7.1f} us   step {step:+6.1f}   total {value - base:+6.1f}"
                )
                previous = value
    return 0


if __name__ == "__main__":
    sys.exit(main())
