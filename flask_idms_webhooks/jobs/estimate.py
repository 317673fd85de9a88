"""How long a running job has left: the rows it still has to do at the rate it showed
over the last half minute. A poller is told to come back then (``Retry-After``, clamped
between ``IDMS_WEBHOOKS_RETRY_AFTER_MIN`` and the task's ``retry_after``) and the
document says when (``EstimatedCompletionOn``)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

#: The rate is the one of the last this many seconds: a job that speeds up (a slow first
#: page, a warm iMIS) is told so within it, and one pause does not swing the estimate.
WINDOW_SECONDS = 30.0


class Forecast(NamedTuple):
    """What a poller is told about a running job."""

    retry_after: int  # whole seconds
    completion_on: str | None  # ISO 8601 UTC; None while nothing shows a rate


def utc_at(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Estimate:
    """The forecast of one running job, from the rows done so far."""

    def __init__(
        self,
        floor: int,
        ceiling: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.floor = min(floor, ceiling)  # a task asking for less than the floor gets it
        self.ceiling = ceiling
        self._clock, self._wall = clock, wall
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, done: int, total: int | None) -> Forecast:
        """The forecast once ``done`` of ``total`` rows are done (``total`` None: unknown
        yet). Without a rate yet, the task's ``retry_after``: nothing better is known."""
        now = self._clock()
        samples = self._samples
        if samples and done < samples[-1][1]:
            samples.clear()  # counting started again (a new attempt)
        samples.append((now, done))
        while len(samples) > 2 and samples[1][0] <= now - WINDOW_SECONDS:
            samples.popleft()
        first_at, first_done = samples[0]
        if not total or done <= first_done or now <= first_at:
            return Forecast(self.ceiling, None)
        rate = (done - first_done) / (now - first_at)
        seconds = max(0, total - done) / rate
        retry_after = max(self.floor, min(self.ceiling, math.ceil(seconds)))
        return Forecast(retry_after, utc_at(self._wall() + seconds))
