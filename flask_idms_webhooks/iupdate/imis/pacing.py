"""How many calls one job keeps in flight to iMIS: additive increase, multiplicative
decrease (AIMD), as TCP paces itself.

A job starts at its connection's ``max_concurrency``. A 429 or 503 halves the limit (once
per round: answers to calls that were already in flight when it was halved do not halve
it again) and holds every new call until its ``Retry-After`` has passed; each run of
``limit`` successes in a row then adds one, back up to ``max_concurrency``. So a
rate-limited iMIS is neither hammered nor left idle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: The longest a call waits for a slot before it checks again (a paused pacer resumes).
WAIT_STEP = 0.25


class Pacer:
    """Calls in flight for one job, at most ``limit`` (from 1 up to ``ceiling``)."""

    def __init__(self, ceiling: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_flight = 0
        #: The most calls in flight at once so far.
        self.peak = 0
        #: How often the limit was halved, and its lowest value.
        self.decreases = 0
        self.lowest = ceiling
        self._clock = clock
        self._round = 0
        self._successes = 0
        self._resume_at = 0.0
        self._condition = threading.Condition()

    @contextmanager
    def call(self) -> Iterator[int]:
        """A slot for one call, waiting for it; yields the round the call started in (for
        :meth:`throttled`)."""
        with self._condition:
            while True:
                pause = self._resume_at - self._clock()
                if pause <= 0 and self.in_flight < self.limit:
                    break
                self._condition.wait(min(WAIT_STEP, pause) if pause > 0 else WAIT_STEP)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            started_in = self._round
        try:
            yield started_in
        finally:
            with self._condition:
                self.in_flight -= 1
                self._condition.notify_all()

    def succeeded(self) -> None:
        """One call answered: a run of ``limit`` of them in a row adds one to the limit."""
        with self._condition:
            self._successes += 1
            if self._successes >= self.limit and self.limit < self.ceiling:
                self.limit += 1
                self._successes = 0
                log.info("iMIS keeps up: up to %d calls in flight", self.limit)
                self._condition.notify_all()

    def throttled(self, started_in: int, retry_after: float | None, status: int) -> None:
        """iMIS answered ``status`` (429 or 503) to a call started in round ``started_in``:
        halve the limit (once a round) and hold new calls for ``retry_after`` seconds."""
        with self._condition:
            self._successes = 0
            if retry_after:
                self._resume_at = max(self._resume_at, self._clock() + retry_after)
            if started_in != self._round:
                return  # this round was already halved
            self._round += 1
            before, self.limit = self.limit, max(1, self.limit // 2)
            self.decreases += 1
            self.lowest = min(self.lowest, self.limit)
            log.warning(
                "iMIS answered %d: calls in flight %d -> %d%s",
                status,
                before,
                self.limit,
                f", pausing {retry_after:g} s" if retry_after else "",
            )

    def describe(self) -> str:
        """The figures, for the job's description and the log."""
        with self._condition:
            text = f"{self.limit} of {self.ceiling} calls in flight"
            if self.decreases:
                text += f" (lowest {self.lowest} after {self.decreases} slow-downs)"
            return text
