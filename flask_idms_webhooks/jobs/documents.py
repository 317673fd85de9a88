"""The job status document: its shape, statuses, a new job's document, its sealed form."""

from __future__ import annotations

import calendar
import secrets
import time
from collections.abc import Mapping
from typing import Any, TypedDict

from ..model.parameters import ParameterValue, ResolvedParameter
from ..model.tasks import Concurrency, Task

QUEUED = "queued"
IN_PROGRESS = "in progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

#: How a job was started (its document's ``Trigger``).
WEBHOOK = "webhook"
SCHEDULE = "schedule"
CLI = "cli"
CHAIN = "chain"


class RowError(TypedDict):
    """A source row that could not be written."""

    Row: int
    Message: str


class JobError(TypedDict):
    """Why a job did not succeed."""

    Type: str
    Message: str


class ChainEntry(TypedDict):
    """A task chained to a finished job: its job, or why it did not start."""

    TaskId: str
    ExecuteId: str | None
    PollingUrl: str | None
    Error: str | None


class AttemptRecord(TypedDict):
    """An earlier run of a job that was retried: when it ran and why it ended."""

    Attempt: int
    StartedOn: str | None
    EndedOn: str
    Error: JobError


class JobDocument(TypedDict):
    """The job status document (HTTP-CONTRACT.md): what a poll answers, as stored."""

    ExecuteId: str
    TaskId: str
    Status: str
    StatusDescription: str
    Success: bool | None
    PercentComplete: int
    RowCount: int | None
    ProcessedCount: int
    InsertedCount: int
    UpdatedCount: int
    SkippedCount: int
    ErrorCount: int
    DeletedCount: int
    Errors: list[RowError]
    QueryParameters: dict[str, ParameterValue]
    CreatedOn: str
    StartedOn: str | None
    UpdatedOn: str
    CompletedOn: str | None
    PollingUrl: str
    #: Seconds a poller waits: the task's while queued, the estimated time left (clamped)
    #: while running.
    RetryAfter: int
    #: When a running job should end at the rate it shows (None: queued, finished, or no
    #: rate yet; absent in an earlier release's record).
    EstimatedCompletionOn: str | None
    Chain: list[ChainEntry]
    Error: JobError | None
    #: The current run, from 1; the counts are this run's. (A record an earlier release
    #: wrote has neither field: attempt 1, no earlier ones.)
    Attempt: int
    Attempts: list[AttemptRecord]
    #: How it was started: webhook, schedule, cli or chain (absent in an earlier
    #: release's record).
    Trigger: str
    #: A scheduled run's due time (its schedule's RecentRuns name it too); else None.
    DueOn: str | None
    #: Where its completion callback goes, without its query (which may hold a
    #: credential) and fragment; None without one (absent in an earlier release's record).
    CallbackUrl: str | None


#: Why a job ended other than by succeeding: (error type, message).
Cause = tuple[str, str]


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


#: The length of a job id: 128 random bits, URL-safe base64.
JOB_ID_LENGTH = 22


def new_job_id() -> str:
    """128 random bits, URL-safe, never starting with ``-`` (a command line would read
    ``jobs show -Xa3k...`` as an option: one id in 64 did)."""
    while True:
        job_id = secrets.token_urlsafe(16)
        if not job_id.startswith("-"):
            return job_id


def new_document(
    *,
    job_id: str,
    task_id: str,
    parameters: Mapping[str, ResolvedParameter],
    polling_url: str,
    retry_after: int,
    trigger: str = WEBHOOK,
    due_on: str | None = None,
    callback_url: str | None = None,
) -> JobDocument:
    now = utc_now()
    return {
        "ExecuteId": job_id,
        "TaskId": task_id,
        "Status": QUEUED,
        "StatusDescription": "Queued",
        **not_run(now),
        "QueryParameters": {key: value.as_document() for key, value in parameters.items()},
        "CreatedOn": now,
        "PollingUrl": polling_url,
        "RetryAfter": retry_after,
        "Chain": [],
        "Attempt": 1,
        "Attempts": [],
        "Trigger": trigger,
        "DueOn": due_on,
        "CallbackUrl": callback_url,
    }


