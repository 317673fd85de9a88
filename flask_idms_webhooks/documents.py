"""The job status document: statuses, a new job's document, and its sealed form."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

from .parameters import ResolvedParameter
from .store import Document

QUEUED = "queued"
IN_PROGRESS = "in progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
