"""Jobs: the RQ entry function and the lifecycle (trigger, cancel, run, seal, chain, reap).

The status document is built in ``documents.py``; a running task reports through the
``JobContext`` of ``context.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flask import current_app
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from .context import Heartbeat, JobContext
from .documents import (
    CANCELLED,
    CANCELLED_BY_REQUEST,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    SUCCEEDED,
    WORKER_DIED,
    finish,
    new_document,
    new_job_id,
    utc_now,
)
from .errors import JobCancelled, ParameterError, StoreUnavailable
from .parameters import ResolvedParameter
from .store import Document, JobStore, dumps, loads
from .tasks import Task

if TYPE_CHECKING:
    from .extension import WebhooksState

__all__ = ["ENTRY_POINT", "JobManager", "queue_for", "run_job"]

logger = logging.getLogger("flask_idms_webhooks")

#: The RQ job function, by dotted path (workers import it).
ENTRY_POINT = "flask_idms_webhooks.jobs.run_job"
SEAL_ATTEMPTS = 5


def run_job(job_id: str) -> None:
    """The RQ job function: runs one job inside the worker's app context."""
    state: WebhooksState = current_app.extensions["idms_webhooks"]
    state.jobs.run(job_id)


class JobManager:
    """The lifecycle of jobs for one app."""

    def __init__(self, state: WebhooksState) -> None:
        self.state = state

    @property
    def store(self) -> JobStore:
        return self.state.store

    # -- the web side -------------------------------------------------------------------
    def trigger(
        self, task: Task, parameters: Mapping[str, ResolvedParameter], base_url: str
    ) -> Document:
        """Start a job now: its document, written and enqueued in one round trip."""
        document = self.prepare(task, parameters, base_url)
        self.submit(task, document)
        return document

    def prepare(
        self, task: Task, parameters: Mapping[str, ResolvedParameter], base_url: str
    ) -> Document:
        """A new job's document (a fresh id, its polling URL); nothing is written yet."""
        job_id = new_job_id()
        return new_document(
            job_id=job_id,
            task_id=task.id,
            parameters=parameters,
            polling_url=self.polling_url(base_url, job_id),
            retry_after=task.retry_after or self.state.settings.retry_after,
        )

    def submit(
        self,
        task: Task,
        document: Document,
        claim_key: str | None = None,
        body: bytes | None = None,
    ) -> None:
        """Write a new job's record (``body``: the document already serialised, if the
        caller has it) and enqueue it, in one pipelined transaction.

        If that fails, the ``Idempotency-Key`` claim made for it is released, so that the
        caller's retry can start the job.
        """
        settings = self.state.settings
        job_id = document["ExecuteId"]
        timeout = task.timeout or settings.job_timeout

        def enqueue(pipe: Pipeline) -> None:
            self.state.queue.enqueue_call(
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

    def polling_url(self, base_url: str, job_id: str) -> str:
        prefix = self.state.settings.url_prefix
        token = self.state.credentials.job_token(job_id)
        return f"{base_url.rstrip('/')}{prefix}/jobs/{job_id}?token={token}"

    def current(self, job_id: str) -> tuple[bytes, bool, Document | None] | None:
        """(document bytes, finished, parsed live document) of a job, or None once gone.

        One round trip. A running job whose heartbeat stopped is sealed here as failed, so
        a poller sees the truth even when no worker is left to reap it.
        """
        sealed, live, beating = self.store.read(job_id)
        if sealed is not None:
            return sealed, True, None
        if live is None:
            return None
        document: Document = loads(live)
        if document["Status"] == IN_PROGRESS and not beating:
            return self.seal_failed(document, WORKER_DIED), True, None
        return live, False, document

    def cancel(self, job_id: str, document: Document) -> bytes:
        """Request cancellation of a live job; a queued one is sealed at once."""
        settings = self.state.settings
        self.store.request_cancel(job_id, ttl=settings.job_timeout + settings.result_ttl)
        if document["Status"] == QUEUED:
            # Already picked up? Then the worker sees the seal and does not run it.
            with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
                Job.fetch(
                    job_id, connection=self.store.redis, serializer=self.state.queue.serializer
                ).cancel()
            return self.seal(document, CANCELLED, CANCELLED_BY_REQUEST)
        self.state.stop_running_job(job_id)
        document = dict(document, StatusDescription="Cancellation requested")
        return dumps(document)

    def seal(
        self,
        document: Document,
        status: str,
        error: tuple[str, str] | None = None,
        row_errors: Sequence[Document] = (),
    ) -> bytes:
        """Seal a job once; answers the sealed document (the earlier one if it lost a race).

        Retried briefly: a job's end must not be lost to a passing Redis hiccup.
        """
        final = finish(document, status, error)
        for attempt in range(SEAL_ATTEMPTS):
            try:
                if self.store.seal(final, row_errors):
                    return dumps(final)
                sealed, _, _ = self.store.read(final["ExecuteId"])
                return sealed or dumps(final)
            except StoreUnavailable:
                if attempt == SEAL_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the worker side ----------------------------------------------------------------
    def run(self, job_id: str) -> None:
        sealed, live, cancelled = self.store.read_to_run(job_id)
        if sealed is not None or live is None:
            return  # cancelled before it started, or expired
        document: Document = loads(live)
        task = self.state.tasks.get(document["TaskId"])
        if task is None:
            self.seal(
                document, FAILED, ("UnknownTask", f"No task {document['TaskId']!r} on this worker.")
            )
            return
        if cancelled:
            self.seal(document, CANCELLED, CANCELLED_BY_REQUEST)
            return
        now = utc_now()
        document.update(
            Status=IN_PROGRESS, StatusDescription="Running", StartedOn=now, UpdatedOn=now
        )
        if not self.store.start(document):
            return
        context = JobContext(
            self.store,
            document,
            task,
            self.state.settings.max_row_errors,
            fixed=self.state.parameters[task.id].fixed_values(),
        )
        with Heartbeat(self.store, job_id):
            status, error = self._perform(task, context)
            if status != CANCELLED:
                # The children are started, and listed, before the parent is sealed.
                context.document["Chain"] = self._start_chain(task, status, context.document)
            self.seal(context.document, status, error, context.take_row_errors())

    def seal_failed(self, document: Document, cause: tuple[str, str]) -> bytes:
        """Seal a job that ended without its worker sealing it as failed, starting its
        on_failure chain first, as for any failed job."""
        task = self.state.tasks.get(document["TaskId"])
        if task is not None:
            document = dict(document, Chain=self._start_chain(task, FAILED, document))
        return self.seal(document, FAILED, cause)

    def _perform(self, task: Task, context: JobContext) -> tuple[str, tuple[str, str] | None]:
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

    def _start_chain(self, task: Task, status: str, document: Document) -> list[Document]:
        """Start the tasks chained to this outcome, once; answers the parent's Chain.

        Children get the parent's QueryParameters values for the keys they share.
        """
        children = task.chain.on_success if status == SUCCEEDED else task.chain.on_failure
        if not children or not self.store.claim_chain(document["ExecuteId"]):
            return list(document.get("Chain") or [])
        polling_url: str = document["PollingUrl"]
        base_url = polling_url[: polling_url.index(f"{self.state.settings.url_prefix}/jobs/")]
        values = {key: value["Value"] for key, value in document["QueryParameters"].items()}
        return [self._start_child(child, values, base_url) for child in children]

    def _start_child(self, child_id: str, values: Mapping[str, Any], base_url: str) -> Document:
        """Start one chained task with the parent's values for the keys it shares."""
        entry: Document = {"TaskId": child_id, "ExecuteId": None, "PollingUrl": None, "Error": None}
        child = self.state.tasks.get(child_id)
        if child is None:
            return dict(entry, Error=f"No task {child_id!r}.")
        parameter_set = self.state.parameters[child_id]
        passed = {key: value for key, value in values.items() if key in parameter_set.rows}
        try:
            document = self.trigger(child, parameter_set.resolve(passed), base_url)
        except ParameterError as error:
            return dict(entry, Error=f"Invalid QueryParameters: {json.dumps(error.errors)}")
        except StoreUnavailable:
            logger.warning("chained task %s not started: Redis unavailable", child_id)
            return dict(entry, Error="Not started: the job store (Redis) was unavailable.")
        return dict(entry, ExecuteId=document["ExecuteId"], PollingUrl=document["PollingUrl"])

    def seal_abandoned(self, job_id: str, cause: tuple[str, str]) -> None:
        """Seal a job whose process ended without sealing it (cancelled if that was asked)."""
        live = self.store.live(job_id)
        if live is None:
            self.store.forget_running(job_id)
            return
        document = loads(live)
        if self.store.cancel_requested(job_id):
            self.seal(document, CANCELLED, CANCELLED_BY_REQUEST)
        elif document["Status"] == IN_PROGRESS:
            self.seal_failed(document, cause)

    def reap(self) -> int:
        """Seal every running job whose heartbeat stopped; answers how many."""
        reaped = 0
        for job_id, beating in self.store.running():
            if not beating:
                self.seal_abandoned(job_id, WORKER_DIED)
                reaped += 1
        return reaped


def queue_for(connection: Any, name: str) -> Queue:
    from rq.serializers import JSONSerializer

    return Queue(name, connection=connection, serializer=JSONSerializer)