def joins(task: Task, running: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a trigger that ``wanted`` a job follows the ``running`` one instead: its
    task joins (``concurrency = "join"``) and the two work with the same values, wherever
    each came from."""

    def values(document: Mapping[str, Any]) -> dict[str, Any]:
        return {key: value["Value"] for key, value in document["QueryParameters"].items()}

    return task.concurrency is Concurrency.JOIN and values(running) == values(wanted)


class AttemptFields(TypedDict):
    """The fields of a document that are an attempt's own: its outcome and counts."""

    Success: bool | None
    PercentComplete: int
    RowCount: int | None
    ProcessedCount: int
    InsertedCount: int
    UpdatedCount: int
    SkippedCount: int
    ErrorCount: int
    DeletedCount: int
    Errors: list[RowError]
    StartedOn: str | None
    UpdatedOn: str
    CompletedOn: str | None
    Error: JobError | None
    EstimatedCompletionOn: str | None


def not_run(now: str) -> AttemptFields:
    """The fields of an attempt that has not run yet: no outcome, no counts."""
    return {
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
        "StartedOn": None,
        "UpdatedOn": now,
        "CompletedOn": None,
        "Error": None,
        "EstimatedCompletionOn": None,
    }


def retried(document: JobDocument, cause: Cause, *, attempts: int, at: float) -> JobDocument:
    """The document of a job to run again at ``at`` (epoch seconds) after its current
    attempt ended with ``cause``: queued, the counts of the next attempt (none yet), the
    ended attempt in ``Attempts``."""
    attempt = int(document.get("Attempt", 1))
    now = utc_now()
    ended: AttemptRecord = {
        "Attempt": attempt,
        "StartedOn": document.get("StartedOn"),
        "EndedOn": now,
        "Error": {"Type": cause[0], "Message": cause[1]},
    }
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    return {
        **document,
        "Status": QUEUED,
        "StatusDescription": (
            f"Attempt {attempt} of {attempts} ended ({cause[0]}: {cause[1]}); retrying at {when}"
        ),
        **not_run(now),
        "Attempt": attempt + 1,
        "Attempts": [*document.get("Attempts", []), ended],
    }


def finish(document: JobDocument, status: str, error: Cause | None = None) -> JobDocument:
    """The sealed form of a document: only a succeeded job reaches 100 %."""
    now = utc_now()
    document = document.copy()
    document["Status"] = status
    document["Success"] = status == SUCCEEDED
    document["UpdatedOn"] = now
    document["CompletedOn"] = now
    document["EstimatedCompletionOn"] = None
    if status == SUCCEEDED:
        document["PercentComplete"] = 100
        document["StatusDescription"] = f"Success: processed {document['ProcessedCount']} records"
    else:
        document["PercentComplete"] = min(int(document["PercentComplete"]), 99)
        type_, message = error or ("Error", "The job failed.")
        document["Error"] = {"Type": type_, "Message": message}
        document["StatusDescription"] = f"{status.capitalize()}: {message}"
    return document


WORKER_DIED: Cause = ("WorkerDied", "The worker running this job died (no heartbeat).")
HORSE_DIED: Cause = ("WorkerDied", "The worker process running this job ended unexpectedly.")
CANCELLED_BY_REQUEST: Cause = ("Cancelled", "Cancelled by request.")


class Outcome(TypedDict):
    """How one dispatch of a job ended: its status, and its error's message if any."""

    Status: str
    Error: str | None


def outcome(document: JobDocument) -> Outcome:
    error = document.get("Error")
    return {"Status": document["Status"], "Error": error.get("Message") if error else None}


def duration(document: Mapping[str, Any]) -> int | None:
    """Whole seconds from a job's start to its end; None if it never started."""
    started, ended = document.get("StartedOn"), document.get("CompletedOn")
    if not started or not ended:
        return None
    form = "%Y-%m-%dT%H:%M:%SZ"
    end, start = time.strptime(ended, form), time.strptime(started, form)
    return calendar.timegm(end) - calendar.timegm(start)


def finished_line(document: JobDocument) -> tuple[str, dict[str, Any]]:
    """The log line of a job just sealed, and its fields (for JSON lines): task, job,
    status, counts, duration and rows per second."""
    seconds = duration(document)
    processed = document.get("ProcessedCount", 0)
    rate = processed / seconds if seconds else None
    counts = {name: document.get(f"{name}Count", 0) for name in COUNTED}
    fields = {
        "task_id": document["TaskId"],
        "job_id": document["ExecuteId"],
        "status": document["Status"],
        "counts": counts,
        "duration_seconds": seconds,
        "rows_per_second": round(rate, 1) if rate is not None else None,
    }
    took = "" if seconds is None else f" in {seconds} s" + (f", {rate:.1f} rows/s" if rate else "")
    listed = ", ".join(f"{counts[name]} {label}" for name, label in LABELS.items())
    message = (
        f"job {document['ExecuteId']} of task {document['TaskId']} {document['Status']}:"
        f" {processed} processed ({listed}){took}"
    )
    return message, fields


#: The counts of a job, in the order a log line shows them.
COUNTED = ("Processed", "Inserted", "Updated", "Skipped", "Error", "Deleted")
#: The counts after Processed, as a log line names them.
LABELS = {
    "Inserted": "inserted",
    "Updated": "updated",
    "Skipped": "skipped",
    "Error": "errors",
    "Deleted": "deleted",
}
