"""The OpenAPI side: documented errors and headers, operation ids, security schemes,
each app's task examples, the standalone ``Api`` and Swagger UI's assets served by the
app (the docs work offline)."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any, TypeVar

from apispec import BasePlugin
from flask import Blueprint, Flask, send_from_directory
from flask_smorest import Api
from werkzeug.routing import Rule

from ..config import PREFIX, Settings
from ..state import WebhooksState
from .blueprint import blp
from .schemas import (
    MAX_IDEMPOTENCY_KEY,
    IdmsErrorSchema,
    IdmsStoreUnavailableSchema,
    IdmsTriggerBodySchema,
)

F = TypeVar("F", bound=Callable[..., Any])

#: The OpenAPI tag of every operation of the extension.
TAG = {"name": "iDMS webhooks", "description": blp.description}
#: The standalone document's ``info.description`` (a host's document keeps its own).
API_DESCRIPTION = (
    "Start iDMS-style data-sync tasks over HTTP and follow each job to its end. "
    "`POST /tasks/{task_id}/jobs` answers 202 with a `Location` to poll until it answers "
    "200; `POST /tasks/{task_id}/execute` starts a job and forgets it. Authorize with a "
    "task's key (Bearer, X-Webhook-Key or ?key=) for its webhooks, with the admin token "
    "(Bearer) for the admin routes; when several are sent, any one valid for the route "
    "opens it. `GET /tasks/{task_id}` shows a task's webhook URLs and body template."
)
#: The views whose body is a task's QueryParameters (examples: each task's BodyTemplate).
TASK_BODY_VIEWS = ("execute", "polling_webhook", "validate")

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
    422: (
        "Invalid QueryParameters (unknown, ambiguous, wrong type, or a Required one missing), "
        "or a CallbackUrl this server does not send callbacks to."
    ),
    429: (
        "Too many failed credentials from this client address "
        "(IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT): a failing request gets 429 instead of 401 until "
        "Retry-After; valid credentials still pass."
    ),
}
LIMIT_RETRY_AFTER_HEADER = {
    "description": "Seconds until the limit frees a slot (an integer).",
    "schema": {"type": "integer"},
}

#: OpenAPI security schemes (registered by the extension), so "Authorize" in Swagger UI works.
SECURITY_SCHEMES = {
    "IdmsBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The task key (webhooks, poll, cancel) or the admin token (admin routes).",
    },
    "IdmsWebhookKey": {"type": "apiKey", "in": "header", "name": "X-Webhook-Key"},
    "IdmsBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "Any user name, the admin token as the password (admin GET routes).",
    },
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


def documented_errors(*codes: int, store: bool = True) -> Callable[[F], F]:
    """Document error answers in flask-smorest's error shape; with ``store`` (the route
    reads or writes Redis) also 503 with Retry-After. A route that checks credentials
    (401) may also answer 429 with Retry-After (``IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT``)."""

    def decorate(view: F) -> F:
        for code in codes:
            view = blp.alt_response(
                code, schema=IdmsErrorSchema, description=ERROR_DESCRIPTIONS[code]
            )(view)
        if 401 in codes:
            view = blp.alt_response(
                429,
                schema=IdmsErrorSchema,
                description=ERROR_DESCRIPTIONS[429],
                headers={"Retry-After": LIMIT_RETRY_AFTER_HEADER},
            )(view)
        if not store:
            return view
        documented_view: F = blp.alt_response(
            503,
            schema=IdmsStoreUnavailableSchema,
            description=(
                "Redis (the job store) is unreachable, stalled or refusing writes; retry "
                "later. `Outcome` says whether the request changed nothing (`NotStarted`) "
                "or may have (`Unknown`: a new job's then has its `ExecuteId` and "
                "`PollingUrl`)."
            ),
            headers={"Retry-After": RETRY_AFTER_HEADER},
        )(view)
        return documented_view

    return decorate


def limits_doc(description: str) -> Callable[[F], F]:
    """The 429 of a route with limits of its own, described: ``documented_errors`` lists
    it (with its schema and Retry-After) on every route that answers 401."""
    return blp.doc(responses={429: {"description": description}})  # type: ignore[no-any-return]


TRIGGERS_LIMITED = limits_doc(
    "Too many triggers of this task (IDMS_WEBHOOKS_RATE_LIMIT, or the task's rate_limit; "
    "nothing started, and a repeat of an Idempotency-Key still replays), or too many failed "
    "credentials from this client address (IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT). Retry after "
    "Retry-After seconds."
)
POLLS_LIMITED = limits_doc(
    "Too many polls from this client address (IDMS_WEBHOOKS_POLL_RATE_LIMIT), or too many "
    "failed credentials from it (IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT). Retry after Retry-After "
    "seconds."
)


def documented(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """flask-smorest's documentation decorators, without their wrappers at run time.

    ``blp.arguments`` and ``blp.response`` wrap a view in layers that parse, dump and
    re-check it on every request; on a hot route (the webhooks and the poll answer
    stored bytes) they cost more than the route's own work. The documentation they build
    (``_apidoc``, which flask-smorest reads when it registers the route) is kept on the
    bare view; ``tests/test_openapi.py`` breaks if flask-smorest stops working that way.
    """

    def decorate(view: F) -> F:
        twin: Any = view
        for decorator in reversed(decorators):
            twin = decorator(twin)
        view._apidoc = twin._apidoc  # type: ignore[attr-defined]
        return view

    return decorate


def operation(operation_id: str) -> Callable[[F], F]:
    """The route's OpenAPI ``operationId``, as ``blp.doc(operationId=...)`` sets it but
    without wrapping the view (the hot routes stay bare). Put it under ``blp.route``."""

    def decorate(view: F) -> F:
        apidoc = deepcopy(getattr(view, "_apidoc", {}))  # shared with what it wraps
        apidoc.setdefault("manual_doc", {})["operationId"] = operation_id
        view._apidoc = apidoc  # type: ignore[attr-defined]
        return view

    return decorate


def webhook_docs(response: Callable[[Any], Any]) -> Callable[[F], F]:
    """The documentation both webhooks share, around each one's success ``response``."""
    return documented(
        TASK_KEY_ONLY,
        TRIGGERS_LIMITED,
        blp.arguments(IdmsTriggerBodySchema, required=False),
        response,
        IDEMPOTENCY_KEY_DOC,
        documented_errors(400, 401, 404, 413, 415, 422),
        blp.alt_response(
            409,
            schema=IdmsErrorSchema,
            description=(
                "The task runs one job at a time (`concurrency` reject, or join with other "
                "QueryParameters) and a job of it is queued or running: nothing was "
                "started. `Location` (header, and `errors.Job.Location`) is that job's."
            ),
            headers=POLL_HEADERS,
        ),
    )


