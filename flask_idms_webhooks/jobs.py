"""Jobs: the status document, the job context a task reports through, the RQ entry
function, and the lifecycle (trigger, cancel, seal, reap)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flask import current_app
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from .errors import JobCancelled, ParameterError, StoreUnavailable
from .parameters import ResolvedParameter
from .store import MAX_STORED_ROW_ERRORS, Document, JobStore, dumps
from .tasks import Task

if TYPE_CHECKING:
    from .extension import WebhooksState

logger = logging.getLogger("flask_idms_webhooks")

QUEUED = "queued"
IN_PROGRESS = "in progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)

#: The RQ job function, by dotted path (workers import it).
ENTRY_POINT = "flask_idms_webhooks.jobs.run_job"
SEAL_ATTEMPTS = 5


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_job_id() -> str:
    """128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def new_document(
    *,
    job_id: str,
    task_id: str,
    parameters: Mapping[str, ResolvedParameter],
    polling_url: str,
    retry_after: int,
) -> Document:
    now = utc_now()
    return {
        "ExecuteId": job_id,
        "TaskId": task_id,
        "Status": QUEUED,
        "StatusDescription": "Queued",
        "Success": None,
        "PercentComplete": 0,
        "RowCount": None,
        "ProcessedCount": 0,
        "InsertedCount": 0,
        "UpdatedCount": 0,
        "SkippedCount": 0,
        "ErrorCount": 0,
        "DeletedCount": 0,
        "Errors": [],
        "QueryParameters": {key: value.as_document() for key, value in parameters.items()},
        "CreatedOn": now,
        "StartedOn": None,
        "UpdatedOn": now,
        "CompletedOn": None,
        "PollingUrl": polling_url,
        "RetryAfter": retry_after,
        "Chain": [],
        "Error": None,
    }


def finish(document: Document, status: str, error: tuple[str, str] | None = None) -> Document:
    """The sealed form of a document: only a succeeded job reaches 100 %."""
    now = utc_now()
    document = dict(document)
    document["Status"] = status
    document["Success"] = status == SUCCEEDED
    document["UpdatedOn"] = now
    document["CompletedOn"] = now
    if status == SUCCEEDED:
        document["PercentComplete"] = 100
        document["StatusDescription"] = f"Success: processed {document['ProcessedCount']} records"
    else:
        document["PercentComplete"] = min(int(document["PercentComplete"]), 99)
        type_, message = error or ("Error", "The job failed.")
        document["Error"] = {"Type": type_, "Message": message}
        document["StatusDescription"] = f"{status.capitalize()}: {message}"
    return document


WORKER_DIED = ("WorkerDied", "The worker running this job died (no heartbeat).")
HORSE_DIED = ("WorkerDied", "The worker process running this job ended unexpectedly.")
CANCELLED_BY_REQUEST = ("Cancelled", "Cancelled by request.")


