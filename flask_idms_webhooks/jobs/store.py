"""The job store: the product's own records in Redis, independent of RQ's job hash (the
keys are listed in ``keys.py``). Every method is one Redis round trip unless it says."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import TypedDict, cast

import redis
from redis.client import Pipeline

from ..errors import StoreUnavailable, TaskBusy
from .codec import STORE_ERRORS, available, dumps, is_store_error, loads, unavailable
from .documents import IN_PROGRESS, JobDocument, RowError
from .keys import PREFIX, StoreKeys
from .listing import JobListing, seal_index
from .metrics import count_finished, count_trigger
from .schedules import ScheduleRecords

__all__ = [
    "IDEMPOTENCY_TTL",
    "MAX_STORED_ROW_ERRORS",
    "PREFIX",
    "STORE_ERRORS",
    "IdempotencyClaim",
    "JobStore",
    "available",
    "dumps",
    "is_store_error",
    "loads",
    "unavailable",
]

IDEMPOTENCY_TTL = 24 * 3600
MAX_STORED_ROW_ERRORS = 10_000


class IdempotencyClaim(TypedDict):
    """What an ``Idempotency-Key`` holds: the first request's job, body hash and answer."""

    ExecuteId: str
    BodyHash: str
    Status: int
    Headers: dict[str, str]
    Body: str