class StandaloneApi(Api):  # type: ignore[misc]
    """flask-smorest's ``Api``, keeping the headers an HTTP error carries (``Allow`` of a
    405, ``Retry-After`` of a 503), which its error handler otherwise drops, and giving
    every error body a ``message``."""

    def handle_http_exception(self, error: Any) -> Any:
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
            payload["message"] = (
                "Invalid request: see errors." if "errors" in payload else error.description
            )
        headers = dict(headers or {})
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                headers.setdefault(name, value)
        return payload, code, headers


def standalone_api(app: Flask, settings: Settings) -> Api:
    """An ``Api`` of the extension's own (the host gave none): ``{prefix}/openapi.json``
    and Swagger UI at ``{prefix}{DOCS_PATH}``."""
    defaults = {
        "API_TITLE": TAG["name"],
        "API_SPEC_OPTIONS": {"info": {"description": API_DESCRIPTION}},
        "API_VERSION": "1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": settings.url_prefix or "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": settings.docs_path,
        "OPENAPI_SWAGGER_UI_URL": f"{settings.url_prefix}/swagger-ui/",
    }
    for name, value in defaults.items():
        app.config.setdefault(PREFIX + name, value)
    return StandaloneApi(app, config_prefix=PREFIX)


def register_security_schemes(api: Api) -> None:
    for name, scheme in SECURITY_SCHEMES.items():
        if name not in api.spec.components.security_schemes:
            api.spec.components.security_scheme(name, scheme)


