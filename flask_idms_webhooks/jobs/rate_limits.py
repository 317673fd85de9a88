"""Rate limits counted in the jobs' Redis by ``limits``, the engine of flask-limiter: the
triggers of each task, and per client address its failed credentials and its polls.

A limit is a moving window (a slot taken frees itself one window later, so the
``Retry-After`` of a refusal is exact), one round trip per check, through the web side's
connection pool: the same bounded timeouts as the job store. When that Redis fails, the
limits fail open: the request goes on unlimited, one warning says so, and Redis is left
alone for ``STORAGE_RETRY`` seconds before the next try (a stalled Redis must not add its
timeout to every request).

flask-limiter's ``Limiter`` is not used: it hooks every request of the whole app, reads
the host's ``RATELIMIT_*`` settings, and counts before the view runs, while these limits
count what only the view knows (a trigger that would start a job, credentials that failed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis
from limits import RateLimitItem
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from ..config import parse_rate_limit
from ..errors import TaskLoadError
from ..logs import LOGGER
from ..model.tasks import Task

#: The keys' prefix: ``idms:limits:{queue name}:LIMITER/{kind}/{subject}/{amount}/...``.
PREFIX = "idms:limits"
#: Seconds a failed Redis is left alone before the limits try it again.
STORAGE_RETRY = 5.0
#: What each limit counts, in its keys.
TRIGGERS, AUTH_FAILURES, POLLS = "task", "auth-failures", "polls"

logger = logging.getLogger(LOGGER)

Limits = tuple[RateLimitItem, ...]


@dataclass(frozen=True)
class Refusal:
    """A limit reached, and the whole seconds until its window frees a slot."""

    limit: RateLimitItem
    retry_after: int

    @property
    def allowed(self) -> str:
        """The limit in words: ``"60 per 1 minute"``."""
        return str(self.limit)


def task_limits(tasks: Iterable[Task], default: Limits) -> dict[str, Limits]:
    """Each task's trigger limits: its own ``rate_limit``, else ``default``; a task with
    none is left out. A Python task's bad ``rate_limit`` fails here (a file's was checked
    when the file was read)."""
    found: dict[str, Limits] = {}
    for task in tasks:
        try:
            own = parse_rate_limit(task.rate_limit) if task.rate_limit is not None else None
        except ValueError as error:
            raise TaskLoadError(str(error), task=task.id, key="rate_limit") from None
        items = default if own is None else own
        if items:
            found[task.id] = items
    return found


class RateLimits:
    """One app's rate limits; a check answers a ``Refusal`` or None (go on)."""

    def __init__(
        self,
        connection: redis.Redis,
        namespace: str,
        *,
        triggers: Mapping[str, Limits],
        auth_failures: Limits,
        polls: Limits,
    ) -> None:
        #: Task id -> its limits (a task without is not there): read on every trigger.
        self.triggers = dict(triggers)
        self.auth_failures = auth_failures
        self.polls = polls
        storage = RedisStorage(
            "redis://",  # not dialled: the connections come from the web side's pool
            connection_pool=connection.connection_pool,
            key_prefix=f"{PREFIX}:{namespace}",
        )
        self.strategy = MovingWindowRateLimiter(storage)
        #: While Redis is failing: when to try it again (monotonic); 0 when it answers.
        self.away_until = 0.0

    def trigger(self, task_id: str) -> Refusal | None:
        """Count a trigger of the task that would start a job."""
        return self.hit(self.triggers.get(task_id, ()), TRIGGERS, task_id)

    def auth_failure(self, address: str) -> Refusal | None:
        """Count failed credentials from a client address."""
        return self.hit(self.auth_failures, AUTH_FAILURES, address)

    def poll(self, address: str) -> Refusal | None:
        """Count a poll from a client address."""
        return self.hit(self.polls, POLLS, address)

    def hit(self, items: Limits, kind: str, subject: str) -> Refusal | None:
        """Take a slot of each limit in turn; the first one full refuses (the slots the
        ones before it gave are kept, as flask-limiter does)."""
        if not items or (self.away_until and time.monotonic() < self.away_until):
            return None
        try:
            for item in items:
                if not self.strategy.hit(item, kind, subject):
                    reset, _ = self.strategy.get_window_stats(item, kind, subject)
                    return Refusal(item, max(1, math.ceil(reset - time.time())))
        except redis.RedisError as error:
            self.storage_failed(error)
            return None
        if self.away_until:
            self.away_until = 0.0
            logger.info("Rate limits enforced again: their Redis answers.")
        return None

    def storage_failed(self, error: redis.RedisError) -> None:
        if not self.away_until:
            logger.warning(
                "Rate limits not enforced: their Redis failed (%s: %s). Requests go on "
                "unlimited; tried again every %g s.",
                type(error).__name__,
                error,
                STORAGE_RETRY,
            )
        self.away_until = time.monotonic() + STORAGE_RETRY
