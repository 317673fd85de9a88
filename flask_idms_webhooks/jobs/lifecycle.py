"""The lifecycle of jobs: trigger, cancel, run, seal, chain and reap, and the RQ entry
function.

The status document is built in ``documents.py``; a running task reports through the
``JobContext`` of ``context.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

from flask import current_app
from redis.client import Pipeline
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from ..config import EXTENSION_KEY, Settings
from ..errors import ConfigurationError, JobCancelled, ParameterError, StoreUnavailable
from ..model.parameters import QueryParameterSet, ResolvedParameter
from ..model.tasks import Task
from .context import Heartbeat, JobContext
from .documents import (
    CANCELLED,
    CANCELLED_BY_REQUEST,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    SUCCEEDED,
    WORKER_DIED,
    Cause,
    ChainEntry,
    JobDocument,
    RowError,
    finish,
    new_document,
    new_job_id,
    utc_now,
)
from .store import JobStore, dumps, loads
from .urls import Urls

__all__ = ["ENTRY_POINT", "JobManager", "run_job"]

logger = logging.getLogger("flask_idms_webhooks")

#: The RQ job function, by dotted path (workers import it; queued jobs store it).
ENTRY_POINT = "flask_idms_webhooks.jobs.run_job"
SEAL_ATTEMPTS = 5


class _HasJobs(Protocol):
    """What ``run_job`` needs of the extension's state on the app."""

    @property
    def jobs(self) -> JobManager: ...


def run_job(job_id: str) -> None:
    """The RQ job function: runs one job inside the worker's app context."""
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise ConfigurationError(
            "IdmsWebhooks is not initialised on the worker's app: start workers with "
            "`flask --app <your app> idms-webhooks worker`"
        )
    cast(_HasJobs, state).jobs.run(job_id)


