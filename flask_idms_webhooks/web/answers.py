"""What the routes answer: JSON bodies (stored bytes where the job store has them), a
job's 200 / 202 with ``Location`` and ``Retry-After``, errors in one shape."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

from flask import Response, request
from flask_smorest import abort
from werkzeug.datastructures import Headers
from werkzeug.sansio.utils import get_current_url
from werkzeug.urls import iri_to_uri

from ..errors import OutcomeUnknown, StoreUnavailable
from ..jobs.documents import JobDocument, RowError
from ..jobs.scheduler import ScheduleView
from ..jobs.store import dumps
from ..jobs.urls import WebhookUrls
from ..model.parameters import ParameterValue
from ..model.tasks import Task
from ..state import WebhooksState

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

#: Seconds a caller is asked to wait when Redis is unavailable.
STORE_RETRY_AFTER = 5


class TaskDocument(TypedDict):
    TaskId: str
    Name: str
    Description: str
    Webhooks: WebhookUrls
    QueryParameters: list[dict[str, Any]]
    BodyTemplate: dict[str, Any]
    Schedule: ScheduleView | None
    CallbackSecret: str
    Concurrency: str
    RequireSignature: bool


class ExecuteAnswer(TypedDict):
    ExecuteId: str
    TaskId: str
    Status: str


class ValidateAnswer(TypedDict):
    TaskId: str
    QueryParameters: dict[str, ParameterValue]


def refuse(code: int, message: str | None = None, **extra: Any) -> NoReturn:
    """Answer an HTTP error in flask-smorest's one error shape (``abort``)."""
    if message is not None:
        extra["message"] = message
    abort(code, **extra)
    raise AssertionError("unreachable")  # pragma: no cover (abort raises)


def json_answer(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer of bytes already serialised."""
    return Response(body, status=status, headers=headers, mimetype="application/json")


# -- kept for speed, measured (docs/performance.rst): the two steps of the hot paths that
# cost the most for what they do, each held to Werkzeug's own result by a test.


@functools.lru_cache(maxsize=64)
def _root_uri(scheme: str, host: str, root_path: str) -> str:
    return iri_to_uri(get_current_url(scheme, host, root_path))


def request_root() -> str:
    """The request's root URL (Werkzeug's ``request.root_url``) as a URI. Werkzeug builds
    it as a URI, turns it into an IRI, and a URI again costs as much: converted once per
    origin. ``request.host`` is Werkzeug's, checked against ``TRUSTED_HOSTS`` every time."""
    return _root_uri(request.scheme, request.host, request.root_path)


class PollAnswer(Response):
    """A queued or running job's 202: its ``Location`` (the PollingUrl, a URI already)
    and ``Retry-After`` are added as it is sent, so Werkzeug neither converts the URI
    again nor rewrites the header list twice, on every trigger and poll."""

    default_mimetype = "application/json"

    def __init__(self, body: bytes, document: JobDocument) -> None:
        super().__init__(body, status=202)
        # Not ``self.location`` / ``self.retry_after``: those are Werkzeug's header properties.
        self._poll = poll_headers(document)

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        headers = super().get_wsgi_headers(environ)
        headers.extend(self._poll)
        return headers


def poll_headers(document: JobDocument) -> dict[str, str]:
    """``Location`` and ``Retry-After`` of a queued or running job."""
    return {"Location": document["PollingUrl"], "Retry-After": str(document["RetryAfter"])}


def job_answer(body: bytes, finished: bool, document: JobDocument) -> Response:
    """200 with a finished document; 202 with Location and Retry-After while it runs."""
    if finished:
        return json_answer(body, 200)
    return PollAnswer(body, document)


def store_unavailable_answer(error: StoreUnavailable) -> Response:
    """503 with ``Retry-After``, saying what is known of the request's effect: nothing
    happened (Redis unreachable or refusing writes), or the outcome is unknown (the
    writes were sent and no answer came); a new job's then carries where to look."""
    body: dict[str, Any] = {"code": 503, "status": "Service Unavailable"}
    if isinstance(error, OutcomeUnknown):
        body["message"] = (
            "The job store (Redis) did not answer after the job was sent: it may have "
            "started. Poll its PollingUrl to see (a 404 right after a Redis pause is not "
            "final yet), or retry with the same Idempotency-Key."
        )
        body.update(Outcome="Unknown", ExecuteId=error.execute_id, PollingUrl=error.polling_url)
    elif error.sent:
        body["message"] = "The job store (Redis) did not answer; retry later."
        body["Outcome"] = "Unknown"
    else:
        body["message"] = "The job store (Redis) is unavailable; nothing changed. Retry later."
        body["Outcome"] = "NotStarted"
    return json_answer(dumps(body), 503, {"Retry-After": str(STORE_RETRY_AFTER)})


def bad_query_string_answer() -> Response:
    body = {"code": 400, "status": "Bad Request", "message": "The query string is not UTF-8."}
    return json_answer(dumps(body), 400)


def execute_answer(document: JobDocument) -> ExecuteAnswer:
    return {"ExecuteId": document["ExecuteId"], "TaskId": document["TaskId"], "Status": "queued"}


def task_documents(state: WebhooksState, base: str, tasks: list[Task]) -> list[TaskDocument]:
    """The tasks' documents, their schedules read in one round trip."""
    schedules = state.scheduler.views_of(tasks)
    return [task_document(state, base, task, schedules[task.id]) for task in tasks]


def task_document(
    state: WebhooksState, base: str, task: Task, schedule: ScheduleView | None
) -> TaskDocument:
    parameters = state.parameters[task.id]
    return {
        "TaskId": task.id,
        "Name": task.name or task.id,
        "Description": task.description,
        "Webhooks": state.urls.webhooks(base, task),
        "QueryParameters": parameters.describe(),
        "BodyTemplate": parameters.body_template(),
        "Schedule": schedule,
        "CallbackSecret": state.credentials.callback_secret(task),
        "Concurrency": str(task.concurrency),
        "RequireSignature": task.require_signature,
    }


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def row_errors_csv(job_id: str, errors: Iterable[RowError]) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Row", "Message"])
    for error in errors:
        writer.writerow([error["Row"], spreadsheet_safe(error["Message"])])
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{job_id}-errors.csv"'},
    )
