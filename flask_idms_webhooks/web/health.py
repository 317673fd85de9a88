"""Health checks for a load balancer or an orchestrator: ``/health`` answers while the
process serves (Redis is not asked), ``/ready`` when Redis answers within the web side's
timeouts and a worker process is alive by its beat (``jobs.liveness``). Both are open;
their bodies name what is missing and hold no secret."""

from __future__ import annotations

from typing import Any

import redis
from flask import current_app

from ..jobs.liveness import workers_alive
from ..state import state_of
from .blueprint import blp
from .docs import operation
from .schemas import IdmsHealthSchema, IdmsReadySchema

OPEN = blp.doc(security=[])


@blp.route("/health")
@operation("getHealth")
@OPEN
@blp.response(200, IdmsHealthSchema)
def health() -> dict[str, Any]:
    """Liveness: 200 while this process serves."""
    return {"Status": "ok"}


@blp.route("/ready")
@operation("getReadiness")
@OPEN
@blp.response(200, IdmsReadySchema)
@blp.alt_response(503, schema=IdmsReadySchema, description="Redis or every worker is missing.")
def ready() -> tuple[dict[str, Any], int]:
    """Readiness: 200 when Redis answers and at least one worker is alive, else 503."""
    missing: list[str] = []
    alive, store = 0, "ok"
    try:
        alive = workers_alive(state_of(current_app).redis)
    except redis.RedisError as error:
        store = f"unreachable ({type(error).__name__})"
        missing.append("redis")
    if not missing and alive == 0:
        missing.append("worker")
    body = {"Ready": not missing, "Redis": store, "WorkersAlive": alive, "Missing": missing}
    return body, 503 if missing else 200
