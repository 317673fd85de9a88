"""The job store's records of schedules: a scheduled task's live state (enabled, the
last due time handled, the failure count), the claim of a due time (with its job, in one
transaction), its recent due times, and the scheduler role's lease."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict, cast

import redis
from redis.client import Pipeline

from ..model.schedules import Schedule, iso_utc
from .codec import available, dumps, loads
from .dispatch import DispatchRecords
from .documents import FAILED, SCHEDULE, SUCCEEDED, JobDocument

#: How many due times a schedule remembers (its ``RecentRuns``).
RECENT_RUNS = 20


class RecentRun(TypedDict, total=False):
    """A due time of a schedule: the job it started, or why none started."""

    DueOn: str
    ExecuteId: str
    Skipped: str
    Missed: int  # earlier due times folded into this run (catch_up = "latest")


@dataclass
class ScheduleRecord:
    """A scheduled task's state as Redis holds it (defaults: never seen by a scheduler)."""

    enabled: bool | None = None  # None: no state yet, the file's value holds
    file_enabled: bool | None = None  # the file's value the state started from
    seen: float | None = None  # the last due time handled, or when first seen
    failures: int = 0
    reason: str | None = None
    last_run: float | None = None
    last_job: str | None = None
    last_outcome: str | None = None
    recent: list[RecentRun] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: Mapping[bytes, bytes], runs: Iterable[bytes]) -> ScheduleRecord:
        def text(name: str) -> str | None:
            value = raw.get(name.encode())
            return value.decode() if value else None

        def number(name: str) -> float | None:
            value = text(name)
            return float(value) if value else None

        def flag(name: str) -> bool | None:
            value = text(name)
            return None if value is None else value == "1"

        return cls(
            enabled=flag("enabled"),
            file_enabled=flag("file"),
            seen=number("seen"),
            failures=int(number("failures") or 0),
            reason=text("reason"),
            last_run=number("last_run"),
            last_job=text("last_job"),
            last_outcome=text("last_outcome"),
            recent=[loads(item) for item in runs],
        )

    def effective(self, schedule: Schedule) -> ScheduleRecord:
        """This state as a scheduler sees it once it synced the file: a changed ``enabled``
        in the file wins (and starts the count afresh)."""
        if self.file_enabled is schedule.enabled and self.enabled is not None:
            return self
        return ScheduleRecord(
            enabled=schedule.enabled,
            file_enabled=schedule.enabled,
            seen=self.seen,
            last_run=self.last_run,
            last_job=self.last_job,
            last_outcome=self.last_outcome,
            recent=self.recent,
        )


class Claimed(NamedTuple):
    """What became of a due time: ``started`` (a job, ``job_id``), ``skipped`` (none
    started: ``reason``), or ``taken`` (another scheduler had handled it, or the
    schedule was disabled meanwhile)."""

    outcome: str
    job_id: str | None = None
    reason: str | None = None


