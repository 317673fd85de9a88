"""The job counters kept in Redis, so that every web process answers the same totals
whatever process accepted or finished a job: triggers accepted (counted in the trigger's
own transaction), jobs finished by status, rows by outcome, and job durations (counted
once a job is sealed, by whoever sealed it). ``read_totals`` reads them all, with the
queue's gauges, in one round trip."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from redis.client import Pipeline

from .codec import available
from .documents import JobDocument, duration
from .keys import PREFIX, StoreKeys
from .liveness import ALIVE, ALIVE_FOR, WORKERS

TRIGGERS = PREFIX + "metrics:triggers"  # "task route code" -> count
FINISHED = PREFIX + "metrics:finished"  # "task status" -> count
ROWS = PREFIX + "metrics:rows"  # "task outcome" -> count
DURATIONS = PREFIX + "metrics:durations"  # "task bucket" -> count; "task sum" -> seconds
#: Upper bounds of the duration buckets, seconds: a second to a day.
BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 43200, 86400)
#: The counts of a job document, as the rows counter's ``outcome`` label.
OUTCOMES = {
    "Inserted": "inserted",
    "Updated": "updated",
    "Skipped": "skipped",
    "Error": "error",
    "Deleted": "deleted",
}
#: Separates the labels in a counter's field (no task id, route or status holds it).
SEP = " "


def count_trigger(pipe: Pipeline, task_id: str, route: str, code: int) -> None:
    """On a trigger's transaction: one more accepted trigger."""
    pipe.hincrby(TRIGGERS, SEP.join((task_id, route, str(code))), 1)


def count_finished(pipe: Pipeline, document: JobDocument) -> None:
    """On a pipeline after a job's seal: its status, its rows and its duration."""
    task_id = document["TaskId"]
    pipe.hincrby(FINISHED, SEP.join((task_id, document["Status"])), 1)
    counts: Mapping[str, Any] = document
    for name, outcome in OUTCOMES.items():
        rows = int(counts.get(f"{name}Count") or 0)
        if rows:
            pipe.hincrby(ROWS, SEP.join((task_id, outcome)), rows)
    seconds = duration(document)
    if seconds is not None:
        bucket = BUCKETS[bisect.bisect_left(BUCKETS, seconds)] if seconds <= BUCKETS[-1] else "+Inf"
        pipe.hincrby(DURATIONS, SEP.join((task_id, str(bucket))), 1)
        pipe.hincrbyfloat(DURATIONS, SEP.join((task_id, "sum")), seconds)


@dataclass
class Totals:
    """The counters and gauges as Redis holds them now."""

    triggers: dict[tuple[str, ...], float] = field(default_factory=dict)
    finished: dict[tuple[str, ...], float] = field(default_factory=dict)
    rows: dict[tuple[str, ...], float] = field(default_factory=dict)
    durations: dict[tuple[str, ...], float] = field(default_factory=dict)
    queue_depth: int = 0
    oldest_queued_seconds: float = 0.0
    workers_alive: int = 0


@available
def read_totals(connection: redis.Redis, queue_key: str) -> Totals:
    """Every counter, the queue's depth, the oldest due job's wait and the live workers."""
    with connection.pipeline(transaction=False) as pipe:
        for key in (TRIGGERS, FINISHED, ROWS, DURATIONS):
            pipe.hgetall(key)
        pipe.llen(queue_key)
        pipe.zrange(StoreKeys.QUEUED, 0, 0, withscores=True)
        pipe.time()
        pipe.eval(ALIVE, 1, WORKERS, ALIVE_FOR)
        *counters, depth, oldest, now, alive = pipe.execute()
    hashes = [
        {tuple(k.decode().split(SEP)): float(v) for k, v in cast(dict[bytes, bytes], h).items()}
        for h in counters
    ]
    seconds = float(now[0]) + float(now[1]) / 1e6
    waiting = max(0.0, seconds - float(oldest[0][1])) if oldest else 0.0
    triggers, finished, rows, durations = hashes
    return Totals(triggers, finished, rows, durations, int(depth), waiting, int(alive))
