"""A job whose attempt failed, queued again for its task's next attempt (part of
``lifecycle.JobManager``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from rq import Queue

from ..model.tasks import Task
from .dispatch import Dispatch, rq_job_id
from .documents import IN_PROGRESS, Cause, JobDocument, retried
from .store import JobStore

logger = logging.getLogger("flask_idms_webhooks")


class Retrying:
    """The retry of a failed attempt, on ``JobManager``'s tasks, store and queue."""

    tasks: Mapping[str, Task]
    store: JobStore
    queue: Queue
    enqueuer: Callable[..., Callable[[Any], None]]
    patiently: Callable[[Callable[[], Any]], Any]
    retry_after: Callable[[Task], int]

    def retry(
        self, document: JobDocument, cause: Cause | None, *, patient: bool = False
    ) -> tuple[bool, JobDocument | None]:
        """Queue a job whose attempt failed for another run after its task's delay, if its
        task has ``retries`` left and no cancel was asked. Answers (handled, new document):
        handled False means not retried, to be sealed; True with None means someone else
        moved the job meanwhile (retried, sealed): leave it."""
        task = self.tasks.get(document["TaskId"])
        attempt = int(document.get("Attempt", 1))
        job_id = document["ExecuteId"]
        if task is None or cause is None or attempt > task.retries:
            return False, None
        store = self.store

        def queue_again() -> tuple[bool, JobDocument | None]:
            if store.cancel_requested(job_id):
                return False, None
            at = time.time() + task.retry_delay(attempt)
            fresh = retried(document, cause, attempts=task.retries + 1, at=at)
            fresh["RetryAfter"] = self.retry_after(task)  # queued again: no estimate
            current = store.dispatch(job_id)
            number = current.number + 1
            new = Dispatch(rq_job_id(job_id, number), number, 1)
            if not current.started or not store.redispatch(
                fresh,
                current.rq_id,
                new,
                self.enqueuer(task, job_id, new.rq_id, at=at),
                due=at,
                intermediate_key=self.queue.intermediate_queue_key,
                scheduled_key=self.queue.scheduled_job_registry.key,
                expected_started=current.started_by,
                expected_state=(IN_PROGRESS, attempt),
                fresh_attempt=True,
            ):
                return True, None
            logger.warning("job %s: attempt %d ended (%s); retrying", job_id, attempt, cause[0])
            return True, fresh

        return self.patiently(queue_again) if patient else queue_again()
