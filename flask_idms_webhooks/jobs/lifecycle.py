"""The lifecycle of jobs: trigger, cancel, run, seal, chain and reap, and the RQ entry
function.

The status document is built in ``documents.py``; a running task reports through the
``JobContext`` of ``context.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis.client import Pipeline
from rq import Queue
from rq.job import Job

from ..config import Settings
from ..errors import (
    JobCancelled,
    OutcomeUnknown,
    StoreUnavailable,
    TaskBusy,
    TransientError,
)
from ..logs import job_is_of
from ..model.parameters import QueryParameterSet, ResolvedParameter
from ..model.tasks import Task
from .callbacks import Callbacks
from .chain import ChainStarter
from .context import Heartbeat, JobContext
from .dispatch import job_id_of, rq_job_id
from .documents import (
    CANCELLED,
    CANCELLED_BY_REQUEST,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    SUCCEEDED,
    WEBHOOK,
    WORKER_DIED,
    Cause,
    ChainEntry,
    JobDocument,
    Outcome,
    RowError,
    finish,
    finished_line,
    new_document,
    new_job_id,
    outcome,
    utc_now,
)
from .estimate import Estimate
from .patience import patiently
from .retrying import Retrying
from .store import IdempotencyClaim, JobStore, dumps, loads
from .urls import Urls

__all__ = ["ENTRY_POINT", "JobManager", "job_id_of", "rq_job_id"]

logger = logging.getLogger("flask_idms_webhooks")

#: The RQ job function, by dotted path (workers import it; queued jobs store it).
ENTRY_POINT = "flask_idms_webhooks.jobs.run_job"


R = TypeVar("R")
#: What puts a job on RQ's queue, on the pipeline of the transaction that records it.
Enqueue = Callable[[Pipeline], None]


def outcome_of(sealed: bytes) -> Outcome:
    """The outcome a sealed document says (the one sealed first, if two raced)."""
    return outcome(loads(sealed))


class JobManager(Retrying):
    """The lifecycle of jobs for one app, given what it works with."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        queue: Queue,
        urls: Urls,
        tasks: Mapping[str, Task],
        parameters: Mapping[str, QueryParameterSet],
        callbacks: Callbacks,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.urls = urls
        self.tasks = tasks
        self.parameters = parameters
        self.callbacks = callbacks
        self.chains = ChainStarter(self)

    # -- the web side -------------------------------------------------------------------
    def trigger(
        self,
        task: Task,
        parameters: Mapping[str, ResolvedParameter],
        base_url: str,
        trigger: str = WEBHOOK,
    ) -> JobDocument:
        """Start a job now: its document, written and enqueued in one round trip."""
        document = self.prepare(task, parameters, base_url, trigger)
        self.submit(task, document)
        return document

    def prepare(
        self,
        task: Task,
        parameters: Mapping[str, ResolvedParameter],
        base_url: str,
        trigger: str = WEBHOOK,
        due_on: str | None = None,
        callback_url: str | None = None,  # as shown: without its query
    ) -> JobDocument:
        """A new job's document (a fresh id, its polling URL, how it was started: a
        ``trigger`` of documents.py); nothing is written yet."""
        job_id = new_job_id()
        return new_document(
            job_id=job_id,
            task_id=task.id,
            parameters=parameters,
            polling_url=self.urls.polling_url(base_url, job_id),
            retry_after=self.retry_after(task),
            trigger=trigger,
            due_on=due_on,
            callback_url=callback_url,
        )

    def submit(
        self,
        task: Task,
        document: JobDocument,
        claim: tuple[str, IdempotencyClaim, int] | None = None,
        body: bytes | None = None,
        counted: tuple[str, int] | None = None,
        callback: str | None = None,  # its callback URL, whole (``JobStore.create``)
        joined: Callable[[JobDocument], IdempotencyClaim | None] | None = None,
    ) -> IdempotencyClaim | None:
        """Write a new job's record (``body``: the document already serialised, if the
        caller has it) and enqueue it, in one transaction; answers None.

        With ``claim`` (an ``Idempotency-Key``), the claim is written with the job, unless
        the key was claimed before: then nothing is written and the earlier claim is
        answered. A timeout after the writes were sent raises ``OutcomeUnknown``: the job
        may exist (a paused Redis runs them when it resumes). A task that runs one job at
        a time raises ``TaskBusy`` while it has one queued or running.
        """
        job_id = document["ExecuteId"]

        def create() -> IdempotencyClaim | None:
            return self.store.create(
                document,
                live_ttl=self.live_ttl(task),
                enqueue=self.enqueuer(task, job_id),
                body=body,
                claim=claim,
                counted=counted,
                exclusive=task.one_at_a_time,
                callback=callback,
                joined=joined,
            )

        try:
            try:
                return create()
            except TaskBusy as busy:
                # A job running with no heartbeat is looked at as a poll would (sealed
                # failed once presumed dead): a dead job does not hold its task.
                found = None if busy.beating else self.current(busy.running["ExecuteId"])
                if busy.beating or (found is not None and not found[1]):
                    raise
                return create()
        except StoreUnavailable as error:
            if not error.sent:
                raise
            raise OutcomeUnknown(
                str(error), execute_id=job_id, polling_url=document["PollingUrl"]
            ) from error

    def retry_after(self, task: Task) -> int:
        """A queued job's Retry-After, and the most a running one is told."""
        return task.retry_after or self.settings.retry_after

    def live_ttl(self, task: Task) -> int:
        """How long a job's live record may last: its timeout, then the retention."""
        return (task.timeout or self.settings.job_timeout) + self.settings.result_ttl

    def enqueuer(
        self, task: Task, job_id: str, rq_id: str | None = None, *, at: float | None = None
    ) -> Enqueue:
        """What puts a dispatch of the job on RQ's queue (or RQ's schedule, to be queued
        ``at`` that time by RQ's scheduler), on a given pipeline."""
        settings = self.settings

        def enqueue(pipe: Pipeline) -> None:
            options: dict[str, Any] = {
                "args": (job_id,),
                "job_id": rq_id or job_id,
                "result_ttl": settings.result_ttl,
                "failure_ttl": settings.result_ttl,
                "description": f"idms-webhooks {task.id}",
                "pipeline": pipe,
            }
            timeout = task.timeout or settings.job_timeout
            if at is None:
                self.queue.enqueue_call(ENTRY_POINT, timeout=timeout, **options)
            else:
                when = datetime.fromtimestamp(at, tz=UTC)
                self.queue.enqueue_at(when, ENTRY_POINT, job_timeout=timeout, **options)

        return enqueue

    def current(self, job_id: str) -> tuple[bytes, bool, JobDocument | None] | None:
        """(document bytes, finished, parsed live document) of a job, or None once gone.

        One round trip. A running job whose heartbeat stopped is sealed here as failed, so
        a poller sees the truth even when no worker is left to reap it.
        """
        sealed, live, beating = self.store.read(job_id)
        if sealed is not None:
            return sealed, True, None
        if live is None:
            return None
        document: JobDocument = loads(live)
        if document["Status"] == IN_PROGRESS and not beating and self.presumed_dead(job_id):
            handled, fresh = self.retry(document, WORKER_DIED)
            if fresh is not None:
                return dumps(fresh), False, fresh
            if handled:  # moved on meanwhile: the next poll sees where to
                return live, False, document
            return self.seal_failed(document, WORKER_DIED), True, None
        return live, False, document

    def presumed_dead(self, job_id: str) -> bool:
        """Whether a running job without a heartbeat has shown no sign of life for half a
        heartbeat timeout since it was first seen so. (A heartbeat missing right after
        Redis was away proves nothing: its worker beats again within a quarter.)"""
        since = self.store.suspected_since(job_id)
        return time.time() - since >= self.settings.heartbeat_timeout / 2

    def cancel(self, job_id: str, document: JobDocument) -> bytes:
        """Record a cancel request. A job still on the queue is taken off it and sealed
        ``cancelled`` in one step; one a worker has taken stops itself at its next check
        (its worker kills it after ``IDMS_WEBHOOKS_CANCEL_GRACE`` without that)."""
        settings = self.settings
        self.store.request_cancel(job_id, ttl=settings.job_timeout + settings.result_ttl)
        if document["Status"] == QUEUED:
            rq_id = self.store.dispatch(job_id).rq_id
            sealed = finish(document, CANCELLED, CANCELLED_BY_REQUEST)
            queue = self.queue
            if self.store.cancel_queued(
                sealed,
                rq_id,
                queue.key,
                queue.scheduled_job_registry.key,
                Job.key_for(rq_id),
                queue.canceled_job_registry.key,
            ):
                self.finished(sealed)
                return self.store.read(job_id)[0] or dumps(sealed)
        answer = document.copy()
        answer["StatusDescription"] = "Cancellation requested"
        return dumps(answer)

    def seal(
        self,
        document: JobDocument,
        status: str,
        error: Cause | None = None,
        row_errors: Sequence[RowError] = (),
        *,
        patient: bool = False,
    ) -> bytes:
        """Seal a job once; answers the sealed document (the earlier one if it lost a race).

        A worker is ``patient``: it tries until Redis answers or
        ``IDMS_WEBHOOKS_STORE_OUTAGE`` passed, for a job's end must not be lost to an
        outage. A request (a poll, a cancel) tries once and answers 503; its caller's next
        request tries again.
        """
        final = finish(document, status, error)

        task = self.tasks.get(document["TaskId"])
        schedule = task.schedule if task is not None else None
        limit = schedule.max_failures if schedule is not None else None

        def seal_once() -> bytes:
            if self.store.seal(final, row_errors, max_failures=limit):
                self.finished(final)
                return dumps(final)
            sealed, _, _ = self.store.read(final["ExecuteId"])
            return sealed or dumps(final)

        return self.patiently(seal_once) if patient else seal_once()

    def finished(self, document: JobDocument) -> None:
        """What the one who sealed a job does once: its INFO line, its counts in the
        totals (see ``metrics``)."""
        message, fields = finished_line(document)
        logger.info(message, extra=fields)
        self.store.count_finished(document)
        self.callbacks.sealed(document)  # its callback, if it has one, queued

    def patiently(self, call: Callable[[], R]) -> R:
        """``call()``, riding out Redis being away for up to the outage setting."""
        return patiently(self.settings.store_outage, call)

    # -- the worker side ----------------------------------------------------------------
    def run(self, job_id: str, rq_id: str | None = None) -> Outcome | None:
        """Run a job's task, if this dispatch (``rq_id``) is the one to run it, and seal
        its outcome, riding out Redis outages. Answers the outcome of this dispatch: the
        sealed status (and error), ``failed`` for an attempt that is retried, None when
        it ran nothing."""
        store = self.store
        sealed, live, _ = self.patiently(lambda: store.read(job_id))
        if sealed is not None or live is None:
            return None  # cancelled before it started, or expired
        document: JobDocument = loads(live)
        job_is_of(document["TaskId"])
        task = self.tasks.get(document["TaskId"])
        if task is None:
            current = self.patiently(lambda: store.dispatch(job_id))
            if current.rq_id == (rq_id or job_id) and not current.started:
                unknown = ("UnknownTask", f"No task {document['TaskId']!r} on this worker.")
                return outcome_of(self.seal(document, FAILED, unknown, patient=True))
            return None  # (else a dispatch of the past: the job is another one's now)
        # A record an earlier release wrote has no attempts yet: this is its first.
        document.setdefault("Attempt", 1)
        document.setdefault("Attempts", [])
        queued = document.copy()
        now = utc_now()
        document.update(
            {
                "Status": IN_PROGRESS,
                "StatusDescription": "Running",
                "StartedOn": now,
                "UpdatedOn": now,
            }
        )
        started = self.patiently(lambda: store.start(document, rq_id))
        if started < 0:  # cancelled before it started
            return outcome_of(self.seal(queued, CANCELLED, CANCELLED_BY_REQUEST, patient=True))
        if started == 0:
            return None  # sealed, or another dispatch's to run
        context = JobContext(
            store,
            document,
            task,
            self.settings.max_row_errors,
            fixed=self.parameters[task.id].fixed_values(),
            estimate=Estimate(self.settings.retry_after_min, self.retry_after(task)),
        )
        with Heartbeat(store, job_id):
            status, error, transient = self._perform(task, context)
            if transient and self.retry(context.document, error, patient=True)[0]:
                # queued again, to retry after the task's delay
                return {"Status": FAILED, "Error": f"attempt failed, retried: {error}"}
            if status != CANCELLED:
                # The children are started, and listed, before the parent is sealed.
                context.document["Chain"] = self.patiently(
                    lambda: self.start_chain(task, status, context.document)
                )
            sealed = self.seal(
                context.document, status, error, context.take_row_errors(), patient=True
            )
        return outcome_of(sealed)

    def seal_failed(self, document: JobDocument, cause: Cause, *, patient: bool = False) -> bytes:
        """Seal a job that ended without its worker sealing it as failed, starting its
        on_failure chain first, as for any failed job."""
        task = self.tasks.get(document["TaskId"])
        if task is not None:
            document = document.copy()
            document["Chain"] = self.start_chain(task, FAILED, document)
        return self.seal(document, FAILED, cause, patient=patient)

    def _perform(self, task: Task, context: JobContext) -> tuple[str, Cause | None, bool]:
        """Run the task; answers its outcome (status, error, whether the error may pass:
        the source or target was unreachable)."""
        try:
            task.handler(context.parameters, context)
        except JobCancelled:
            return CANCELLED, CANCELLED_BY_REQUEST, False
        except Exception as error:
            logger.exception("job %s of task %s failed", context.job_id, task.id)
            cause = (type(error).__name__, str(error) or type(error).__name__)
            return FAILED, cause, isinstance(error, TransientError)
        # A cancel the task never looked for (it ran to the end) still ends cancelled.
        if self.patiently(lambda: self.store.cancel_requested(context.job_id)):
            return CANCELLED, CANCELLED_BY_REQUEST, False
        return SUCCEEDED, None, False

    def start_chain(self, task: Task, status: str, document: JobDocument) -> list[ChainEntry]:
        """Start the tasks chained to this outcome, once (``chain.ChainStarter``)."""
        return self.chains.start(task, status, document)