class AppOperations(BasePlugin):
    """An apispec plugin, in the spec only while the extension's blueprint registers
    (``register_documented``): it touches the extension's operations alone, with what
    only the app knows (the blueprint is module-level, the tasks are each app's). Every
    operation gets the human tag and an ``operationId`` (the view's ``operation``, else
    its name in camelCase); ``{task_id}`` gets the task ids as examples and the bodies
    of ``TASK_BODY_VIEWS`` each task's ``BodyTemplate`` (Swagger UI's "Try it out" then
    starts from a body the task accepts, not from ``additionalProp1``)."""

    def __init__(self, blueprint_name: str, state: WebhooksState) -> None:
        super().__init__()
        self.endpoint_prefix = f"{blueprint_name}."
        tasks = state.tasks.values()
        self.task_ids = {
            task.id: {"summary": task.name or task.id, "value": task.id} for task in tasks
        }
        self.bodies = {task.id: body_example(state, task.id) for task in tasks}

    def ours(self, rule: Rule | None) -> bool:
        return rule is not None and rule.endpoint.startswith(self.endpoint_prefix)

    def path_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        parameters: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.ours(kwargs.get("rule")) or not self.task_ids:
            return
        for parameter in parameters or ():
            if parameter.get("in") == "path" and parameter.get("name") == "task_id":
                parameter["examples"] = deepcopy(self.task_ids)

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule: Rule | None = kwargs.get("rule")
        if rule is None or not self.ours(rule):
            return
        view = rule.endpoint.partition(".")[2]
        for operation in (operations or {}).values():
            operation["tags"] = [TAG["name"]]
            operation.setdefault("operationId", camel_case(view))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if view in TASK_BODY_VIEWS and body is not None and self.bodies:
                body["examples"] = deepcopy(self.bodies)


def body_example(state: WebhooksState, task_id: str) -> dict[str, Any]:
    """A task's ``BodyTemplate`` as an OpenAPI example, saying what must be filled in."""
    parameters = state.parameters[task_id]
    to_fill = [
        row["Key"]
        for row in parameters.describe()
        if row["Prompt"] == "Required" and row["Default"] == "" and row["QueryDefault"] == ""
    ]
    description = "An empty string or null takes the parameter's default."
    if to_fill:
        description = f"Fill in {', '.join(to_fill)} (Required, no default). " + description
    return {
        "summary": state.tasks[task_id].name or task_id,
        "description": description,
        "value": parameters.body_template(),
    }


def camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def register_documented(
    api: Api, blueprint: Blueprint, state: WebhooksState, url_prefix: str
) -> None:
    """Register the extension's blueprint on ``api`` (the host's or its own), with its
    security schemes, its tag and this app's examples (``AppOperations``)."""
    register_security_schemes(api)
    spec = api.spec
    spec.tag(dict(TAG))
    plugins = spec.plugins
    spec.plugins = [*plugins, AppOperations(blueprint.name, state)]
    try:
        api.register_blueprint(blueprint, url_prefix=url_prefix or None)
    finally:
        spec.plugins = plugins
    # flask-smorest also declares a tag named after the blueprint (the prefix of its
    # endpoints), which no operation carries now; apispec offers no public way to drop it.
    spec._tags[:] = [tag for tag in spec._tags if tag.get("name") != blueprint.name]


def assets_blueprint() -> Blueprint:
    """Swagger UI's JavaScript and CSS, served by the app so the docs work offline."""
    from swagger_ui_bundle import swagger_ui_path

    assets = Blueprint("idms_webhooks_swagger_ui", __name__)

    @assets.route("/swagger-ui/<path:filename>")
    def swagger_ui_asset(filename: str) -> Any:
        return send_from_directory(swagger_ui_path, filename, max_age=86400)

    return assets
