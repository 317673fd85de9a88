"""The job store's records of completion callbacks (part of ``JobStore``): a job's
callback, written with the job; marked due in the transaction that seals the job; an
attempt claimed, then recorded; the list of callbacks due that the sweep reads.

The sealed document never changes, so a callback's state is a record of its own
(``callback:{id}``): the URL, whole, is read only by the delivery. The sorted set
``callbacks:{queue}`` holds every callback still to deliver, by when its next attempt is
due; an attempt in flight holds a lease there (its due time moved past the attempt's
longest run), so a worker that dies mid-attempt leaves a callback that is due again
once the lease ends, and two deliveries of one callback cannot run at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, TypedDict, cast

import redis
from redis.client import Pipeline

from ..model.schedules import iso_utc
from .callback_policy import without_query
from .codec import available
from .keys import StoreKeys

#: A callback's states (its ``State``): its job has not finished; an attempt is due or
#: in flight; the next attempt waits for ``NextAttemptOn``; delivered; given up.
PENDING = "pending"
DELIVERING = "delivering"
RETRYING = "retrying"
DELIVERED = "delivered"
FAILED = "failed"


#: How early an attempt may be claimed, in seconds: RQ's scheduler, on another machine,
#: queues a retry when its own clock says it is due.
CLAIM_SLACK = 1.0


def mark_due_script(hash_key: str, due_key: str, now: str, job_id: str, ttl: str) -> str:
    """Lua marking a job's callback due as its job is sealed, once (a second sealer that
    lost the race marks nothing), if the job has one; its record then lasts as long as
    the sealed document. (Names of the script's KEYS and ARGV, for two scripts.)"""
    return f"""
    if redis.call('EXISTS', {hash_key}) == 1
       and redis.call('HSETNX', {hash_key}, 'sealed', {now}) == 1 then
      redis.call('HSET', {hash_key}, 'state', '{DELIVERING}')
      redis.call('EXPIRE', {hash_key}, {ttl})
      redis.call('ZADD', {due_key}, {now}, {job_id})
    end
    """


MARK_DUE = mark_due_script("KEYS[1]", "KEYS[2]", "ARGV[1]", "ARGV[2]", "ARGV[3]") + "return 0"

#: Claim the attempt of a callback that is due: its lease taken, its attempt counted.
#: Answers nil when there is nothing to deliver (delivered, given up, expired), {0}
#: when it is not due (an attempt in flight, or the next one later), else {attempt,
#: url, task, sealed, the sealed document}.
CLAIM = f"""
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due then return nil end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return nil
end
if tonumber(due) > tonumber(ARGV[2]) then return {{0}} end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
local attempt = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HSET', KEYS[2], 'state', '{DELIVERING}')
local url, task, sealed = unpack(redis.call('HMGET', KEYS[2], 'url', 'task', 'sealed'))
return {{attempt, url, task, sealed, redis.call('GET', KEYS[3])}}
"""

#: Record how an attempt ended (and, when ARGV[6] is set, when the next is due).
RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'status', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'next', ARGV[4])
else redis.call('HDEL', KEYS[1], 'next') end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'delivered', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
else redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
"""

#: The RQ job of the latest delivery queued, if the callback is still there.
QUEUED = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'rq', ARGV[1]) end"


class Claim(NamedTuple):
    """An attempt claimed: its number (from 1), the URL, the task, when its job was
    sealed (epoch seconds) and the sealed document (None once expired)."""

    attempt: int
    url: str
    task_id: str
    sealed_at: float
    body: bytes | None


class CallbackView(TypedDict):
    """The delivery state of a job's callback (``GET /idms/jobs/{job_id}/callback``)."""

    Url: str
    Attempts: int
    LastStatus: str | None
    DeliveredOn: str | None
    State: str
    NextAttemptOn: str | None


def text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


