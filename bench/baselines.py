"""Baselines: minimal Flask apps with no extension code, served the same way (gunicorn).

``gunicorn 'bench.baselines:create_app("pipelined")'`` (or ``"enqueue"``, ``"get"``)
reads ``BENCH_REDIS_URL`` and ``BENCH_QUEUE`` from the environment:

- ``pipelined``: POST parses the JSON body, then one pipelined transaction: an RQ enqueue
  of a job plus a SET of a small record (what a trigger must do, with nothing else);
- ``enqueue``: POST parses the JSON body and does a plain ``Queue.enqueue``;
- ``get``: GET returns the bytes of one Redis GET.

``python -m bench.baselines worker URL QUEUE [simple]`` runs a bare RQ forking ``Worker``
(or a ``SimpleWorker``) in burst mode on a queue.
"""

from __future__ import annotations

import json
import os
import secrets
import sys

import redis
from flask import Flask, Response, request
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, SimpleWorker, Worker
from rq.serializers import JSONSerializer

# Only how they stop (their figures are their jobs' own timestamps): without it a bare
# burst worker sometimes took a minute to exit.
from flask_idms_webhooks.worker import PromptUnsubscribe

#: The key the ``get`` baseline reads (the harness writes a typical record there).
GET_KEY = "bench:baseline:record"


def noop(job_id: str) -> None:
    """A trivial job."""


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


def create_app(kind: str) -> Flask:
    app = Flask(__name__)
    connection = _redis(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    queue = Queue(
        os.environ.get("BENCH_QUEUE", "bench-baseline"),
        connection=connection,
        serializer=JSONSerializer,
    )

    if kind == "pipelined":

        @app.post("/baseline")
        def pipelined() -> Response:
            body = request.get_json(silent=True) or {}
            job_id = secrets.token_urlsafe(16)
            with connection.pipeline() as pipe:
                queue.enqueue_call(
                    "bench.baselines.noop", args=(job_id,), job_id=job_id, pipeline=pipe
                )
                pipe.set(f"bench:job:{job_id}", json.dumps(body), ex=3600)
                pipe.execute()
            return Response(json.dumps({"ExecuteId": job_id}), 202, mimetype="application/json")

    elif kind == "enqueue":

        @app.post("/baseline")
        def plain() -> Response:
            request.get_json(silent=True)
            job = queue.enqueue("bench.baselines.noop", "x")
            return Response(json.dumps({"ExecuteId": job.id}), 202, mimetype="application/json")

    elif kind == "get":

        @app.get("/baseline")
        def one_get() -> Response:
            return Response(connection.get(GET_KEY), 200, mimetype="application/json")

    else:
        raise ValueError(f"no baseline {kind!r}")
    return app


class BareWorker(PromptUnsubscribe, Worker):
    """RQ's forking worker."""


class BareSimpleWorker(PromptUnsubscribe, SimpleWorker):
    """RQ's worker that runs jobs in its own process."""


def run_worker(url: str, queue_name: str, simple: bool) -> None:
    """A bare RQ worker, burst mode, no extension code."""
    connection = redis.Redis.from_url(url, socket_connect_timeout=5)
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    cls: type[Worker] = BareSimpleWorker if simple else BareWorker
    worker = cls([queue], connection=connection, serializer=JSONSerializer)
    worker.work(burst=True, logging_level="WARNING")
    connection.close()


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "worker":
        run_worker(sys.argv[2], sys.argv[3], simple=len(sys.argv) > 4 and sys.argv[4] == "simple")
    else:
        sys.exit("usage: python -m bench.baselines worker URL QUEUE [simple]")