class JobManager:
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
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.urls = urls
        self.tasks = tasks
        self.parameters = parameters

    # -- the web side -------------------------------------------------------------------
    def trigger(
        self, task: Task, parameters: Mapping[str, ResolvedParameter], base_url: str
    ) -> JobDocument:
        """Start a job now: its document, written and enqueued in one round trip."""
        document = self.prepare(task, parameters, base_url)
        self.submit(task, document)
        return document

    def prepare(
        self, task: Task, parameters: Mapping[str, ResolvedParameter], base_url: str
    ) -> JobDocument:
        """A new job's document (a fresh id, its polling URL); nothing is written yet."""
        job_id = new_job_id()
        return new_document(
            job_id=job_id,
            task_id=task.id,
            parameters=parameters,
            polling_url=self.urls.polling_url(base_url, job_id),
            retry_after=task.retry_after or self.settings.retry_after,
        )

    def submit(
        self,
        task: Task,
        document: JobDocument,
        claim_key: str | None = None,
        body: bytes | None = None,
    ) -> None:
        """Write a new job's record (``body``: the document already serialised, if the
        caller has it) and enqueue it, in one pipelined transaction.

        If that fails, the ``Idempotency-Key`` claim made for it is released, so that the
        caller's retry can start the job.
        """
        settings = self.settings
        job_id = document["ExecuteId"]
        timeout = task.timeout or settings.job_timeout

        def enqueue(pipe: Pipeline) -> None:
            self.queue.enqueue_call(
                ENTRY_POINT,
                args=(job_id,),
                job_id=job_id,
                timeout=timeout,
                result_ttl=600,
                failure_ttl=settings.result_ttl,
                description=f"idms-webhooks {task.id}",
                pipeline=pipe,
            )

        try:
            self.store.create(
                document, live_ttl=timeout + settings.result_ttl, enqueue=enqueue, body=body
            )
        except StoreUnavailable:
            if claim_key is not None:
                try:
                    self.store.release(claim_key)
                except StoreUnavailable:
                    logger.warning("Idempotency-Key claim of job %s not released", job_id)
            raise

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
        if document["Status"] == IN_PROGRESS and not beating:
            return self.seal_failed(document, WORKER_DIED), True, None
        return live, False, document

    def cancel(self, job_id: str, document: JobDocument) -> bytes:
        """Request cancellation of a live job; a queued one is sealed at once."""
        settings = self.settings
        self.store.request_cancel(job_id, ttl=settings.job_timeout + settings.result_ttl)
        if document["Status"] == QUEUED:
            # Already picked up? Then the worker sees the seal and does not run it.
            with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
                Job.fetch(
                    job_id, connection=self.store.redis, serializer=self.queue.serializer
                ).cancel()
            return self.seal(document, CANCELLED, CANCELLED_BY_REQUEST)
        self.stop_running_job(job_id)
        answer = document.copy()
        answer["StatusDescription"] = "Cancellation requested"
        return dumps(answer)

    def stop_running_job(self, job_id: str) -> None:
        """Ask the worker running a job to kill its work-horse (forking workers only)."""
        # Not on a worker right now? Then the job context's next check stops it.
        with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
            send_stop_job_command(self.queue.connection, job_id, serializer=self.queue.serializer)

    def seal(
        self,
        document: JobDocument,
        status: str,
        error: Cause | None = None,
        row_errors: Sequence[RowError] = (),
        *,
        attempts: int = 1,
    ) -> bytes:
        """Seal a job once; answers the sealed document (the earlier one if it lost a race).

        A worker that ran the job tries ``SEAL_ATTEMPTS`` times, a while apart: a job's end
        must not be lost to a passing Redis hiccup. A request (a poll, a cancel) tries once
        and answers 503; its caller's next request tries again.
        """
        final = finish(document, status, error)
        for attempt in range(1, attempts + 1):
            try:
                if self.store.seal(final, row_errors):
                    return dumps(final)
                sealed, _, _ = self.store.read(final["ExecuteId"])
                return sealed or dumps(final)
            except StoreUnavailable:
                if attempt == attempts:
                    raise
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the worker side ----------------------------------------------------------------
    def run(self, job_id: str) -> None:
        sealed, live, cancelled = self.store.read_to_run(job_id)
        if sealed is not None or live is None:
            return  # cancelled before it started, or expired
        document: JobDocument = loads(live)
        task = self.tasks.get(document["TaskId"])
        if task is None:
            unknown = ("UnknownTask", f"No task {document['TaskId']!r} on this worker.")
            self.seal(document, FAILED, unknown, attempts=SEAL_ATTEMPTS)
            return
        if cancelled:
            self.seal(document, CANCELLED, CANCELLED_BY_REQUEST, attempts=SEAL_ATTEMPTS)
            return
        now = utc_now()
        document.update(
            {
                "Status": IN_PROGRESS,
                "StatusDescription": "Running",
                "StartedOn": now,
                "UpdatedOn": now,
            }
        )
        if not self.store.start(document):
            return
        context = JobContext(
            self.store,
            document,
            task,
            self.settings.max_row_errors,
            fixed=self.parameters[task.id].fixed_values(),
        )
        with Heartbeat(self.store, job_id):
            status, error = self._perform(task, context)
            if status != CANCELLED:
                # The children are started, and listed, before the parent is sealed.
                context.document["Chain"] = self._start_chain(task, status, context.document)
            self.seal(
                context.document,
                status,
                error,
                context.take_row_errors(),
                attempts=SEAL_ATTEMPTS,
            )

    def seal_failed(self, document: JobDocument, cause: Cause, *, attempts: int = 1) -> bytes:
        """Seal a job that ended without its worker sealing it as failed, starting its
        on_failure chain first, as for any failed job."""
        task = self.tasks.get(document["TaskId"])
        if task is not None:
            document = document.copy()
            document["Chain"] = self._start_chain(task, FAILED, document)
        return self.seal(document, FAILED, cause, attempts=attempts)

    def _perform(self, task: Task, context: JobContext) -> tuple[str, Cause | None]:
        """Run the task; answers its outcome (status, error)."""
        try:
            task.handler(context.parameters, context)
        except JobCancelled:
            return CANCELLED, CANCELLED_BY_REQUEST
        except Exception as error:
            logger.exception("job %s of task %s failed", context.job_id, task.id)
            return FAILED, (type(error).__name__, str(error) or type(error).__name__)
        # A cancel the task never looked for (it ran to the end) still ends cancelled.
        if self.store.cancel_requested(context.job_id):
            return CANCELLED, CANCELLED_BY_REQUEST
        return SUCCEEDED, None

    def _start_chain(self, task: Task, status: str, document: JobDocument) -> list[ChainEntry]:
        """Start the tasks chained to this outcome, once; answers the parent's Chain.

        Children get the parent's QueryParameters values for the keys they share.
        """
        children = task.chain.on_success if status == SUCCEEDED else task.chain.on_failure
        if not children or not self.store.claim_chain(document["ExecuteId"]):
            return list(document.get("Chain") or [])
        base_url = self.urls.base_of(document["PollingUrl"])
        values = {key: value["Value"] for key, value in document["QueryParameters"].items()}
        return [self._start_child(child, values, base_url) for child in children]

    def _start_child(self, child_id: str, values: Mapping[str, Any], base_url: str) -> ChainEntry:
        """Start one chained task with the parent's values for the keys it shares."""
        entry: ChainEntry = {
            "TaskId": child_id,
            "ExecuteId": None,
            "PollingUrl": None,
            "Error": None,
        }
        child = self.tasks.get(child_id)
        if child is None:
            return {**entry, "Error": f"No task {child_id!r}."}
        parameter_set = self.parameters[child_id]
        passed = {key: value for key, value in values.items() if key in parameter_set.rows}
        try:
            document = self.trigger(child, parameter_set.resolve(passed), base_url)
        except ParameterError as error:
            return {**entry, "Error": f"Invalid QueryParameters: {json.dumps(error.errors)}"}
        except StoreUnavailable:
            logger.warning("chained task %s not started: Redis unavailable", child_id)
            return {**entry, "Error": "Not started: the job store (Redis) was unavailable."}
        return {**entry, "ExecuteId": document["ExecuteId"], "PollingUrl": document["PollingUrl"]}

    def seal_abandoned(self, job_id: str, cause: Cause, *, attempts: int = 1) -> None:
        """Seal a job whose process ended without sealing it (cancelled if that was asked).
        The worker that saw its work-horse die gives ``SEAL_ATTEMPTS``; the reaper tries
        once a pass."""
        live = self.store.live(job_id)
        if live is None:
            self.store.forget_running(job_id)
            return
        document = loads(live)
        if self.store.cancel_requested(job_id):
            self.seal(document, CANCELLED, CANCELLED_BY_REQUEST, attempts=attempts)
        elif document["Status"] == IN_PROGRESS:
            self.seal_failed(document, cause, attempts=attempts)

    def reap(self) -> int:
        """Seal every running job whose heartbeat stopped; answers how many."""
        reaped = 0
        for job_id, beating in self.store.running():
            if not beating:
                self.seal_abandoned(job_id, WORKER_DIED)
                reaped += 1
        return reaped
