"""Rows several at once (``RowsInFlight``): results in row order whatever finishes first,
rows of one key one after another in source order while other rows pass them, a row
error kept to its row, a fatal error or a cancel stopping the feeding with the rows in
flight finished and delivered, and never more rows held than the window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from flask_idms_webhooks.iupdate.base import RowWriteError
from flask_idms_webhooks.iupdate.inflight import Done, RowsInFlight

pytestmark = pytest.mark.timeout(30)


class Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, int]] = []
        self.delivered: list[Done] = []

    def work(
        self, number: int, seconds: float, fail: BaseException | None = None
    ) -> Callable[[], str]:
        def run() -> str:
            with self.lock:
                self.events.append(("start", number))
            time.sleep(seconds)
            with self.lock:
                self.events.append(("end", number))
            if fail is not None:
                raise fail
            return f"done {number}"

        return run

    def deliver(self, done: Done) -> None:
        self.delivered.append(done)


def nothing() -> None:
    return None


def test_results_come_in_row_order_whatever_finishes_first() -> None:
    log = Log()
    with RowsInFlight(4, log.deliver, nothing) as flight:
        for number in range(1, 11):
            flight.feed(number, number, log.work(number, (11 - number) * 0.005))
        flight.finish()
    assert [d.number for d in log.delivered] == list(range(1, 11))
    assert [d.outcome for d in log.delivered] == [f"done {n}" for n in range(1, 11)]
    ends = [n for kind, n in log.events if kind == "end"]
    assert ends != sorted(ends)  # they did finish out of order


def test_rows_of_one_key_run_one_at_a_time_in_order_and_others_pass_them() -> None:
    log = Log()
    keys = {1: "k", 2: "a", 3: "k", 4: "b", 5: "k", 6: "c", 7: "k", 8: "d"}
    with RowsInFlight(4, log.deliver, nothing) as flight:
        for number, key in keys.items():
            flight.feed(number, key, log.work(number, 0.03 if key == "k" else 0.001))
            assert flight.busy("k")
        flight.finish()
        assert not flight.busy("k")
    of_k = [(kind, n) for kind, n in log.events if keys[n] == "k"]
    assert of_k == [(kind, n) for n in (1, 3, 5, 7) for kind in ("start", "end")]
    # Row 8 (another key) did not wait for the rows of "k" before it.
    assert log.events.index(("end", 8)) < log.events.index(("start", 7))
    assert [d.number for d in log.delivered] == list(range(1, 9))


def test_a_row_error_is_that_row_s_and_the_others_go_on() -> None:
    log = Log()
    with RowsInFlight(3, log.deliver, nothing) as flight:
        for number in range(1, 6):
            fail = RowWriteError("refused") if number == 2 else None
            flight.feed(number, None, log.work(number, 0.001, fail))
        flight.finish()
    assert [(d.number, d.outcome, d.error) for d in log.delivered] == [
        (1, "done 1", None),
        (2, None, "refused"),
        (3, "done 3", None),
        (4, "done 4", None),
        (5, "done 5", None),
    ]


def run_until_stopped(flight: RowsInFlight, log: Log, rows: int, fail_at: int | None) -> None:
    """Feed as the engine does: on any error, stop (in-flight rows finish) and raise."""
    try:
        for number in range(1, rows + 1):
            fail = ValueError("iMIS is gone") if number == fail_at else None
            flight.feed(number, None, log.work(number, 0.01, fail))
        flight.finish()
    except BaseException:
        flight.stop()
        raise


def every_started_row_ended(log: Log) -> bool:
    started = {n for kind, n in log.events if kind == "start"}
    return started == {n for kind, n in log.events if kind == "end"}


def test_a_fatal_error_stops_the_feeding_and_the_rows_in_flight_finish() -> None:
    log = Log()
    with RowsInFlight(4, log.deliver, nothing) as flight, pytest.raises(ValueError, match="gone"):
        run_until_stopped(flight, log, 200, fail_at=5)
    assert every_started_row_ended(log)
    started = {n for kind, n in log.events if kind == "start"}
    assert len(started) < 200  # the feeding stopped
    numbers = [d.number for d in log.delivered]
    assert numbers == sorted(numbers) and set(numbers) == started


def test_a_cancel_at_a_checkpoint_stops_it_the_same_way() -> None:
    log = Log()
    checks = [0]

    class Cancelled(Exception):
        pass

    def checkpoint() -> None:
        checks[0] += 1
        if checks[0] > 5:
            raise Cancelled

    with RowsInFlight(4, log.deliver, checkpoint) as flight, pytest.raises(Cancelled):
        run_until_stopped(flight, log, 500, fail_at=None)
    assert every_started_row_ended(log)
    started = {n for kind, n in log.events if kind == "start"}
    assert 4 <= len(started) < 500
    assert {d.number for d in log.delivered} == started


def test_never_more_rows_held_than_the_window() -> None:
    log = Log()
    most = 0
    with RowsInFlight(2, log.deliver, nothing, window=5) as flight:
        for number in range(1, 41):
            # Row 1 is slow: the rows after it finish but wait for it to be delivered.
            flight.feed(number, None, log.work(number, 0.2 if number == 1 else 0.001))
            most = max(most, number - len(log.delivered))
        flight.finish()
    assert most == 5
    assert [d.number for d in log.delivered] == list(range(1, 41))


def test_its_figures() -> None:
    flight = RowsInFlight(3, lambda done: None, nothing)
    try:
        assert (flight.width, flight.window) == (3, 12)
    finally:
        flight.__exit__(None, None, None)
