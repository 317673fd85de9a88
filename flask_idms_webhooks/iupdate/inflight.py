"""Rows of a target without transactions (iMIS) written several at once.

Up to ``width`` rows are in flight, each in a thread of a pool; the engine's thread feeds
them, collects what they did, and reports it in source order, so counts, row numbers and
``errors.csv`` come out as they would one row at a time. Rows whose match keys could
touch the same records (``base.match_key``) are never in flight together: each waits for
the one before it, in source order. A row waiting behind its key does not hold up the
others; at most ``window`` rows are held at once, so memory stays flat.
"""

from __future__ import annotations

import concurrent.futures as futures
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from .base import RowWriteError

#: How long the feeding thread waits for a row to finish before it checks for a cancel.
WAIT_STEP = 0.2


@dataclass
class Done:
    """What one row came to: an outcome, a row error, or an error that ends the job."""

    number: int
    outcome: str | None = None
    error: str | None = None
    fatal: BaseException | None = None


@dataclass
class _Row:
    number: int
    key: Hashable | None
    work: Callable[[], str]


@dataclass
class _Key:
    """A key with a row in flight, and the rows of that key waiting for it."""

    waiting: deque[_Row] = field(default_factory=deque)


class RowsInFlight:
    """Feeds rows to a pool of ``width`` threads and hands their results to ``deliver`` in
    row order. ``checkpoint`` runs in the feeding thread while it waits (cancel checks);
    whatever it raises stops the feeding, as does a row's fatal error: rows in flight
    finish, everything that finished is delivered, and the error is raised."""

    def __init__(
        self,
        width: int,
        deliver: Callable[[Done], None],
        checkpoint: Callable[[], None],
        *,
        window: int | None = None,
    ) -> None:
        self.width = width
        self.window = window or 4 * width
        self._deliver, self._checkpoint = deliver, checkpoint
        self._pool = futures.ThreadPoolExecutor(width, thread_name_prefix="idms-row")
        self._running: dict[futures.Future[str], _Row] = {}
        self._keys: dict[Hashable, _Key] = {}
        self._finished: dict[int, Done] = {}
        self._held = 0  # rows fed and not yet delivered
        self._next = 1  # the row number to deliver next (rows are numbered from 1)
        self._fatal: BaseException | None = None

    def __enter__(self) -> RowsInFlight:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def busy(self, key: Hashable) -> bool:
        """Whether a row of ``key`` was fed and has not finished."""
        return key in self._keys

    def feed(self, number: int, key: Hashable | None, work: Callable[[], str]) -> None:
        """Start row ``number`` (or queue it behind its key); rows come numbered 1, 2, ..."""
        while self._held >= self.window:
            self._collect()
        self._held += 1
        row = _Row(number, key, work)
        if key is not None and key in self._keys:
            self._keys[key].waiting.append(row)
            return
        if key is not None:
            self._keys[key] = _Key()
        self._start(row)

    def finish(self) -> None:
        """Wait for every row fed, delivering them; raises a row's fatal error."""
        while self._held:
            self._collect()

    def stop(self) -> None:
        """After an error in the feeding thread: no more rows start; those in flight
        finish, and what finished is delivered."""
        for key in self._keys.values():
            self._held -= len(key.waiting)
            key.waiting.clear()
        while self._running:
            self._settle(futures.wait(self._running, return_when=futures.FIRST_COMPLETED)[0])
        for number in sorted(self._finished):
            self._deliver(self._finished.pop(number))
        self._held = 0

    def _start(self, row: _Row) -> None:
        self._running[self._pool.submit(row.work)] = row

    def _collect(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        self._checkpoint()
        done, _ = futures.wait(self._running, WAIT_STEP, futures.FIRST_COMPLETED)
        self._settle(done)
        while self._next in self._finished:
            self._held -= 1
            self._deliver(self._finished.pop(self._next))
            self._next += 1
        if self._fatal is not None:
            raise self._fatal

    def _settle(self, done: set[futures.Future[str]]) -> None:
        for future in done:
            row = self._running.pop(future)
            self._finished[row.number] = _result(row.number, future)
            if self._finished[row.number].fatal is not None and self._fatal is None:
                self._fatal = self._finished[row.number].fatal
            if row.key is None:
                continue
            waiting = self._keys[row.key].waiting
            if waiting and self._fatal is None:
                self._start(waiting.popleft())
            elif not waiting:
                del self._keys[row.key]


def _result(number: int, future: futures.Future[Any]) -> Done:
    error = future.exception()
    if error is None:
        return Done(number, outcome=future.result())
    if isinstance(error, RowWriteError):
        return Done(number, error=str(error))
    return Done(number, fatal=error)
