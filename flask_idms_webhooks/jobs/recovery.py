"""Recovery of jobs whose process ended without sealing them: the reaper's passes and
what a worker does when its work-horse dies.

A job is never left behind: a running one whose heartbeat stopped is sealed (``failed``,
or ``cancelled`` if that was asked); a queued one that a worker took off the queue and
never started (the worker died between RQ's dequeue and the task's start) is dispatched
again, up to ``IDMS_WEBHOOKS_START_ATTEMPTS`` times, then sealed ``failed``. Nothing of
such a job ran, so running it again is safe. RQ's own verdict on the dead dispatch (its
intermediate-list cleanup, its abandoned-job cleanup) is left to RQ: the job is no longer
that RQ job.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from ..errors import StoreUnavailable
from .callbacks import is_delivery
from .dispatch import Dispatch
from .documents import (
    CANCELLED,
    CANCELLED_BY_REQUEST,
    IN_PROGRESS,
    QUEUED,
    WORKER_DIED,
    Cause,
    JobDocument,
    utc_now,
)
from .lifecycle import JobManager, job_id_of, rq_job_id
from .store import loads

__all__ = ["Recovery"]

logger = logging.getLogger("flask_idms_webhooks")

#: A cancelled job whose process was killed (it did not stop itself in time).
CANCEL_FORCED: Cause = (
    "Cancelled",
    "Cancelled by request; its process was stopped after not stopping itself in time, so "
    "its counts may lag the rows it wrote.",
)


def not_started(starts: int) -> Cause:
    return (
        "NotStarted",
        f"The task never started: the worker that took this job ended before it began, "
        f"{starts} time(s).",
    )


class Recovery:
    """The reaper's passes and the recovery of a job whose process died."""

    def __init__(self, jobs: JobManager) -> None:
        self.jobs = jobs
        self.store = jobs.store

    def reap(self) -> int:
        """One pass: seal every running job presumed dead, dispatch again every queued
        job taken and not started; answers how many jobs it handled."""
        handled = 0
        for job_id, beating in self.store.running():
            if not beating and self.jobs.presumed_dead(job_id):
                with self._each(job_id):
                    self.seal_abandoned(job_id, WORKER_DIED)
                    handled += 1
        return handled + self.reap_queued()

    @contextlib.contextmanager
    def _each(self, job_id: str) -> Iterator[None]:
        """One job's recovery: a bad record (not Redis being away) is logged and passed
        over, so it cannot stop the pass for every other job."""
        try:
            yield
        except StoreUnavailable:
            raise
        except Exception:
            logger.exception("reaper: job %s could not be recovered", job_id)

    def reap_queued(self) -> int:
        """Dispatch again the queued jobs that left RQ's queue and have not started for a
        heartbeat timeout since first seen so."""
        now = time.time()
        queue = self.jobs.queue
        # Ours, and what RQ holds as taken and not started (a job an earlier release
        # queued is not in our list); a callback's delivery is not a job.
        intermediate = self.store.waiting(queue.intermediate_queue_key)
        taken = [job_id_of(rq_id) for rq_id in intermediate if not is_delivery(rq_id)]
        due = [*self.store.queued(due_by=now), *taken]
        if not due:
            return 0
        waiting = self.store.waiting(queue.key)
        handled = 0
        for job_id in dict.fromkeys(due):
            if job_id in waiting:
                continue
            current = self.store.dispatch(job_id)
            if current.rq_id in waiting:
                continue
            if current.started or not current.live:
                self.store.forget_queued(job_id)
                continue
            if now - self.store.suspected_since(job_id) >= self.jobs.settings.heartbeat_timeout:
                with self._each(job_id):
                    self.dispatch_again(job_id, current)
                    handled += 1
        return handled

    def dispatch_again(self, job_id: str, current: Dispatch, *, patient: bool = False) -> None:
        """A queued job whose dispatch ``current`` died before its task started: on the
        queue again, or sealed ``failed`` once it has had its start attempts."""
        jobs = self.jobs
        live = self.store.live(job_id)
        if live is None:
            self.store.forget_queued(job_id)
            return
        document: JobDocument = loads(live)
        if document["Status"] != QUEUED:  # it started after all
            self.store.forget_queued(job_id)
            return
        task = jobs.tasks.get(document["TaskId"])
        if self.store.cancel_requested(job_id):
            jobs.seal(document, CANCELLED, CANCELLED_BY_REQUEST, patient=patient)
            return
        if task is None or current.starts >= jobs.settings.start_attempts:
            jobs.seal_failed(document, not_started(current.starts), patient=patient)
            return
        document["StatusDescription"] = (
            f"Queued again (start attempt {current.starts + 1} of "
            f"{jobs.settings.start_attempts}): its worker ended before the task started"
        )
        document["UpdatedOn"] = utc_now()
        number = current.number + 1
        new = Dispatch(rq_job_id(job_id, number), number, current.starts + 1)
        self.store.redispatch(
            document,
            current.rq_id,
            new,
            jobs.enqueuer(task, job_id, new.rq_id),
            due=time.time(),
            intermediate_key=jobs.queue.intermediate_queue_key,
            scheduled_key=jobs.queue.scheduled_job_registry.key,
            expected_started=None,
            expected_state=(QUEUED, int(document.get("Attempt", 1))),
        )

    def seal_abandoned(
        self, job_id: str, cause: Cause, rq_id: str | None = None, *, patient: bool = False
    ) -> None:
        """A job whose process ended without sealing it: dispatched again if its task had
        not started (``rq_id``: the dispatch that died, when the caller knows it), sealed
        ``cancelled`` if a cancel was asked, else ``failed``. The worker that saw its
        work-horse die is ``patient``; the reaper tries once a pass."""
        store = self.store
        live = store.live(job_id)
        if live is None:
            store.forget_running(job_id)
            return
        document: JobDocument = loads(live)
        if document["Status"] == QUEUED:
            current = store.dispatch(job_id)
            if rq_id is not None and current.rq_id == rq_id and not current.started:
                self.dispatch_again(job_id, current, patient=patient)
            return
        if rq_id is not None and store.dispatch(job_id).started_by not in (None, rq_id):
            return  # the dead process ran an old dispatch: the job is another one's now
        if store.cancel_requested(job_id):
            self.jobs.seal(document, CANCELLED, CANCEL_FORCED, patient=patient)
        elif (
            # Its task may have written rows: retried only if the task allows retries.
            document["Status"] == IN_PROGRESS
            and not self.jobs.retry(document, cause, patient=patient)[0]
        ):
            self.jobs.seal_failed(document, cause, patient=patient)