class JobContext:
    """What a running task reports through: rows, counters, row errors, cancellation.

    Writes reach Redis at most about every 1 % of the rows or every second, never per row.
    """

    FLUSH_SECONDS = 1.0
    CANCEL_CHECK_SECONDS = 0.5

    def __init__(
        self,
        store: JobStore,
        document: Document,
        task: Task,
        max_row_errors: int,
        fixed: Mapping[str, Any] | None = None,
    ) -> None:
        self._store = store
        self._document = document
        self.task = task
        self.job_id: str = document["ExecuteId"]
        #: The values the task works with: the resolved QueryParameters, and the values of
        #: the fixed (prompt None) filters, which callers cannot set.
        self.parameters: dict[str, Any] = {
            **(fixed or {}),
            **{key: value["Value"] for key, value in document["QueryParameters"].items()},
        }
        self._max_row_errors = max_row_errors
        self._pending_errors: list[Document] = []
        self._done: int | None = None
        self._last_flush = time.monotonic()
        self._last_percent = 0
        self._last_cancel_check = time.monotonic()
        self._cancelled = False

    @property
    def document(self) -> Document:
        return self._document

    def set_row_count(self, total: int | None) -> None:
        """How many records the source returned (the denominator of PercentComplete)."""
        self._document["RowCount"] = total
        self._flush(force=True)

    def progress(self, done: int | None = None, description: str | None = None) -> None:
        """Report rows done (defaults to the processed count) and an optional description."""
        if done is not None:
            self._done = done
        if description is not None:
            self._document["StatusDescription"] = description
        self._flush()

    def count(
        self, *, inserted: int = 0, updated: int = 0, skipped: int = 0, deleted: int = 0
    ) -> None:
        """Count processed rows into exactly one outcome each (a delete counts as updated,
        and in DeletedCount too)."""
        doc = self._document
        doc["InsertedCount"] += inserted
        doc["UpdatedCount"] += updated + deleted
        doc["DeletedCount"] += deleted
        doc["SkippedCount"] += skipped
        doc["ProcessedCount"] += inserted + updated + skipped + deleted
        self._flush()

    def row_error(self, row: int, message: str) -> None:
        """Count a row that failed. The first IDMS_WEBHOOKS_MAX_ROW_ERRORS errors are kept in
        the record, and up to 10,000 for the job's errors.csv."""
        doc = self._document
        doc["ErrorCount"] += 1
        doc["ProcessedCount"] += 1
        error = {"Row": row, "Message": str(message)[:1000]}
        if len(doc["Errors"]) < self._max_row_errors:
            doc["Errors"].append(error)
        if doc["ErrorCount"] <= MAX_STORED_ROW_ERRORS:
            self._pending_errors.append(error)
        self._flush()

    def take_row_errors(self) -> list[Document]:
        """The row errors not yet written to the store (they go with the next write)."""
        pending, self._pending_errors = self._pending_errors, []
        return pending

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the job was cancelled (a Redis read at most every 0.5 s)."""
        if (
            not self._cancelled
            and time.monotonic() - self._last_cancel_check >= self.CANCEL_CHECK_SECONDS
        ):
            self._last_cancel_check = time.monotonic()
            self._cancelled = self._store.cancel_requested(self.job_id)
        if self._cancelled:
            raise JobCancelled(CANCELLED_BY_REQUEST[1])

    def _percent(self) -> int:
        total = self._document["RowCount"]
        done = self._done if self._done is not None else self._document["ProcessedCount"]
        if not total:
            return int(self._document["PercentComplete"])
        return max(0, min(99, int(done * 100 / total)))

    def _flush(self, force: bool = False) -> None:
        percent = self._percent()
        now = time.monotonic()
        if (
            not force
            and percent == self._last_percent
            and now - self._last_flush < self.FLUSH_SECONDS
        ):
            return
        doc = self._document
        doc["PercentComplete"] = percent
        if doc["RowCount"] and self._done is None:
            doc["StatusDescription"] = (
                f"Processed {doc['ProcessedCount']} of {doc['RowCount']} records"
            )
        doc["UpdatedOn"] = utc_now()
        self._last_flush, self._last_percent = now, percent
        row_errors = self.take_row_errors()
        try:
            cancelled = self._store.update(doc, row_errors)
        except StoreUnavailable:
            self._pending_errors[:0] = row_errors  # written with the next write, or the seal
            logger.warning("progress of job %s not written; Redis unavailable", self.job_id)
            return
        if cancelled:
            self._cancelled = True
            self._last_cancel_check = now


class Heartbeat:
    """Keeps a running job's heartbeat alive from a thread, whatever the task is doing."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self._store, self._job_id = store, job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"idms-heartbeat-{job_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = max(0.2, self._store.heartbeat_timeout / 4)
        while not self._stop.wait(interval):
            try:
                self._store.beat(self._job_id)
            except Exception:  # a lost beat is retried; a dead Redis ends the job anyway
                logger.warning("heartbeat of job %s not written", self._job_id, exc_info=True)


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

    def submit(self, task: Task, document: Document, claim_key: str | None = None) -> None:
        """Write a new job's record and enqueue it, in one pipelined transaction.

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
            self.store.create(document, live_ttl=timeout + settings.result_ttl, enqueue=enqueue)
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
        document: Document = json.loads(live)
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
        sealed, live, _ = self.store.read(job_id)
        if sealed is not None or live is None:
            return  # cancelled before it started, or expired
        document: Document = json.loads(live)
        task = self.state.tasks.get(document["TaskId"])
        if task is None:
            self.seal(
                document, FAILED, ("UnknownTask", f"No task {document['TaskId']!r} on this worker.")
            )
            return
        if self.store.cancel_requested(job_id):
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
        document = json.loads(live)
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
