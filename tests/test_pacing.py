"""The pacer of calls in flight to iMIS (AIMD): a 429 or 503 halves the limit once per
round and holds new calls until ``Retry-After``; a run of successes adds one back; never
more calls at once than the limit. On a fake clock, with real threads."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from flask_idms_webhooks.iupdate.imis.pacing import Pacer

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started_round(pacer: Pacer) -> int:
    with pacer.call() as round_:
        return round_


def test_a_throttle_halves_the_limit_once_a_round_and_never_below_one() -> None:
    pacer = Pacer(8, clock=Clock())
    assert pacer.limit == 8
    first = started_round(pacer)
    pacer.throttled(first, None, 429)
    assert pacer.limit == 4
    pacer.throttled(first, None, 429)  # a call of the same round: already halved
    assert pacer.limit == 4
    for _ in range(5):
        pacer.throttled(started_round(pacer), None, 503)
    # Every round with a throttle is a slow-down, counted, even at the floor.
    assert pacer.limit == 1 and pacer.lowest == 1 and pacer.decreases == 6


def test_a_run_of_successes_adds_one_up_to_the_ceiling_and_a_throttle_restarts_it() -> None:
    pacer = Pacer(4, clock=Clock())
    pacer.throttled(started_round(pacer), None, 429)
    assert pacer.limit == 2
    pacer.succeeded()
    pacer.throttled(started_round(pacer), None, 429)  # the run of one success is lost
    assert pacer.limit == 1
    pacer.succeeded()
    assert pacer.limit == 2  # a run of 1 at limit 1
    for _ in range(2):
        pacer.succeeded()
    assert pacer.limit == 3
    for _ in range(100):
        pacer.succeeded()
    assert pacer.limit == 4  # never above the ceiling


def test_retry_after_holds_new_calls_until_it_has_passed() -> None:
    clock = Clock()
    pacer = Pacer(2, clock=clock)
    pacer.throttled(started_round(pacer), 2, 429)
    through = threading.Event()

    def call() -> None:
        with pacer.call():
            through.set()

    caller = threading.Thread(target=call)
    caller.start()
    assert not through.wait(0.6)  # held: the clock has not moved
    clock.now += 2.5
    assert through.wait(5)  # let through at its next check
    caller.join()


def test_never_more_calls_at_once_than_the_limit() -> None:
    pacer = Pacer(3)
    lock, now, most = threading.Lock(), [0], [0]

    def call() -> None:
        with pacer.call():
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(0.01)
            with lock:
                now[0] -= 1
        pacer.succeeded()

    threads = [threading.Thread(target=call) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == pacer.peak == 3


def test_the_log_and_the_description_say_what_happened(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    pacer = Pacer(8, clock=clock)
    assert pacer.describe() == "8 of 8 calls in flight"
    with caplog.at_level(logging.WARNING, logger="flask_idms_webhooks.iupdate.imis.pacing"):
        pacer.throttled(started_round(pacer), 2, 429)
        clock.now += 2
        pacer.throttled(started_round(pacer), None, 503)
    assert [r.getMessage() for r in caplog.records] == [
        "iMIS answered 429: calls in flight 8 -> 4, pausing 2 s",
        "iMIS answered 503: calls in flight 4 -> 2",
    ]
    assert pacer.describe() == "2 of 8 calls in flight (lowest 2 after 2 slow-downs)"


def test_a_ceiling_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Pacer(0)