class JobStore(ScheduleRecords, JobListing):
    """Reads and writes job records; every method is one Redis round trip."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        result_ttl: int,
        heartbeat_timeout: int,
        namespace: str = StoreKeys.namespace,
    ) -> None:
        self.redis = connection
        self.namespace = namespace
        self.result_ttl = result_ttl
        self.heartbeat_timeout = heartbeat_timeout
        self._creations = itertools.count(1)

    @available
    def create(
        self,
        document: JobDocument,
        *,
        live_ttl: int,
        enqueue: Callable[[Pipeline], object],
        body: bytes | None = None,
        claim: tuple[str, IdempotencyClaim, int] | None = None,
        counted: tuple[str, int] | None = None,
        exclusive: bool = False,
        callback: str | None = None,
        joined: Callable[[JobDocument], IdempotencyClaim | None] | None = None,
    ) -> IdempotencyClaim | None:
        """Write a new job's record and enqueue it, in one transaction; answers None.

        ``enqueue`` issues RQ's commands on the pipeline first (RQ calls ``multi()`` itself);
        ``body`` is the document already serialised, if the caller has it. With ``claim``
        (an ``Idempotency-Key``'s key, first answer and seconds to keep it) the claim is
        written in the same transaction, only if the key was not claimed before: then
        nothing is written and the earlier claim is answered. (A claim and its job exist
        together or not at all, whatever instant Redis stops answering.) ``counted`` (the
        webhook and the code it answers) counts the trigger in the same transaction.
        ``callback`` (its URL, whole) is the job's completion callback, recorded with it.
        ``exclusive`` (a task that runs one job at a time): if a job of the task is queued
        or running, nothing is written and ``TaskBusy`` raised with its document; checked
        in the transaction, so of triggers arriving together exactly one starts a job. A
        request that follows that job instead (``joined`` answers its claim: a join) still
        claims its key, so a repeat replays the join whatever runs by then.
        """
        with self.redis.pipeline() as pipe:
            if claim is None and not exclusive:
                self._write_new(pipe, document, live_ttl, enqueue, body, callback)
                if counted is not None:
                    count_trigger(pipe, document["TaskId"], *counted)
                pipe.execute()
                return None
            claim_key = self.claim_key(claim[0]) if claim is not None else None
            active = self.active_key(document["TaskId"])
            while True:
                try:
                    try:
                        pipe.watch(*(key for key in (claim_key, active) if key))  # type: ignore[no-untyped-call]
                        earlier = pipe.get(claim_key) if claim_key else None
                        running = self._running(pipe, document["TaskId"]) if exclusive else None
                    except redis.RedisError as error:  # only read so far: nothing changed
                        if not is_store_error(error):
                            raise
                        raise StoreUnavailable(str(error), sent=False) from error
                    if earlier is not None:
                        claimed: IdempotencyClaim = loads(cast(bytes, earlier))
                        return claimed
                    if running is not None:
                        busy, beating = loads(running[0]), running[1]
                        # (a job running with no heartbeat may be dead: not joined yet)
                        alive = beating or busy["Status"] != IN_PROGRESS
                        follows = joined(busy) if joined and claim_key and alive else None
                        if follows is not None and claim is not None and claim_key is not None:
                            pipe.multi()
                            pipe.set(claim_key, dumps(follows), ex=claim[2])
                            pipe.execute()
                        raise TaskBusy(busy, beating=alive)
                    self._write_new(pipe, document, live_ttl, enqueue, body, callback)
                    if counted is not None:
                        count_trigger(pipe, document["TaskId"], *counted)
                    if claim is not None and claim_key is not None:
                        pipe.set(claim_key, dumps(claim[1]), ex=claim[2])
                    pipe.execute()
                    return None
                except redis.WatchError:
                    continue  # claimed, or a job of the task started or ended: look again

    @available
    def read(self, job_id: str) -> tuple[bytes | None, bytes | None, bool]:
        """(sealed document, live document, heartbeat alive): one MGET."""
        sealed, live, beat = cast(
            list[bytes | None],
            self.redis.mget(
                [self.result_key(job_id), self.live_key(job_id), self.heartbeat_key(job_id)]
            ),
        )
        return sealed, live, beat is not None

    @available
    def update(self, document: JobDocument, row_errors: Sequence[RowError] = ()) -> bool:
        """Write a running job's progress and its new row errors; answers whether it was
        cancelled meanwhile."""
        job_id = document["ExecuteId"]
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.cancel_key(job_id))
            pipe.set(self.live_key(job_id), dumps(document), xx=True, keepttl=True)
            pipe.set(self.heartbeat_key(job_id), b"1", ex=self.heartbeat_timeout)
            pipe.delete(self.suspect_key(job_id))
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
        """A sign of life of a running job (and any suspicion of its death dropped)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.heartbeat_key(job_id), b"1", ex=self.heartbeat_timeout)
            pipe.delete(self.suspect_key(job_id))
            pipe.execute()

    @available
    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.cancel_key(job_id)))

    @available
    def request_cancel(self, job_id: str, ttl: int) -> None:
        """Record a cancel request, with when it was made (the first one counts)."""
        self.redis.set(self.cancel_key(job_id), str(time.time()), ex=ttl, nx=True)

    @available
    def cancel_requested_at(self, job_id: str) -> float | None:
        """When a cancel of the job was asked (epoch seconds), if it was."""
        raw = cast(bytes | None, self.redis.get(self.cancel_key(job_id)))
        if raw is None:
            return None
        try:
            return float(raw)
        except ValueError:  # an older release's flag ("1"): asked, time unknown
            return 0.0

    @available
    def seal(
        self,
        document: JobDocument,
        row_errors: Sequence[RowError] = (),
        *,
        max_failures: int | None = None,
    ) -> bool:
        """Write the final document once; answers whether this call was the one that did.
        A scheduled job's outcome is counted for its schedule in the same transaction
        (``max_failures``: its task's; None: the task has no schedule now)."""
        job_id = document["ExecuteId"]
        with self.redis.pipeline() as pipe:
            counted = max_failures is not None and self.count_outcome(pipe, document, max_failures)
            pipe.set(self.result_key(job_id), dumps(document), nx=True, ex=self.result_ttl)
            pipe.delete(
                self.live_key(job_id),
                self.heartbeat_key(job_id),
                self.cancel_key(job_id),
                self.suspect_key(job_id),
            )
            pipe.zrem(self.RUNNING, job_id)
            pipe.zrem(self.QUEUED, job_id)
            pipe.srem(self.active_key(document["TaskId"]), job_id)
            seal_index(pipe, job_id, document["Status"], time.time())
            if document.get("CallbackUrl"):
                self.mark_callback_due(pipe, job_id)
            self._push_errors(pipe, job_id, row_errors)
            pipe.expire(self.errors_key(job_id), self.result_ttl)
            written = pipe.execute()[1 if counted else 0]
        return bool(written)

    @available
    def count_finished(self, document: JobDocument) -> None:
        """Count a job just sealed (by the one that sealed it) in the totals."""
        with self.redis.pipeline(transaction=False) as pipe:
            count_finished(pipe, document)
            pipe.execute()

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
    def forget_queued(self, job_id: str) -> None:
        self.redis.zrem(self.QUEUED, job_id)

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
    def claimed(self, key: str) -> bool:
        """Whether an ``Idempotency-Key`` claim exists (its request would be a replay)."""
        return bool(self.redis.exists(self.claim_key(key)))