class ScheduleRecords(DispatchRecords):
    """The records of schedules (part of ``JobStore``)."""

    #: Bring a schedule's state in line with the task file, and answer it: the file's
    #: ``enabled`` wins when it changed (or there is no state): the count starts afresh
    #: and due times before now are not caught up.
    SYNC = """
    local file = redis.call('HGET', KEYS[1], 'file')
    if file ~= ARGV[1] or redis.call('HEXISTS', KEYS[1], 'enabled') == 0 then
      redis.call('HSET', KEYS[1], 'file', ARGV[1], 'enabled', ARGV[1], 'failures', 0,
                 'reason', '')
      local seen = tonumber(redis.call('HGET', KEYS[1], 'seen') or '0')
      if ARGV[1] == '1' and tonumber(ARGV[2]) > seen then
        redis.call('HSET', KEYS[1], 'seen', ARGV[2])
      end
    end
    return redis.call('HGETALL', KEYS[1])
    """

    @available
    def sync_schedules(
        self, schedules: Mapping[str, Schedule], now: float
    ) -> dict[str, ScheduleRecord]:
        """Each scheduled task's state, synced with its file's ``enabled`` (one round trip)."""
        ids = list(schedules)
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                enabled = "1" if schedules[task_id].enabled else "0"
                # first sight: due times from just before now on (one due now runs)
                first = repr(now - 0.001)
                pipe.eval(self.SYNC, 1, self.schedule_key(task_id), enabled, first)
            replies = pipe.execute()
        records = {}
        for task_id, reply in zip(ids, replies, strict=True):
            pairs = cast(list[bytes], reply)
            records[task_id] = ScheduleRecord.parse(
                dict(zip(pairs[::2], pairs[1::2], strict=True)), ()
            )
        return records

    @available
    def schedule_records(self, task_ids: Iterable[str]) -> dict[str, ScheduleRecord]:
        """Each task's schedule state and recent due times, as stored (one round trip)."""
        ids = list(task_ids)
        if not ids:
            return {}
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hgetall(self.schedule_key(task_id))
                pipe.lrange(self.schedule_runs_key(task_id), 0, RECENT_RUNS - 1)
            replies = pipe.execute()
        return {
            task_id: ScheduleRecord.parse(replies[2 * i], replies[2 * i + 1])
            for i, task_id in enumerate(ids)
        }

    #: Turn a schedule on (only if it is off: its count and reason cleared, and no
    #: catch-up of the time it was off: ``seen`` moves up to now, never down) or off.
    SET_ENABLED = """
    redis.call('HSET', KEYS[1], 'file', ARGV[4])
    if ARGV[1] == '1' then
      if redis.call('HGET', KEYS[1], 'enabled') == '1' then return 0 end
      redis.call('HSET', KEYS[1], 'enabled', '1', 'failures', 0, 'reason', '')
      local seen = tonumber(redis.call('HGET', KEYS[1], 'seen') or '0')
      if tonumber(ARGV[3]) > seen then redis.call('HSET', KEYS[1], 'seen', ARGV[3]) end
    else
      if redis.call('HGET', KEYS[1], 'enabled') == '0' then return 0 end
      redis.call('HSET', KEYS[1], 'enabled', '0', 'reason', ARGV[2])
      if redis.call('HEXISTS', KEYS[1], 'seen') == 0 then
        redis.call('HSET', KEYS[1], 'seen', ARGV[3])
      end
    end
    return 1
    """

    @available
    def set_schedule_enabled(
        self, task_id: str, schedule: Schedule, enabled: bool, reason: str | None, now: float
    ) -> None:
        """Turn a schedule on (its failure count reset; no catch-up of the time it was
        off) or off (with ``reason``); nothing changes if it already is."""
        self.redis.eval(
            self.SET_ENABLED,
            1,
            self.schedule_key(task_id),
            int(enabled),
            reason or "",
            repr(now),
            int(schedule.enabled),
        )

    def _active_jobs(self, pipe: Pipeline, task_id: str) -> tuple[list[str], list[str]]:
        """(still queued or running, record gone) of a task's active job ids, read on a
        WATCHing pipeline."""
        ids = [raw.decode() for raw in cast(set[bytes], pipe.smembers(self.active_key(task_id)))]
        lives = [bool(pipe.exists(self.live_key(job_id))) for job_id in ids]
        pairs = list(zip(ids, lives, strict=True))
        return [job for job, live in pairs if live], [job for job, live in pairs if not live]

    @available
    def claim_due(
        self,
        task_id: str,
        due: float,
        *,
        document: JobDocument | None,
        live_ttl: int,
        enqueue: Callable[[Pipeline], object] | None,
        now: float,
        skipped: str | None = None,
        missed: int = 0,
    ) -> Claimed:
        """Handle one due time of a task, once across every scheduler: start its job
        (``document``, put on the queue by ``enqueue``) in the same transaction as the
        claim, unless a job of the task is still queued or running, or ``skipped`` says
        why none starts. Nothing happens if the due time was handled before (by any
        scheduler) or the schedule is off."""
        key, active = self.schedule_key(task_id), self.active_key(task_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, active)  # type: ignore[no-untyped-call]
                    enabled, seen = cast(list[bytes | None], pipe.hmget(key, "enabled", "seen"))
                    if enabled != b"1" or (seen is not None and float(seen) >= due):
                        return Claimed("taken")
                    running, gone = self._active_jobs(pipe, task_id)
                    reason = skipped  # this pass's: a job seen on an earlier one may be gone
                    if running and reason is None:
                        reason = f"a job of the task was still queued or running: {running[0]}"
                    run: RecentRun = {"DueOn": iso_utc(due) or ""}
                    if missed:
                        run["Missed"] = missed
                    pipe.multi()
                    if gone:
                        pipe.srem(active, *gone)
                    if reason is None and document is not None and enqueue is not None:
                        self._write_new(pipe, document, live_ttl, enqueue, None)
                        run["ExecuteId"] = document["ExecuteId"]
                        pipe.hset(
                            key,
                            mapping={
                                "last_run": repr(now),
                                "last_job": document["ExecuteId"],
                            },
                        )
                    else:
                        run["Skipped"] = reason or "nothing to run"
                    pipe.hset(key, "seen", repr(due))
                    pipe.lpush(self.schedule_runs_key(task_id), dumps(run))
                    pipe.ltrim(self.schedule_runs_key(task_id), 0, RECENT_RUNS - 1)
                    pipe.execute()
                except redis.WatchError:
                    continue  # another scheduler, a job starting or ending: look again
                if "ExecuteId" in run:
                    return Claimed("started", run["ExecuteId"])
                return Claimed("skipped", reason=run["Skipped"])

    #: Count a scheduled job's outcome once, in its seal's transaction (before the seal's
    #: own write: a job sealed already is not counted again): a success resets the
    #: failure count, a failure adds one and may turn the schedule off.
    OUTCOME = """
    if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
    if redis.call('HGET', KEYS[1], 'counted') == ARGV[1] then return 0 end
    redis.call('HSET', KEYS[1], 'counted', ARGV[1], 'last_outcome', ARGV[2])
    if ARGV[2] == 'succeeded' then
      redis.call('HSET', KEYS[1], 'failures', 0)
    elseif ARGV[2] == 'failed' then
      local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
      local limit = tonumber(ARGV[3])
      if limit > 0 and failures >= limit and redis.call('HGET', KEYS[1], 'enabled') ~= '0' then
        redis.call('HSET', KEYS[1], 'enabled', '0', 'reason', ARGV[4])
      end
    end
    return 1
    """

    def count_outcome(self, pipe: Pipeline, document: JobDocument, max_failures: int) -> bool:
        """On a seal's pipeline: count a scheduled job's outcome for its schedule; answers
        whether there was one to count (a command was added)."""
        if document.get("Trigger") != SCHEDULE or document["Status"] not in (SUCCEEDED, FAILED):
            return False
        job_id = document["ExecuteId"]
        error: Any = document.get("Error") or {}
        reason = (
            f"Disabled after {max_failures} consecutive failed scheduled runs (the last: job "
            f"{job_id}, {error.get('Type', 'Error')}: {error.get('Message', '')})"
        )
        keys = [self.schedule_key(document["TaskId"]), self.result_key(job_id)]
        pipe.eval(self.OUTCOME, len(keys), *keys, job_id, document["Status"], max_failures, reason)
        return True

    # -- the scheduler role ----------------------------------------------------------------
    #: Take the role if it is free, or renew it if it is ours: 1 held, 0 someone else's.
    HOLD = """
    if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
      return 1
    end
    return 0
    """
    RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """

    @available
    def hold_scheduler_role(self, holder: str, lease: float) -> bool:
        """Take (or renew) the scheduler role for ``lease`` seconds; answers whether
        ``holder`` has it."""
        return bool(self.redis.eval(self.HOLD, 1, self.scheduler_key, holder, int(lease * 1000)))

    @available
    def release_scheduler_role(self, holder: str) -> None:
        self.redis.eval(self.RELEASE, 1, self.scheduler_key, holder)

    @available
    def scheduler_holder(self) -> str | None:
        """Who holds the scheduler role now, if anyone."""
        raw = cast(bytes | None, self.redis.get(self.scheduler_key))
        return raw.decode() if raw else None
