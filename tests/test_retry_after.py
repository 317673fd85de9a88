"""An honest Retry-After: the task's while queued, the time a running job has left (at the
rate of its last 30 seconds), clamped; EstimatedCompletionOn says when."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from flask_idms_webhooks.jobs.context import JobContext
from flask_idms_webhooks.jobs.estimate import Estimate, Forecast
from flask_idms_webhooks.state import WebhooksState
from tests.helpers import poll_path


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


WALL = 1_796_000_000.0  # 2026-11-30T00:53:20Z: the wall clock of the estimates below


def estimate(floor: int = 2, ceiling: int = 30) -> tuple[Estimate, Clock]:
    clock = Clock()
    return Estimate(floor, ceiling, clock=clock, wall=lambda: WALL + clock.now - 1000.0), clock


def test_without_a_rate_it_is_the_tasks_retry_after() -> None:
    forecast, _ = estimate()
    assert forecast.observe(0, None) == Forecast(30, None)
    assert forecast.observe(0, 100) == Forecast(30, None)  # one sample: no rate yet


def test_the_time_left_at_the_observed_rate_clamped() -> None:
    forecast, clock = estimate()
    forecast.observe(0, 1000)
    clock.now += 10
    slow = forecast.observe(100, 1000)  # 10 rows/s: 90 s left, more than the task's 30
    assert slow == Forecast(30, "2026-11-30T00:55:00Z")
    clock.now += 1
    fast = forecast.observe(990, 1000)  # 10 rows left at 90 rows/s: less than the floor
    assert fast.retry_after == 2


def test_retry_after_falls_as_the_job_speeds_up() -> None:
    forecast, clock = estimate(floor=1, ceiling=120)
    done, told = 0, []
    forecast.observe(done, 3000)
    for rows_a_second in [10] * 10 + [100] * 25:
        clock.now += 1
        done += rows_a_second
        told.append(forecast.observe(done, 3000).retry_after)
    assert told[9] == 120  # 2900 rows at 10/s: more than the most it may ask
    assert told == sorted(told, reverse=True)  # never asked to wait longer as it speeds up
    assert told[-1] < 10  # 250 rows left at the last 30 s' rate (75 rows/s): 4 s


def test_completion_on_is_now_plus_the_time_left() -> None:
    forecast, clock = estimate()
    forecast.observe(0, 100)
    clock.now += 10
    assert forecast.observe(50, 100) == Forecast(10, "2026-11-30T00:53:40Z")


def test_a_task_retry_after_under_the_floor_wins() -> None:
    forecast, clock = estimate(floor=5, ceiling=1)
    forecast.observe(0, 100)
    clock.now += 1
    assert forecast.observe(99, 100).retry_after == 1


def test_the_poll_tells_a_running_job_the_time_it_has_left(
    client: FlaskClient, state: WebhooksState, key: Callable[[str], str]
) -> None:
    """What a poller of a running job is told, as the job reports through its context."""
    started = client.post(
        "/idms/tasks/count/jobs",
        json={"QueryParameters": {"Count": 1000}},
        headers={"X-Webhook-Key": key("count")},
    )
    assert (started.headers["Retry-After"], started.get_json()["EstimatedCompletionOn"]) == (
        "7",
        None,
    )
    job = started.get_json() | {"Status": "in progress"}
    assert state.store.start(job) == 1
    clock = Clock()
    context = JobContext(
        state.store,
        job,
        state.tasks["count"],
        max_row_errors=50,
        estimate=Estimate(2, 7, clock=clock, wall=lambda: WALL + clock.now - 1000.0),
    )
    context.set_row_count(1000)
    poll = poll_path(started.headers["Location"])
    told = []
    for step in (10, 10, 10, 200, 200, 500):  # rows done each second, speeding up
        clock.now += 1
        context.count(updated=step)
        answer = client.get(poll)
        assert answer.status_code == 202
        told.append(int(answer.headers["Retry-After"]))
        assert answer.get_json()["RetryAfter"] == told[-1]
        assert answer.get_json()["EstimatedCompletionOn"] is not None
    assert told[0] == 7  # 970 rows at 10/s: the task's retry_after is the most
    assert told == sorted(told, reverse=True)
    assert told[-1] == 2  # 70 rows left at 155/s: under a second, the floor
