"""The Redis clients (web side and worker side) and the RQ queue of the jobs."""

from __future__ import annotations

import functools
import logging
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer

from ..config import package_version


@functools.cache
def client_identity() -> dict[str, Any]:
    """How our Redis clients name themselves (``CLIENT SETINFO``), made once per process.

    Without it, redis-py 7.2 and later read their own package metadata for every new
    connection: milliseconds in every forked work-horse."""
    try:
        from redis import DriverInfo
    except ImportError:  # older redis-py: nothing read per connection, nothing to name
        return {}
    driver = DriverInfo().add_upstream_driver("flask-idms-webhooks", package_version())
    return {"driver_info": driver}


def web_redis(url: str, timeout: float) -> redis.Redis:
    """The web side's client: bounded waits, so a stalled Redis is a fast 503.

    A dropped connection is retried once (Redis restarted: reconnect); a timeout is not
    (a stalled Redis would only double the wait).
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
        **client_identity(),
    )


def worker_redis(url: str) -> redis.Redis:
    """The worker's own client: RQ raises its socket timeout, so it is not the web one."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, health_check_interval=30, **client_identity()
    )


logger = logging.getLogger("flask_idms_webhooks")


def warn_if_evicting(connection: redis.Redis, side: str) -> str | None:
    """Log a loud warning when Redis may evict keys (``maxmemory-policy`` other than
    ``noeviction``): job records and queued jobs would then vanish without a trace when
    memory fills. Answers the policy; None, and nothing said, where ``CONFIG GET`` is
    refused (a managed Redis) or Redis cannot be reached now."""
    try:
        found = connection.config_get("maxmemory-policy")
    except redis.RedisError:
        return None
    policy = str(found.get("maxmemory-policy", "")) if isinstance(found, dict) else ""
    if policy and policy != "noeviction":
        logger.warning(
            "%s: Redis maxmemory-policy is %r, not 'noeviction': when its memory fills, Redis "
            "will silently delete job records and queued jobs. Set `maxmemory-policy "
            "noeviction` (then a full Redis refuses new jobs with a 503 instead).",
            side,
            policy,
        )
    return policy or None


def queue_for(connection: redis.Redis, name: str) -> Queue:
    """The RQ queue of the jobs, with RQ's JSON serializer (no pickle of request data)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)
