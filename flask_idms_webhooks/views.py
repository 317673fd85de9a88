"""The HTTP layer: routes, credentials, status codes and headers. No business rules."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from flask import Response, current_app, request
from flask_smorest import abort
from flask_smorest.error_handler import ErrorSchema
from marshmallow import ValidationError
from webargs import core
from werkzeug.datastructures import Headers
from werkzeug.urls import iri_to_uri

from .bodies import HardenedBlueprint, parse_json_body
from .errors import ParameterError, StoreUnavailable
from .schemas import (
    ExecuteSchema,
    JobListArgsSchema,
    JobListSchema,
    JobSchema,
    TaskSchema,
    TriggerBodySchema,
    ValidateSchema,
    plainly_valid_trigger_body,
)
from .security import presented_task_key
from .store import Document, dumps, loads
from .tasks import Task

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from .extension import WebhooksState

F = TypeVar("F", bound=Callable[..., Any])

STORE_RETRY_AFTER = 5
MAX_IDEMPOTENCY_KEY = 255
LOCATION_HEADER = {
    "description": "Absolute URL of the job's poll endpoint, with its read-only job token.",
    "schema": {"type": "string", "format": "uri"},
}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before polling again (an integer).",
    "schema": {"type": "integer"},
}
POLL_HEADERS = {"Location": LOCATION_HEADER, "Retry-After": RETRY_AFTER_HEADER}
ERROR_DESCRIPTIONS = {
    400: "Malformed JSON, or a malformed header.",
    401: "Missing or wrong credentials.",
    404: "No such task or job (or the job's record has expired).",
    409: "The job has already finished.",
    413: "The body is larger than IDMS_WEBHOOKS_MAX_BODY_SIZE.",
    415: "A non-empty body that is not application/json.",
    422: "Invalid QueryParameters (unknown, ambiguous, wrong type, or a Required one missing).",
}


def documented_errors(*codes: int, store: bool = True) -> Callable[[F], F]:
    """Document error answers in flask-smorest's error shape; with ``store`` (the route
    reads or writes Redis) also 503 with Retry-After."""

    def decorate(view: F) -> F:
        for code in codes:
            view = blp.alt_response(code, schema=ErrorSchema, description=ERROR_DESCRIPTIONS[code])(
                view
            )
        if not store:
            return view
        return blp.alt_response(  # type: ignore[no-any-return]
            503,
            schema=ErrorSchema,
            description="Redis (the job store) is unreachable or stalled; retry later.",
            headers={"Retry-After": RETRY_AFTER_HEADER},
        )(view)

    return decorate


blp = HardenedBlueprint(
    "idms_webhooks",
    __name__,
    description="Start iDMS tasks by webhook and follow their jobs to the end.",
)


TRIGGER_BODY_SCHEMA = TriggerBodySchema()

IDEMPOTENCY_KEY_DOC = blp.doc(
    parameters=[
        {
            "in": "header",
            "name": "Idempotency-Key",
            "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY},
            "description": "A repeat with the same key and body returns the first answer.",
        }
    ]
)


#: OpenAPI security schemes (registered by the extension), so "Authorize" in Swagger UI works.
SECURITY_SCHEMES = {
    "IdmsBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The task key (webhooks, poll, cancel) or the admin token (admin routes).",
    },
    "IdmsWebhookKey": {"type": "apiKey", "in": "header", "name": "X-Webhook-Key"},
    "IdmsKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
    "IdmsJobToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The job's read-only token, part of its Location / PollingUrl.",
    },
}
TASK_KEY: list[dict[str, list[str]]] = [
    {"IdmsBearer": []},
    {"IdmsWebhookKey": []},
    {"IdmsKeyQuery": []},
]
ADMIN_ONLY = blp.doc(security=[{"IdmsBearer": []}])
TASK_KEY_ONLY = blp.doc(security=TASK_KEY)
JOB_READER = blp.doc(security=[{"IdmsJobToken": []}, *TASK_KEY])


def state() -> WebhooksState:
    return current_app.extensions["idms_webhooks"]  # type: ignore[no-any-return]


def guarded(check: Callable[[], None]) -> Callable[[F], F]:
    """Credentials first, before the body or the query is even read: an unknown task is
    404, a wrong key 401, whatever the request holds. Put it right under ``blp.route``,
    above flask-smorest's parsing decorators. (The hot routes check credentials first
    thing in the view, which reads its body itself.)"""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            request.max_content_length = state().settings.max_body_size
            check()
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


def admin_of_task() -> None:
    require_admin()
    task_id = (request.view_args or {}).get("task_id")
    if task_id is not None:
        known_task(task_id)


def key_of_task() -> None:
    require_task_key(known_task((request.view_args or {}).get("task_id") or ""))


@blp.errorhandler(StoreUnavailable)
def store_unavailable(error: StoreUnavailable) -> Response:
    current_app.logger.warning("idms-webhooks: Redis unavailable: %s", error)
    body = {
        "code": 503,
        "status": "Service Unavailable",
        "message": "The job store (Redis) is unavailable; retry later.",
    }
    return json_response(dumps(body), 503, {"Retry-After": str(STORE_RETRY_AFTER)})


@blp.errorhandler(UnicodeDecodeError)
def undecodable_query(error: UnicodeDecodeError) -> Response:
    """A raw byte that is not UTF-8 in the query string (a server passes it through as
    is) makes Werkzeug's ``request.args`` raise: that is the caller's error, a 400."""
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        body = {"code": 400, "status": "Bad Request", "message": "The query string is not UTF-8."}
        return json_response(dumps(body), 400)
    raise error


# -- credentials ----------------------------------------------------------------------


def unauthorized(message: str) -> Any:
    abort(401, message=message, headers={"WWW-Authenticate": 'Bearer realm="idms-webhooks"'})


def require_admin() -> None:
    current = state()
    if not current.credentials.admin_configured:
        unauthorized("Admin routes are disabled: IDMS_WEBHOOKS_ADMIN_TOKEN is not set.")
    if not current.credentials.check_admin(request):
        unauthorized("A valid admin token is required (Authorization: Bearer <token>).")


def known_task(task_id: str, current: WebhooksState | None = None) -> Task:
    task = (current or state()).tasks.get(task_id)
    if task is None:
        abort(404, message=f"No task {task_id!r}.")
    return task  # type: ignore[return-value]


def require_task_key(task: Task, current: WebhooksState | None = None) -> None:
    if not (current or state()).credentials.check_task_key(task, presented_task_key(request)):
        unauthorized(
            "A valid task key is required: Authorization: Bearer <key>, "
            "X-Webhook-Key: <key>, or ?key=<key>."
        )


def base_url(current: WebhooksState) -> str:
    """The root of the URLs we hand out, as a URI (a job's PollingUrl is built on it):
    ``IDMS_WEBHOOKS_PUBLIC_URL``, else the request's own root."""
    if current.settings.public_url:
        return as_uri(current.settings.public_url)
    environ = request.environ
    # Werkzeug rebuilds url_root from these on every access (an IRI, converted back here).
    origin = (
        environ.get("wsgi.url_scheme"),
        environ.get("HTTP_HOST"),
        environ.get("SERVER_NAME"),
        environ.get("SERVER_PORT"),
        environ.get("SCRIPT_NAME"),
    )
    root = current.request_roots.get(origin)
    if root is None:
        root = as_uri(request.url_root)  # checks TRUSTED_HOSTS: refused hosts never get here
        if len(current.request_roots) >= MAX_REMEMBERED_ROOTS:
            current.request_roots.clear()
        current.request_roots[origin] = root
    return root


MAX_REMEMBERED_ROOTS = 64

#: ``token=<URL-safe token>``, the whole query of a PollingUrl.
PLAIN_TOKEN_QUERY = re.compile(r"token=([A-Za-z0-9_-]*)")


@functools.lru_cache(maxsize=MAX_REMEMBERED_ROOTS)
def as_uri(url: str) -> str:
    return iri_to_uri(url)


def given_job_token() -> str | None:
    """The ``?token=`` of the request. A query of that one parameter (the PollingUrl as we
    hand it out) is read as is, without building ``request.args``."""
    plain = PLAIN_TOKEN_QUERY.fullmatch(request.environ.get("QUERY_STRING", ""))
    if plain is not None:
        return plain[1]
    return request.args.get("token")


# -- documents ------------------------------------------------------------------------


def task_document(task: Task) -> dict[str, Any]:
    current = state()
    key = quote(current.credentials.task_key(task), safe="")
    root = f"{base_url(current).rstrip('/')}{current.settings.url_prefix}/tasks/{task.id}"
    parameters = current.parameters[task.id]
    return {
        "TaskId": task.id,
        "Name": task.name or task.id,
        "Description": task.description,
        "Webhooks": {"Standard": f"{root}/execute?key={key}", "Polling": f"{root}/jobs?key={key}"},
        "QueryParameters": parameters.describe(),
        "BodyTemplate": parameters.body_template(),
    }


class JsonAnswer(Response):
    """A JSON answer. A queued or running job's ``Location`` and ``Retry-After`` (``poll``)
    are added as it is sent, in ``get_wsgi_headers``: the Location is already a URI (built
    on ``base_url``), so Werkzeug's IRI conversion of it, and two rewrites of the header
    list, are skipped on every poll and trigger."""

    default_mimetype = "application/json"

    def __init__(
        self, body: bytes, status: int, poll: tuple[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(body, status=status, **kwargs)
        self.poll = poll

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        headers = super().get_wsgi_headers(environ)
        if self.poll is not None:
            headers.add("Location", self.poll[0])
            headers.add("Retry-After", self.poll[1])
        return headers


def json_response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return JsonAnswer(body, status, headers=headers)


def find_job(job_id: str, current: WebhooksState | None = None) -> tuple[bytes, bool, Document]:
    """(document bytes, finished, document) of a job; 404 once it is gone."""
    found = (current or state()).jobs.current(job_id)
    if found is None:
        abort(404, message="No such job, or its record has expired.")
    body, finished, document = found  # type: ignore[misc]
    return body, finished, document if document is not None else loads(body)


def read_job(job_id: str) -> tuple[bytes, bool, Document]:
    """A job as its reader may see it: with its job token (checked first, without a Redis
    read), or with its task's key."""
    current = state()
    token = given_job_token()
    if token is not None:
        if not current.credentials.check_job_token(job_id, token):
            unauthorized("This job token is not valid for this job.")
        return find_job(job_id, current)
    if presented_task_key(request) is None:
        unauthorized("A job token (?token=) or the task's key is required.")
    found = find_job(job_id)
    require_job_task_key(found[2])
    return found


def require_job_task_key(document: Document) -> None:
    task = state().tasks.get(document["TaskId"])
    if task is None or not state().credentials.check_task_key(task, presented_task_key(request)):
        unauthorized("The key is not valid for this job's task.")


def job_response(body: bytes, finished: bool, document: Document) -> Response:
    """200 with a finished document; 202 with Location and Retry-After while it runs."""
    if finished:
        return JsonAnswer(body, 200)
    return JsonAnswer(body, 202, poll=poll_headers(document))


def poll_headers(document: Document) -> tuple[str, str]:
    """(Location, Retry-After) of a queued or running job."""
    return document["PollingUrl"], str(document["RetryAfter"])


# -- starting jobs --------------------------------------------------------------------


def resolve_parameters(
    task: Task, body: dict[str, Any], current: WebhooksState | None = None
) -> Any:
    try:
        return (current or state()).parameters[task.id].resolve(body.get("QueryParameters"))
    except ParameterError as error:
        abort(
            422,
            message="Invalid QueryParameters.",
            errors={"json": {"QueryParameters": error.errors}},
        )


def idempotency_scope(task: Task, route: str, body: dict[str, Any]) -> tuple[str, str] | None:
    """(claim key, body hash) for a request with an ``Idempotency-Key``, else None."""
    given = request.headers.get("Idempotency-Key")
    if given is None:
        return None
    if not given.strip() or len(given) > MAX_IDEMPOTENCY_KEY:
        abort(400, message=f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    key_hash = hashlib.sha256(given.encode()).hexdigest()
    body_hash = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return f"{task.id}:{route}:{key_hash}", body_hash


def replay(claimed: Document, body_hash: str) -> Response:
    if claimed["BodyHash"] != body_hash:
        abort(
            422,
            message="This Idempotency-Key was used with a different body; use a new key.",
        )
    store = state().store
    # The first request may still be writing its record: wait for it, briefly.
    for _ in range(20):
        if store.exists(claimed["ExecuteId"]):
            break
        time.sleep(0.05)
    headers = claimed.get("Headers") or {}
    return json_response(claimed["Body"].encode(), claimed["Status"], headers)


def start_job(current: WebhooksState, task: Task, body: dict[str, Any], route: str) -> Response:
    """Start a job (or replay the first answer of an ``Idempotency-Key``)."""
    parameters = resolve_parameters(task, body, current)
    scope = idempotency_scope(task, route, body)
    document = current.jobs.prepare(task, parameters, base_url(current))
    record = dumps(document)
    if route == "polling":
        status, answer, poll = 202, record, poll_headers(document)
    else:
        status, answer, poll = 200, dumps(execute_answer(document)), None
    claim_key = None
    if scope is not None:
        claim_key, body_hash = scope
        claimed = current.store.claim(
            claim_key,
            {
                "ExecuteId": document["ExecuteId"],
                "BodyHash": body_hash,
                "Status": status,
                "Headers": {"Location": poll[0], "Retry-After": poll[1]} if poll else {},
                "Body": answer.decode(),
            },
        )
        if claimed is not None:
            return replay(claimed, body_hash)
    current.jobs.submit(task, document, claim_key=claim_key, body=record)
    return JsonAnswer(answer, status, poll=poll)


def execute_answer(document: Document) -> Document:
    return {"ExecuteId": document["ExecuteId"], "TaskId": document["TaskId"], "Status": "queued"}


# -- routes ---------------------------------------------------------------------------
# The webhooks and the poll are the hot paths: they are documented with flask-smorest's
# decorators (see ``documented``) but parse and answer by themselves, with the same
# schemas and error shapes, and answer pre-serialised bytes.


def documented(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """flask-smorest's documentation decorators, without their wrappers at run time.

    ``blp.arguments`` and ``blp.response`` wrap a view in layers that parse, dump and
    re-check it on every request; on a hot route they cost more than the route's own
    work. The documentation they build (``_apidoc``) is kept on the bare view.
    """

    def decorate(view: F) -> F:
        twin: Any = view
        for decorator in reversed(decorators):
            twin = decorator(twin)
        view._apidoc = twin._apidoc  # type: ignore[attr-defined]
        return view

    return decorate


def trigger_body(current: WebhooksState) -> dict[str, Any]:
    """A webhook's body, validated by ``TriggerBodySchema`` (the documented one); an
    empty body is ``{}``. Aborts as the other routes do: 4xx before anything changes."""
    request.max_content_length = current.settings.max_body_size
    body = parse_json_body(request)
    if body is core.missing:
        return {}
    if plainly_valid_trigger_body(body):
        return body  # type: ignore[no-any-return]
    try:
        return TRIGGER_BODY_SCHEMA.load(body)  # type: ignore[no-any-return]
    except ValidationError as error:
        abort(422, errors={"json": error.messages})
        raise  # pragma: no cover (abort raises)


def trigger(task_id: str, route: str) -> Response:
    current = state()
    task = known_task(task_id, current)
    require_task_key(task, current)
    return start_job(current, task, trigger_body(current), route)


@blp.route("/tasks")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.response(200, TaskSchema(many=True))
@documented_errors(401, store=False)
def list_tasks() -> Any:
    """List the tasks (admin)."""
    return [task_document(task) for task in state().tasks.values()]


@blp.route("/tasks/<task_id>")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.response(200, TaskSchema)
@documented_errors(401, 404, store=False)
def get_task(task_id: str) -> Any:
    """A task's webhook URLs (with its key), parameters and body template (admin)."""
    return task_document(known_task(task_id))


def webhook_docs(response: Callable[[Any], Any]) -> Callable[[F], F]:
    """The documentation both webhooks share, around each one's success ``response``."""
    return documented(
        TASK_KEY_ONLY,
        blp.arguments(TriggerBodySchema, required=False),
        response,
        IDEMPOTENCY_KEY_DOC,
        documented_errors(400, 401, 404, 413, 415, 422),
    )


@blp.route("/tasks/<task_id>/execute", methods=["POST"])
@webhook_docs(blp.response(200, ExecuteSchema))
def execute(task_id: str) -> Response:
    """Standard webhook: start a job, fire-and-forget (200 once it is queued)."""
    return trigger(task_id, "standard")


@blp.route("/tasks/<task_id>/jobs", methods=["GET"])
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.arguments(JobListArgsSchema, location="query")
@blp.response(200, JobListSchema)
@documented_errors(401, 404, 422)
def list_jobs(args: dict[str, int], task_id: str) -> Any:
    """Recent jobs of a task, newest first, paginated (admin)."""
    task = known_task(task_id)
    page, page_size = args["page"], args["page_size"]
    total, documents = state().store.history(task.id, (page - 1) * page_size, page_size)
    return {
        "TaskId": task.id,
        "Page": page,
        "PageSize": page_size,
        "Total": total,
        "Jobs": [loads(document) for document in documents],
    }


@blp.route("/tasks/<task_id>/jobs", methods=["POST"])
@webhook_docs(blp.response(202, JobSchema, headers=POLL_HEADERS))
def polling_webhook(task_id: str) -> Response:
    """Asynchronous polling webhook: 202 with an absolute Location to poll."""
    return trigger(task_id, "polling")


@blp.route("/tasks/<task_id>/validate", methods=["POST"])
@guarded(key_of_task)
@TASK_KEY_ONLY
@blp.arguments(TriggerBodySchema, required=False)
@blp.response(200, ValidateSchema)
@documented_errors(400, 401, 404, 413, 415, 422, store=False)
def validate(body: dict[str, Any], task_id: str) -> Any:
    """Resolve QueryParameters as a job would receive them; nothing is started."""
    task = known_task(task_id)
    parameters = resolve_parameters(task, body)
    return {
        "TaskId": task.id,
        "QueryParameters": {key: value.as_document() for key, value in parameters.items()},
    }


@blp.route("/jobs/<job_id>", methods=["GET"])
@documented(
    JOB_READER,
    blp.response(200, JobSchema, description="The job has finished (whatever its outcome)."),
    blp.alt_response(
        202,
        schema=JobSchema,
        description="The job is queued or running: poll Location again after Retry-After.",
        headers=POLL_HEADERS,
        success=True,
    ),
    documented_errors(401, 404),
)
def poll_job(job_id: str) -> Response:
    """Poll a job: 202 while queued or running, then 200 with the final document."""
    plain = PLAIN_TOKEN_QUERY.fullmatch(request.environ.get("QUERY_STRING", ""))
    if plain is None:  # a key, or a query with more in it: the general path
        return job_response(*read_job(job_id))
    # The PollingUrl as handed out: the commonest request there is, in as few steps.
    current = state()
    if not current.credentials.check_job_token(job_id, plain[1]):
        unauthorized("This job token is not valid for this job.")
    return job_response(*find_job(job_id, current))


@blp.route("/jobs/<job_id>", methods=["DELETE"])
@TASK_KEY_ONLY
@blp.response(202, JobSchema, description="Cancellation requested (a queued job is cancelled).")
@documented_errors(401, 404, 409)
def cancel_job(job_id: str) -> Any:
    """Cancel a queued or running job (task key or admin token)."""
    current = state()
    is_admin = current.credentials.admin_configured and current.credentials.check_admin(request)
    if not is_admin and presented_task_key(request) is None:
        unauthorized("The task's key or an admin token is required.")
    _, finished, document = find_job(job_id)
    if not is_admin:
        require_job_task_key(document)
    if finished:
        abort(409, message="The job has already finished.", errors={"Job": document})
    return json_response(current.jobs.cancel(job_id, document), 202)


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@blp.route("/jobs/<job_id>/errors.csv")
@JOB_READER
@blp.response(
    200,
    {"type": "string"},
    content_type="text/csv",
    description="Every row error of the job (up to 10,000): columns Row, Message.",
)
@documented_errors(401, 404)
def job_errors(job_id: str) -> Any:
    """Download a job's row errors as CSV (job token or task key)."""
    read_job(job_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Row", "Message"])
    for error in state().store.row_errors(job_id):
        writer.writerow([error["Row"], spreadsheet_safe(error["Message"])])
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{job_id}-errors.csv"'},
    )