class CallbackRecords(StoreKeys):
    """A job's callback record and the callbacks due (part of ``JobStore``)."""

    redis: redis.Redis
    result_ttl: int

    def write_callback(self, pipe: Pipeline, job_id: str, task_id: str, url: str, ttl: int) -> None:
        """On the pipeline that creates a job: its callback, pending."""
        key = self.callback_key(job_id)
        pipe.hset(key, mapping={"url": url, "task": task_id, "attempts": 0, "state": PENDING})
        pipe.expire(key, ttl)

    def mark_callback_due(self, pipe: Pipeline, job_id: str) -> None:
        """On the pipeline that seals a job: its callback due now, if it has one."""
        keys = (self.callback_key(job_id), self.callbacks_key)
        pipe.eval(MARK_DUE, 2, *keys, time.time(), job_id, self.result_ttl)

    @available
    def queue_delivery(
        self, job_id: str, rq_id: str, enqueue: Callable[[Pipeline], object]
    ) -> None:
        """Put a delivery on RQ's queue and note it on the callback, in one transaction."""
        with self.redis.pipeline() as pipe:
            pipe.multi()  # before RQ's commands (see ``DispatchRecords._write_new``)
            enqueue(pipe)
            pipe.eval(QUEUED, 1, self.callback_key(job_id), rq_id)
            pipe.execute()

    @available
    def claim_callback(self, job_id: str, lease: float) -> Claim | bool:
        """Claim the due attempt of a job's callback for ``lease`` seconds: the claim;
        False when nothing is left to deliver; True when it is not due now (in flight
        elsewhere, or its next attempt is later)."""
        now = time.time()
        keys = (self.callbacks_key, self.callback_key(job_id), self.result_key(job_id))
        answer = cast(
            list[object] | None,
            self.redis.eval(CLAIM, len(keys), *keys, job_id, now + CLAIM_SLACK, now + lease),
        )
        if answer is None:
            return False
        if len(answer) == 1:
            return True
        attempt, url, task, sealed, body = answer
        return Claim(
            int(cast(int, attempt)),
            cast(bytes, url).decode(),
            cast(bytes, task).decode(),
            float(cast(bytes, sealed or b"0")),
            cast(bytes | None, body),
        )

    @available
    def record_callback(
        self,
        job_id: str,
        state: str,
        status: str,
        *,
        next_at: float | None = None,
        delivered: bool = False,
        enqueue: tuple[str, Callable[[Pipeline], object]] | None = None,
    ) -> None:
        """Record how an attempt ended: its ``status``, the callback's ``state``, when
        the next attempt is due (``next_at``: it stays on the list until then, and
        ``enqueue`` (its RQ job id, and what queues it) is queued in the same
        transaction), or that it is off the list (delivered or given up)."""
        keys = (self.callback_key(job_id), self.callbacks_key)
        args = (
            job_id,
            state,
            status,
            iso_utc(next_at) or "",
            (iso_utc(time.time()) or "") if delivered else "",
            "" if next_at is None else next_at,
        )
        with self.redis.pipeline() as pipe:
            pipe.multi()
            if enqueue is not None:
                enqueue[1](pipe)
            pipe.eval(RECORD, len(keys), *keys, *args)
            if enqueue is not None:
                pipe.eval(QUEUED, 1, self.callback_key(job_id), enqueue[0])
            pipe.execute()

    @available
    def due_callbacks(self, before: float, limit: int = 100) -> list[tuple[str, str | None]]:
        """(job id, RQ job of its latest delivery) of the callbacks due before ``before``
        (a lease that ended counts), oldest first, up to ``limit``."""
        raw = cast(
            list[bytes],
            self.redis.zrangebyscore(self.callbacks_key, "-inf", before, start=0, num=limit),
        )
        ids = [item.decode() for item in raw]
        if not ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(self.callback_key(job_id), "rq")
            queued = cast(list[bytes | None], pipe.execute())
        return [(job_id, text(rq)) for job_id, rq in zip(ids, queued, strict=True)]

    @available
    def callback_view(self, job_id: str) -> CallbackView | None:
        """The delivery state of a job's callback; None when the job has none."""
        fields = ("url", "attempts", "status", "delivered", "state", "next")
        url, attempts, status, delivered, state, next_at = cast(
            list[bytes | None], self.redis.hmget(self.callback_key(job_id), fields)
        )
        if url is None:
            return None
        return {
            "Url": without_query(url.decode()),
            "Attempts": int(attempts or 0),
            "LastStatus": text(status),
            "DeliveredOn": text(delivered),
            "State": text(state) or PENDING,
            "NextAttemptOn": text(next_at),
        }
