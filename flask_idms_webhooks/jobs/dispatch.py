"""The job store's records of dispatches and recovery: the conditional start, the
queued list the reaper reads, a job dispatched again, a queued job cancelled in one step,
the chain a finished job claims."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import redis
from redis.client import Pipeline

from ..errors import TaskBusy
from .callback_records import CallbackRecords, mark_due_script
from .codec import available, dumps, loads
from .documents import CANCELLED, JOB_ID_LENGTH, JobDocument
from .listing import sealed_key


def rq_job_id(job_id: str, dispatch: int) -> str:
    """The RQ job id of a job's ``dispatch``-th dispatch: the job id for the first (as
    every earlier release), ``<id>--<n>`` after (longer than any job id, so never one;
    RQ allows letters, digits, ``_`` and ``-`` only)."""
    return job_id if dispatch <= 1 else f"{job_id}--{dispatch}"


def job_id_of(rq_id: str) -> str:
    """The job id of an RQ job id ``rq_job_id`` made (a job id is 22 characters)."""
    base, separator, number = rq_id.rpartition("--")
    return base if separator and len(base) == JOB_ID_LENGTH and number.isdigit() else rq_id


class Dispatch(NamedTuple):
    """A job's current dispatch: its RQ job id and number (from 1; RQ job id = job id for
    the first), the start attempts of the current attempt, whether it started, and
    whether the job's record still lives."""

    rq_id: str
    number: int
    starts: int
    started_by: str | None = None  # the RQ job id that started the current attempt
    live: bool = True

    @property
    def started(self) -> bool:
        return self.started_by is not None


#: A process trims a task's history index once every this many jobs it creates.
HISTORY_TRIM_EVERY = 64


