"""The scheduler: starts each due time of each scheduled task once, across any number of
processes, and the role that lets one process at a time do it.

Every process may run a ``SchedulerLoop``; the one holding the scheduler role (a lease in
Redis) ticks. A tick handles, per scheduled task, the latest due time not handled yet: the
claim of that due time and its job are one transaction (``ScheduleRecords.claim_due``),
so two schedulers (a role holder paused past its lease and its successor) still start
one job. A holder that dies is replaced when its lease ends.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TypedDict

from ..errors import ParameterError, StoreUnavailable
from ..model.parameters import SCHEDULE as SCHEDULE_SOURCE
from ..model.schedules import LATE_AFTER, CatchUp, Schedule, iso_utc
from ..model.tasks import Task
from .documents import SCHEDULE
from .lifecycle import JobManager
from .schedules import Claimed, RecentRun, ScheduleRecord

logger = logging.getLogger("flask_idms_webhooks")


class ScheduleView(TypedDict):
    """A task's ``Schedule`` object, as the task document and the admin route show it."""

    Cron: list[str]
    RunAt: str | None
    Enabled: bool
    NextRunOn: str | None
    LastRunOn: str | None
    LastOutcome: str | None
    ConsecutiveFailures: int
    MaxFailures: int
    CatchUp: str
    DisabledReason: str | None
    RecentRuns: list[RecentRun]


def schedule_view(schedule: Schedule, stored: ScheduleRecord, now: float) -> ScheduleView:
    """What a schedule looks like now (its file's ``enabled`` wins if it changed)."""
    record = stored.effective(schedule)
    enabled = bool(record.enabled)
    after = max(now, record.seen or now)
    if schedule.run_at is not None and record.seen is not None:
        after = record.seen  # once: due until it is handled, even if late
    return {
        "Cron": list(schedule.cron),
        "RunAt": iso_utc(schedule.run_at.timestamp()) if schedule.run_at else None,
        "Enabled": enabled,
        "NextRunOn": iso_utc(schedule.next_due(after)) if enabled else None,
        "LastRunOn": iso_utc(record.last_run),
        "LastOutcome": record.last_outcome,
        "ConsecutiveFailures": record.failures,
        "MaxFailures": schedule.max_failures,
        "CatchUp": str(schedule.catch_up),
        "DisabledReason": (record.reason or None) if not enabled else None,
        "RecentRuns": stored.recent,
    }


