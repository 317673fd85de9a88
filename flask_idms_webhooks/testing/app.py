"""The double's WSGI app: every request is logged, may be slowed or failed by the fault
plan, then ``/token`` or an authenticated ``/api/...`` route answers it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from flask import Flask, Request, Response, request
from werkzeug.http import http_date

from . import shapes
from .control import Fault, RecordedRequest
from .endpoints import JSON_TYPES, ApiError, answer, route_api
from .state import TOKEN_LIFETIME, DoubleState

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def create_app(state: DoubleState) -> Flask:
    app = Flask(__name__)

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def dispatch(path: str) -> Response:
        return handle(state, request, path)

    return app


def handle(state: DoubleState, req: Request, path: str) -> Response:
    segments = [s for s in path.split("/") if s]
    with state.lock:
        state.traffic.began()
        state.log.append(record(req))
        fault = state.plan.next_request()
        delay = state.plan.delay + (state.traffic.latency if is_entity_call(segments) else 0.0)
    try:
        if delay:
            time.sleep(delay)
        return fault_or_answer(state, req, path, segments, fault)
    finally:
        with state.lock:
            state.traffic.ended()


def is_entity_call(segments: list[str]) -> bool:
    """``/api/{Entity}[/{id}]``: not the token, an IQA, a query or FindByPath."""
    names = [s.lower() for s in segments]
    if len(names) < 2 or names[0] != "api":
        return False
    return names[1] not in ("iqa", "query", "querydefinition")


def fault_or_answer(
    state: DoubleState, req: Request, path: str, segments: list[str], fault: Fault | None
) -> Response:
    if fault is not None:
        return failure(fault)
    try:
        if [s.lower() for s in segments] == ["token"]:
            return token(state, req)
        if segments and segments[0].lower() == "api":
            if not state.authorize(req.headers.get("Authorization", "")):
                message = "Authorization has been denied for this request."
                return answer(shapes.http_error(message), 401, {"WWW-Authenticate": "Bearer"})
            return route_api(state, req, segments[1:])
    except ApiError as error:
        return answer(error.body, error.status, error.headers)
    message = f"No HTTP resource was found that matches the request URI '/{path}'."
    return answer(shapes.http_error(message), 404)


def record(req: Request) -> RecordedRequest:
    form = req.form.to_dict() if req.mimetype == "application/x-www-form-urlencoded" else None
    body: Any = None
    if req.mimetype in JSON_TYPES:
        try:
            body = json.loads(req.get_data(as_text=True))
        except (ValueError, RecursionError):
            body = None
    return RecordedRequest(
        method=req.method,
        path=req.path,
        query=req.query_string.decode("utf-8", "replace"),
        form=form,
        json=body,
        headers=dict(req.headers.items()),
    )


def failure(fault: Fault) -> Response:
    """A planned fault; 500's text is ASP.NET's, the others name the status (best guess)."""
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    message = "An error has occurred." if fault.status == 500 else f"{phrase}."
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    return answer(shapes.http_error(message), fault.status, headers)


def token(state: DoubleState, req: Request) -> Response:
    """``POST /token`` with the password grant (form keys read without case, as iMIS does).
    The answer's extra keys (``.issued``, ``.expires``) are OWIN's, a best guess."""
    if req.method != "POST":
        raise ApiError(405, shapes.http_error("The token endpoint takes POST."), {"Allow": "POST"})
    form = {key.lower(): value for key, value in req.form.items()}
    if form.get("grant_type") != "password":
        return answer({"error": "unsupported_grant_type"}, 400)
    username = form.get("username", "")
    issued = state.login(username, form.get("password", ""))
    if issued is None:
        refusal = {
            "error": "invalid_grant",
            "error_description": "The user name or password is incorrect.",
        }
        return answer(refusal, 400)
    now = datetime.now(UTC)
    return answer(
        {
            "access_token": issued,
            "token_type": "bearer",
            "expires_in": TOKEN_LIFETIME,
            "userName": username,
            ".issued": http_date(now),
            ".expires": http_date(now + timedelta(seconds=TOKEN_LIFETIME)),
        },
        headers={"Cache-Control": "no-cache", "Pragma": "no-cache"},
    )
