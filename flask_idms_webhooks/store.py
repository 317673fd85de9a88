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

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import redis
from redis.client import Pipeline

from .errors import StoreUnavailable

PREFIX = "idms:"
IDEMPOTENCY_TTL = 24 * 3600
MAX_STORED_ROW_ERRORS = 10_000

Document = dict[str, Any]


def dumps(document: Document) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@contextmanager
def available() -> Iterator[None]:
    """Turn Redis being unreachable or stalled into ``StoreUnavailable``."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise StoreUnavailable(str(error)) from error


class JobStore:
    """Reads and writes job records; every method is one Redis round trip."""

    def __init__(self, connection: redis.Redis, *, result_ttl: int, heartbeat_timeout: int) -> None:
        self.redis = connection
        self.result_ttl = result_ttl
        self.heartbeat_timeout = heartbeat_timeout

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

    def create(
        self,
        document: Document,
        *,
        live_ttl: int,
        enqueue: Callable[[Pipeline], object],
    ) -> None:
        """Write a new job's record and enqueue it, in one pipelined transaction.

        ``enqueue`` issues RQ's commands on the pipeline first (RQ calls ``multi()`` itself).
        """
        job_id = document["ExecuteId"]
        with available(), self.redis.pipeline() as pipe:
            enqueue(pipe)
            if not pipe.explicit_transaction:
                pipe.multi()
            now = time.time()
            history = self.history_key(document["TaskId"])
            pipe.set(self.live_key(job_id), dumps(document), ex=live_ttl)
            pipe.zadd(history, {job_id: now})
            # Older entries can only point at records that have expired: keep the index bounded.
            pipe.zremrangebyscore(history, "-inf", now - live_ttl - self.result_ttl)
            pipe.execute()

    def read(self, job_id: str) -> tuple[bytes | None, bytes | None, bool]:
        """(sealed document, live document, heartbeat alive) in one round trip."""
        with available():
            sealed, live, beat = cast(
                list[bytes | None],
                self.redis.mget(
                    [self.result_key(job_id), self.live_key(job_id), self.heartbeat_key(job_id)]
                ),
            )
        return sealed, live, beat is not None

    def start(self, document: Document) -> bool:
        """Mark a job running: its live record, a first heartbeat, the running set."""
        job_id = document["ExecuteId"]
        with available(), self.redis.pipeline() as pipe:
            pipe.set(self.live_key(job_id), dumps(document), xx=True, keepttl=True)
            pipe.set(self.heartbeat_key(job_id), b"1", ex=self.heartbeat_timeout)
            pipe.zadd(self.RUNNING, {job_id: time.time()})
            written, _, _ = pipe.execute()
        return bool(written)

    def update(self, document: Document, row_errors: Sequence[Document] = ()) -> bool:
        """Write a running job's progress and its new row errors; answers whether it was
        cancelled meanwhile."""
        job_id = document["ExecuteId"]
        with available(), self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.cancel_key(job_id))
            pipe.set(self.live_key(job_id), dumps(document), xx=True, keepttl=True)
            pipe.set(self.heartbeat_key(job_id), b"1", ex=self.heartbeat_timeout)
            self._push_errors(pipe, job_id, row_errors)
            cancelled = pipe.execute()[0]
        return bool(cancelled)

    def _push_errors(self, pipe: Pipeline, job_id: str, row_errors: Sequence[Document]) -> None:
        if row_errors:
            pipe.rpush(self.errors_key(job_id), *(dumps(error) for error in row_errors))
            pipe.expire(self.errors_key(job_id), self.result_ttl + 86400)

    def row_errors(self, job_id: str) -> list[Document]:
        """Every row error kept for a job (up to ``MAX_STORED_ROW_ERRORS``), in row order."""
        with available():
            raw = cast(list[bytes], self.redis.lrange(self.errors_key(job_id), 0, -1))
        return [json.loads(item) for item in raw]

    def beat(self, job_id: str) -> None:
        with available():
            self.redis.set(self.heartbeat_key(job_id), b"1", ex=self.heartbeat_timeout)

    def cancel_requested(self, job_id: str) -> bool:
        with available():
            return bool(self.redis.exists(self.cancel_key(job_id)))

    def request_cancel(self, job_id: str, ttl: int) -> None:
        with available():
            self.redis.set(self.cancel_key(job_id), b"1", ex=ttl)

    def seal(self, document: Document, row_errors: Sequence[Document] = ()) -> bool:
        """Write the final document once; answers whether this call was the one that did."""
        job_id = document["ExecuteId"]
        with available(), self.redis.pipeline() as pipe:
            pipe.set(self.result_key(job_id), dumps(document), nx=True, ex=self.result_ttl)
            pipe.delete(self.live_key(job_id), self.heartbeat_key(job_id), self.cancel_key(job_id))
            pipe.zrem(self.RUNNING, job_id)
            self._push_errors(pipe, job_id, row_errors)
            pipe.expire(self.errors_key(job_id), self.result_ttl)
            written = pipe.execute()[0]
        return bool(written)

    def running(self) -> list[tuple[str, bool]]:
        """Running job ids, each with whether its heartbeat is alive (the reaper's view)."""
        with available():
            ids = [
                raw.decode() for raw in cast(list[bytes], self.redis.zrange(self.RUNNING, 0, -1))
            ]
            if not ids:
                return []
            beats = self.redis.mget([self.heartbeat_key(job_id) for job_id in ids])
        return [(job_id, beat is not None) for job_id, beat in zip(ids, beats, strict=True)]

    def live(self, job_id: str) -> bytes | None:
        with available():
            return cast(bytes | None, self.redis.get(self.live_key(job_id)))

    def forget_running(self, job_id: str) -> None:
        with available():
            self.redis.zrem(self.RUNNING, job_id)

    def history(self, task_id: str, offset: int, limit: int) -> tuple[int, list[bytes]]:
        """(number of jobs, documents of one page, newest first) of a task."""
        key = self.history_key(task_id)
        with available():
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
            with available():
                self.redis.zrem(key, *gone)
        return total - len(gone), documents

    def claim(self, key: str, value: Document) -> Document | None:
        """Claim an idempotency key; answers the earlier claim when there is one."""
        full_key = f"{PREFIX}idem:{key}"
        with available():
            if self.redis.set(full_key, dumps(value), nx=True, ex=IDEMPOTENCY_TTL):
                return None
            earlier = self.redis.get(full_key)
        if earlier is None:  # expired between the two calls: claim again
            return self.claim(key, value)
        claimed: Document = json.loads(earlier)
        return claimed

    def release(self, key: str) -> None:
        """Drop a claim whose job could not be started, so a retry can start it."""
        with available():
            self.redis.delete(f"{PREFIX}idem:{key}")

    def claim_chain(self, job_id: str) -> bool:
        """Whether this caller is the one to start a finished job's chained tasks (the
        worker, the reaper and a poller may all see a dead job's end)."""
        with available():
            claimed = self.redis.set(f"{PREFIX}chained:{job_id}", b"1", nx=True, ex=86400)
        return bool(claimed)

    def exists(self, job_id: str) -> bool:
        with available():
            return bool(self.redis.exists(self.live_key(job_id), self.result_key(job_id)))
