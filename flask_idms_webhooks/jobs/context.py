"""The job context a running task reports through (``model.reporting.JobReporter``), and
the heartbeat of a running job."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..errors import JobCancelled, StoreUnavailable
from ..model.tasks import Task
from .documents import CANCELLED_BY_REQUEST, JobDocument, RowError, utc_now
from .estimate import Estimate
from .store import MAX_STORED_ROW_ERRORS, JobStore

logger = logging.getLogger("flask_idms_webhooks")


class JobContext:
    """What a running task reports through: rows, counters, row errors, cancellation.

    Writes reach Redis at most about every 1 % of the rows or every second, never per row.
    """

    FLUSH_SECONDS = 1.0
    CANCEL_CHECK_SECONDS = 0.5

    def __init__(
        self,
        store: JobStore,
        document: JobDocument,
        task: Task,
        max_row_errors: int,
        fixed: Mapping[str, Any] | None = None,
        estimate: Estimate | None = None,
    ) -> None:
        self._store = store
        self._estimate = estimate
        self._document = document
        self.task = task
        self._job_id = document["ExecuteId"]
        #: The values the task works with: the resolved QueryParameters, and the values of
        #: the fixed (prompt None) filters, which callers cannot set.
        self.parameters: dict[str, Any] = {
            **(fixed or {}),
            **{key: value["Value"] for key, value in document["QueryParameters"].items()},
        }
        self._max_row_errors = max_row_errors
        self._pending_errors: list[RowError] = []
        self._done: int | None = None
        self._last_flush = time.monotonic()
        self._last_percent = 0
        self._last_cancel_check = time.monotonic()
        self._cancelled = False
        self._note: str | None = None

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def document(self) -> JobDocument:
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
        error: RowError = {"Row": row, "Message": str(message)[:1000]}
        if len(doc["Errors"]) < self._max_row_errors:
            doc["Errors"].append(error)
        if doc["ErrorCount"] <= MAX_STORED_ROW_ERRORS:
            self._pending_errors.append(error)
        self._flush()

    def note(self, text: str | None) -> None:
        """A few words shown after the progress figures in ``StatusDescription``."""
        self._note = text

    def take_row_errors(self) -> list[RowError]:
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
            try:
                self._cancelled = self._store.cancel_requested(self.job_id)
            except StoreUnavailable:  # Redis away: the job goes on; asked again next time
                logger.warning("cancel check of job %s skipped; Redis unavailable", self.job_id)
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
                + (f"; {self._note}" if self._note else "")
            )
        doc["UpdatedOn"] = utc_now()
        if self._estimate is not None:
            done = self._done if self._done is not None else doc["ProcessedCount"]
            forecast = self._estimate.observe(done, doc["RowCount"])
            doc["RetryAfter"], doc["EstimatedCompletionOn"] = forecast
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
