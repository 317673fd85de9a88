"""The next source page read while this one is written (``ReadAhead``: in order, never
more than one page ahead, a source error raised where it happened, closed early without
hanging), and the match key that keeps rows of one record apart (``match_key``)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from flask_idms_webhooks.iupdate.base import match_key
from flask_idms_webhooks.iupdate.readahead import ReadAhead

pytestmark = pytest.mark.timeout(30)


class Source:
    """Pages 1..count, recording which were pulled, failing at ``fail_at``."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.pulled: list[int] = []
        self.closed = threading.Event()

    def pages(self) -> Iterator[Any]:
        try:
            for number in range(1, self.count + 1):
                if number == self.fail_at:
                    raise RuntimeError(f"page {number} could not be read")
                self.pulled.append(number)
                yield number
        finally:
            self.closed.set()


def settle(source: Source, pulled: int) -> None:
    deadline = time.monotonic() + 5
    while len(source.pulled) < pulled and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # time for the reader to go further, if it would


def test_pages_come_in_order_and_never_more_than_one_ahead() -> None:
    source = Source(5)
    ahead = ReadAhead(source.pages())  # type: ignore[arg-type]
    settle(source, 1)
    assert source.pulled == [1]  # nothing taken yet: one page read, no more
    assert next(ahead) == 1
    settle(source, 2)
    assert source.pulled == [1, 2]  # page 2 read while page 1 is written
    assert list(ahead) == [2, 3, 4, 5]
    assert source.closed.wait(5)


def test_a_source_error_is_raised_after_the_pages_before_it() -> None:
    source = Source(5, fail_at=3)
    ahead = ReadAhead(source.pages())  # type: ignore[arg-type]
    assert [next(ahead), next(ahead)] == [1, 2]
    with pytest.raises(RuntimeError, match="page 3"):
        next(ahead)
    assert source.closed.wait(5)


def test_closing_early_stops_the_reader_and_closes_the_source() -> None:
    source = Source(1000)
    ahead = ReadAhead(source.pages(), name="test-read-ahead")  # type: ignore[arg-type]
    assert next(ahead) == 1
    ahead.close()
    assert source.closed.is_set()
    assert not any(t.name == "test-read-ahead" for t in threading.enumerate())
    assert len(source.pulled) <= 3
    with pytest.raises(StopIteration):
        next(ahead)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"ID": "ABC "}, {"ID": "abc"}),
        ({"ID": 1}, {"ID": "1.0"}),
        ({"ID": Decimal("1.00")}, {"ID": 1}),
        ({"When": dt.date(2024, 1, 2)}, {"When": "2024-01-02"}),
        ({"A": "x", "B": 2}, {"B": "2", "A": "X"}),
        ({"Flag": True}, {"Flag": 1}),
    ],
)
def test_values_a_database_could_call_equal_share_a_key(one: Any, other: Any) -> None:
    assert match_key(one) == match_key(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"ID": "abc"}, {"ID": "abd"}),
        ({"ID": 1}, {"ID": 2}),
        ({"ID": "1"}, {"ID": "1a"}),
        ({"A": "x", "B": 1}, {"A": "x", "B": 2}),
    ],
)
def test_different_values_have_different_keys(one: Any, other: Any) -> None:
    assert match_key(one) != match_key(other)