class DispatchRecords(CallbackRecords):
    """The records of a job's dispatches (part of ``JobStore``)."""

    redis: redis.Redis
    result_ttl: int
    heartbeat_timeout: int
    _creations: itertools.count[int]

    def _write_new(
        self,
        pipe: Pipeline,
        document: JobDocument,
        live_ttl: int,
        enqueue: Callable[[Pipeline], object],
        body: bytes | None,
        callback: str | None = None,
    ) -> None:
        job_id = document["ExecuteId"]
        if not pipe.explicit_transaction:
            pipe.multi()  # before RQ's commands: a WATCHing pipeline runs them at once else
        enqueue(pipe)
        now = time.time()
        history = self.history_key(document["TaskId"])
        pipe.set(self.live_key(job_id), body or dumps(document), ex=live_ttl)
        pipe.zadd(history, {job_id: now})
        pipe.zadd(self.QUEUED, {job_id: now})
        active = self.active_key(document["TaskId"])
        pipe.sadd(active, job_id)
        pipe.expire(active, live_ttl)  # a task's live_ttl is one: its older ids are gone
        if callback is not None:
            self.write_callback(pipe, job_id, document["TaskId"], callback, live_ttl)
        if next(self._creations) % HISTORY_TRIM_EVERY == 0:
            # Older entries can only point at records that have expired: keep the index
            # bounded (every so often: a trigger is a hot path).
            pipe.zremrangebyscore(history, "-inf", now - live_ttl - self.result_ttl)

    def _running(self, pipe: Pipeline, task_id: str) -> tuple[bytes, bool] | None:
        """The live document of a task's oldest queued or running job, if it has one, and
        whether its heartbeat is alive (one MGET), read on a WATCHing pipeline."""
        ids = [raw.decode() for raw in cast(set[bytes], pipe.smembers(self.active_key(task_id)))]
        if not ids:
            return None
        keys = [self.live_key(job_id) for job_id in ids]
        read = cast(list[bytes | None], pipe.mget(keys + [self.heartbeat_key(i) for i in ids]))
        lives, beats = read[: len(ids)], read[len(ids) :]
        found = [(live, beat is not None) for live, beat in zip(lives, beats, strict=True) if live]
        if not found:
            return None
        return min(found, key=lambda pair: str(loads(pair[0]).get("CreatedOn", "")))

    #: Mark a job running, only if this dispatch is the job's current one, it has not
    #: started before and no cancel was asked: 1 started, 0 not, -1 cancelled first.
    START = """
    if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
    local current = redis.call('HGET', KEYS[3], 'rq') or ARGV[5]
    if current ~= ARGV[1] or redis.call('HEXISTS', KEYS[3], 'started') == 1 then return 0 end
    if redis.call('EXISTS', KEYS[7]) == 1 then return -1 end
    if not redis.call('SET', KEYS[1], ARGV[2], 'XX', 'KEEPTTL') then return 0 end
    redis.call('HSET', KEYS[3], 'rq', ARGV[1], 'started', ARGV[1])
    local ttl = redis.call('TTL', KEYS[1])
    if ttl > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
    redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
    redis.call('DEL', KEYS[8])
    redis.call('ZADD', KEYS[5], ARGV[4], ARGV[5])
    redis.call('ZREM', KEYS[6], ARGV[5])
    return 1
    """

    @available
    def start(self, document: JobDocument, rq_id: str | None = None) -> int:
        """Mark a job running (its live record, a first heartbeat, the running set), if
        ``rq_id`` is its current dispatch, not started before, and not cancelled: answers
        1 when it did, -1 when a cancel came first, 0 when the job is not this one's to
        run (sealed, expired, started already, or dispatched again meanwhile)."""
        job_id = document["ExecuteId"]
        keys = [
            self.live_key(job_id),
            self.result_key(job_id),
            self.dispatch_key(job_id),
            self.heartbeat_key(job_id),
            self.RUNNING,
            self.QUEUED,
            self.cancel_key(job_id),
            self.suspect_key(job_id),
        ]
        args: list[str | bytes | float] = [
            rq_id or job_id,
            dumps(document),
            self.heartbeat_timeout,
            time.time(),
            job_id,
        ]
        return int(cast(int, self.redis.eval(self.START, len(keys), *keys, *args)))

    # -- recovery: what the reaper reads and writes --------------------------------------
    @available
    def queued(self, due_by: float) -> list[str]:
        """Ids of queued jobs dispatched (or due) by ``due_by``, oldest first."""
        raw = cast(list[bytes], self.redis.zrangebyscore(self.QUEUED, "-inf", due_by))
        return [item.decode() for item in raw]

    @available
    def waiting(self, queue_key: str) -> set[str]:
        """The RQ job ids still waiting in an RQ queue (not yet taken by a worker)."""
        return {item.decode() for item in cast(list[bytes], self.redis.lrange(queue_key, 0, -1))}

    @available
    def dispatch(self, job_id: str) -> Dispatch:
        """The job's current dispatch (one round trip)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.dispatch_key(job_id), "rq", "n", "starts", "started")
            pipe.exists(self.live_key(job_id))
            (rq_id, number, starts, started), live = pipe.execute()
        return Dispatch(
            rq_id.decode() if rq_id else job_id,
            int(number or 1),
            int(starts or 1),
            started.decode() if started else None,
            bool(live),
        )

    @available
    def suspected_since(self, job_id: str) -> float:
        """When the job was first seen without a sign of life (now, if it is now): a
        heartbeat or a start clears it."""
        now = time.time()
        key = self.suspect_key(job_id)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, str(now), nx=True, ex=max(60, 10 * self.heartbeat_timeout))
            pipe.get(key)
            _, since = pipe.execute()
        return float(since) if since else now

    @available
    def redispatch(
        self,
        document: JobDocument,
        expected_rq: str,
        new: Dispatch,
        enqueue: Callable[[Pipeline], object],
        *,
        due: float,
        intermediate_key: str,
        scheduled_key: str,
        expected_started: str | None,
        expected_state: tuple[str, int],
        fresh_attempt: bool = False,
    ) -> bool:
        """Dispatch a job again as ``new`` (its record rewritten as ``document``), only if
        ``expected_rq`` is still its current dispatch and it is not sealed; answers whether
        it did, and only if nothing else moved the job meanwhile: the RQ id that started
        its attempt is ``expected_started`` (None: not started) and its (Status, Attempt)
        are ``expected_state``. The old RQ id leaves RQ's intermediate list and schedule:
        whatever RQ later decides about it, the job is no longer that one. A
        ``fresh_attempt`` (a retry) drops the row errors of the attempt that ended."""
        job_id = document["ExecuteId"]
        dispatch, live = self.dispatch_key(job_id), self.live_key(job_id)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(dispatch, live, self.result_key(job_id))  # type: ignore[no-untyped-call]
                current, started = cast(list[bytes | None], pipe.hmget(dispatch, "rq", "started"))
                ttl = int(pipe.ttl(live))
                record = cast(bytes | None, pipe.get(live))
                if (current.decode() if current else job_id) != expected_rq or ttl <= 0:
                    return False
                if record is None or pipe.exists(self.result_key(job_id)):
                    return False
                if (started.decode() if started else None) != expected_started:
                    return False  # started (or retried) by someone else meanwhile
                was: JobDocument = loads(record)
                if (was["Status"], int(was.get("Attempt", 1))) != expected_state:
                    return False
                pipe.multi()
                enqueue(pipe)
                pipe.set(live, dumps(document), xx=True, keepttl=True)
                pipe.delete(dispatch, self.heartbeat_key(job_id), self.suspect_key(job_id))
                pipe.hset(
                    dispatch, mapping={"rq": new.rq_id, "n": new.number, "starts": new.starts}
                )
                pipe.expire(dispatch, ttl)
                if fresh_attempt:
                    pipe.delete(self.errors_key(job_id))
                pipe.zrem(self.RUNNING, job_id)
                pipe.zadd(self.QUEUED, {job_id: due})
                pipe.lrem(intermediate_key, 0, expected_rq)
                pipe.zrem(scheduled_key, expected_rq)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    #: Take a queued job off its RQ queue (or RQ's schedule) and seal it, only if it was
    #: still there: 1 done, 0 a worker has it. RQ's job stays, as cancelled, in RQ's
    #: canceled registry, as long as the sealed record. Its callback, if any, is due.
    CANCEL_QUEUED = f"""
    local removed = redis.call('LREM', KEYS[1], 1, ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
    if removed == 0 then return 0 end
    if redis.call('EXISTS', KEYS[3]) == 1 then
      redis.call('HSET', KEYS[3], 'status', 'canceled')
      redis.call('EXPIRE', KEYS[3], ARGV[3])
      local now = tonumber(redis.call('TIME')[1])
      redis.call('ZADD', KEYS[11], now + tonumber(ARGV[3]), ARGV[1])
    end
    redis.call('ZADD', KEYS[12], tonumber(redis.call('TIME')[1]), ARGV[4])
    redis.call('SET', KEYS[4], ARGV[2], 'NX', 'EX', ARGV[3])
    redis.call('DEL', KEYS[5], KEYS[6], KEYS[7], KEYS[8])
    redis.call('ZREM', KEYS[9], ARGV[4])
    redis.call('SREM', KEYS[10], ARGV[4])
    {mark_due_script("KEYS[13]", "KEYS[14]", "ARGV[5]", "ARGV[4]", "ARGV[3]")}
    return 1
    """

    @available
    def cancel_queued(
        self,
        sealed: JobDocument,
        rq_id: str,
        queue_key: str,
        scheduled_key: str,
        rq_job_key: str,
        canceled_key: str,
    ) -> bool:
        """Seal a queued job ``cancelled`` (``sealed``: its final document) in one step with
        taking it off the queue (RQ's job to ``canceled_key``, its canceled registry);
        answers False (nothing changed) if a worker took it."""
        job_id = sealed["ExecuteId"]
        keys = [
            queue_key,
            scheduled_key,
            rq_job_key,
            self.result_key(job_id),
            self.live_key(job_id),
            self.cancel_key(job_id),
            self.dispatch_key(job_id),
            self.suspect_key(job_id),
            self.QUEUED,
            self.active_key(sealed["TaskId"]),
            canceled_key,
            sealed_key(CANCELLED),
            self.callback_key(job_id),
            self.callbacks_key,
        ]
        now = time.time()
        args: list[str | bytes | float] = [rq_id, dumps(sealed), self.result_ttl, job_id, now]
        return bool(self.redis.eval(self.CANCEL_QUEUED, len(keys), *keys, *args))

    @available
    def claim_chain(self, job_id: str, chain: Sequence[object]) -> list[Any] | None:
        """The chained jobs of a finished job: the ones claimed first (the worker, the
        reaper and a poller may all see a dead job's end), else ``chain``, claimed now if
        it is not empty; None when there are none."""
        key = self.chain_key(job_id)
        with self.redis.pipeline() as pipe:
            if chain:
                pipe.set(key, dumps(list(chain)), nx=True, ex=self.result_ttl + 86400)
            pipe.get(key)
            claimed = pipe.execute()[-1]
        return cast(list[Any], loads(claimed)) if claimed else None

    @available
    def create_once(
        self,
        document: JobDocument,
        *,
        live_ttl: int,
        enqueue: Callable[[Pipeline], object],
        exclusive: bool = False,
    ) -> bool:
        """Create a job unless it exists (live or sealed); answers whether this call did.
        (A chained job is created by whoever finishes its parent's chain.) ``exclusive``:
        raise ``TaskBusy`` instead if another job of its task is queued or running."""
        job_id = document["ExecuteId"]
        live, result = self.live_key(job_id), self.result_key(job_id)
        active = self.active_key(document["TaskId"])
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(live, result, active)  # type: ignore[no-untyped-call]
                    if pipe.exists(live, result):
                        return False
                    running = self._running(pipe, document["TaskId"]) if exclusive else None
                    if running is not None:
                        raise TaskBusy(loads(running[0]), beating=running[1])
                    self._write_new(pipe, document, live_ttl, enqueue, None)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue  # created meanwhile, or a job of the task started or ended