class Scheduler:
    """One tick at a time: start the due runs of every scheduled task, once.

    ``clock`` is injectable (epoch seconds); the default is ``time.time``.
    """

    def __init__(self, jobs: JobManager, clock: Callable[[], float] = time.time) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.clock = clock

    @property
    def schedules(self) -> dict[str, Schedule]:
        return {
            task_id: task.schedule
            for task_id, task in self.jobs.tasks.items()
            if task.schedule is not None
        }

    def views(self) -> dict[str, ScheduleView]:
        """Every scheduled task's ``Schedule`` object (one round trip)."""
        scheduled = [task for task in self.jobs.tasks.values() if task.schedule is not None]
        return {
            task_id: view for task_id, view in self.views_of(scheduled).items() if view is not None
        }

    def set_enabled(self, task: Task, enabled: bool, reason: str) -> ScheduleView:
        """Turn a task's schedule on (its failure count reset, no catch-up of the time it
        was off) or off (``reason`` says why); answers its ``Schedule`` now."""
        schedule = task.schedule
        if schedule is None:
            raise ValueError(f"task {task.id!r} has no schedule")
        self.store.set_schedule_enabled(task.id, schedule, enabled, reason, self.clock())
        view = self.views_of([task])[task.id]
        assert view is not None  # the task has a schedule
        return view

    def views_of(self, tasks: list[Task]) -> dict[str, ScheduleView | None]:
        """The ``Schedule`` of each task (None: it has none), one round trip."""
        scheduled = [task for task in tasks if task.schedule is not None]
        records = self.store.schedule_records(task.id for task in scheduled) if scheduled else {}
        now = self.clock()
        views: dict[str, ScheduleView | None] = dict.fromkeys((task.id for task in tasks), None)
        for task in scheduled:
            assert task.schedule is not None
            views[task.id] = schedule_view(task.schedule, records[task.id], now)
        return views

    def tick(self) -> dict[str, Claimed]:
        """Handle every scheduled task's latest due time not handled yet; answers what
        became of each one handled."""
        schedules = self.schedules
        if not schedules:
            return {}
        now = self.clock()
        records = self.store.sync_schedules(schedules, now)
        handled: dict[str, Claimed] = {}
        for task_id, schedule in schedules.items():
            record = records[task_id]
            if not record.enabled:
                continue
            due = schedule.latest_due(now)
            seen = record.seen if record.seen is not None else now
            if due is None or due <= seen:
                continue
            try:
                claimed = self._handle(self.jobs.tasks[task_id], schedule, due, seen, now)
            except StoreUnavailable:
                raise  # Redis away: the whole tick is tried again
            except Exception:  # one task's fault must not stop the others' runs
                logger.exception("schedule %s: due %s not handled", task_id, iso_utc(due))
                continue
            if claimed.outcome != "taken":
                handled[task_id] = claimed
                if claimed.outcome == "started":
                    logger.info("schedule %s: due %s started job %s", task_id, iso_utc(due),
                                claimed.job_id)  # fmt: skip
                else:
                    logger.warning("schedule %s: due %s skipped: %s", task_id, iso_utc(due),
                                   claimed.reason)  # fmt: skip
        return handled

    def _handle(
        self, task: Task, schedule: Schedule, due: float, seen: float, now: float
    ) -> Claimed:
        """Claim one due time: a run, or a skip saying why."""
        missed = schedule.due_count(seen, due) - 1  # earlier due times not handled
        late = now - due > LATE_AFTER
        if schedule.catch_up is CatchUp.NONE and late:
            return self.store.claim_due(
                task.id, due, document=None, live_ttl=0, enqueue=None, now=now,
                skipped="missed (no scheduler was running at the due time; catch_up = none)",
            )  # fmt: skip
        try:
            resolved = self.jobs.parameters[task.id].resolve(schedule.parameters, SCHEDULE_SOURCE)
        except ParameterError as error:  # checked at load: only a changed default gets here
            return self.store.claim_due(
                task.id, due, document=None, live_ttl=0, enqueue=None, now=now,
                skipped=f"invalid schedule_parameters: {json.dumps(error.errors)}",
            )  # fmt: skip
        base = self.jobs.urls.public_url
        if base is None:  # refused at start; a guard for an app built by hand
            raise RuntimeError("IDMS_WEBHOOKS_PUBLIC_URL is needed to run schedules")
        document = self.jobs.prepare(task, resolved, base, SCHEDULE, iso_utc(due))
        return self.store.claim_due(
            task.id,
            due,
            document=document,
            live_ttl=self.jobs.live_ttl(task),
            enqueue=self.jobs.enqueuer(task, document["ExecuteId"]),
            now=now,
            missed=missed if schedule.catch_up is CatchUp.LATEST else 0,
        )


def holder_name() -> str:
    """A name for this process's claim on the scheduler role: host, pid, and a random
    part (a pid may be reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class SchedulerLoop(threading.Thread):
    """Ticks the scheduler while this process holds the scheduler role; tries to take the
    role otherwise. The role is a lease of ``lease`` seconds, renewed on every tick."""

    def __init__(self, scheduler: Scheduler, lease: float, interval: float | None = None) -> None:
        super().__init__(name="idms-scheduler", daemon=True)
        self.scheduler = scheduler
        self.lease = lease
        self.interval = interval or min(1.0, lease / 5)
        self.holder = holder_name()
        self.holding = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.step()
            self._stop_event.wait(self.interval)

    def step(self) -> None:
        """Take or renew the role; tick if held. Redis away: try again next time."""
        store = self.scheduler.store
        try:
            holding = store.hold_scheduler_role(self.holder, self.lease)
            if holding != self.holding:
                logger.info("scheduler %s: %s the scheduler role", self.holder,
                            "took" if holding else "lost")  # fmt: skip
            self.holding = holding
            if holding:
                self.scheduler.tick()
        except Exception:  # Redis away, or a bad record: the next step tries again
            logger.warning("scheduler tick failed", exc_info=True)

    def stop(self) -> None:
        """Stop ticking and hand the role over at once."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
        if self.holding:
            try:
                self.scheduler.store.release_scheduler_role(self.holder)
            except Exception:
                logger.warning("scheduler role not released (it expires)", exc_info=True)
            self.holding = False
