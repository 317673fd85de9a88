"""The worker's patience with Redis: a job's own writes are retried with back-off until
Redis answers or ``IDMS_WEBHOOKS_STORE_OUTAGE`` has passed (tenacity does the waiting)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import tenacity

from ..errors import StoreUnavailable

logger = logging.getLogger("flask_idms_webhooks")

R = TypeVar("R")

#: The longest wait between two tries: a worker is back within seconds of Redis.
MAX_WAIT = 2.0


def _log_wait(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.warning(
        "Redis unavailable (%s); trying again in %.1f s (%.0f s so far)",
        error,
        state.upcoming_sleep,
        state.seconds_since_start or 0.0,
    )


def patiently(outage: float, call: Callable[[], R]) -> R:
    """``call()``, tried again while it raises ``StoreUnavailable``, for up to ``outage``
    seconds; then that error is raised."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(outage),
        # 0.1 s, doubling, at most MAX_WAIT, plus up to 0.1 s of jitter
        wait=tenacity.wait_exponential(multiplier=0.1, max=MAX_WAIT) + tenacity.wait_random(0, 0.1),
        retry=tenacity.retry_if_exception_type(StoreUnavailable),
        before_sleep=_log_wait,
        reraise=True,
    )
    return retrying(call)
