"""Starting jobs over HTTP: the webhook body, its QueryParameters, ``Idempotency-Key``
claims and their replays."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from flask import Response, current_app, g, request
from marshmallow import ValidationError
from webargs import core
from werkzeug.exceptions import HTTPException

from ..errors import ParameterError, StoreUnavailable
from ..jobs.store import IdempotencyClaim, dumps
from ..model.parameters import ResolvedParameter
from ..model.tasks import Task
from ..state import WebhooksState, state_of
from .answers import PollAnswer, execute_answer, json_answer, poll_headers, refuse, request_root
from .auth import known_task, require_task_key
from .bodies import parse_json_body
from .metrics import count_refused
from .rate_limits import limit_trigger
from .schemas import MAX_IDEMPOTENCY_KEY, IdmsTriggerBodySchema

TRIGGER_BODY_SCHEMA = IdmsTriggerBodySchema()


def trigger_body(state: WebhooksState) -> dict[str, Any]:
    """A webhook's body, validated by ``IdmsTriggerBodySchema`` (the documented one); an
    empty body is ``{}``. Aborts as the other routes do: 4xx before anything changes."""
    request.max_content_length = state.settings.max_body_size
    body = parse_json_body(request)
    if body is core.missing:
        return {}
    try:
        loaded: dict[str, Any] = TRIGGER_BODY_SCHEMA.load(body)
    except ValidationError as error:
        refuse(422, errors={"json": error.messages})
    return loaded


def resolve_parameters(
    state: WebhooksState, task: Task, body: Mapping[str, Any]
) -> dict[str, ResolvedParameter]:
    try:
        return state.parameters[task.id].resolve(body.get("QueryParameters"))
    except ParameterError as error:
        refuse(422, "Invalid QueryParameters.", errors={"json": {"QueryParameters": error.errors}})


def idempotency_scope(task: Task, route: str, body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(claim key, body hash) for a request with an ``Idempotency-Key``, else None."""
    given = request.headers.get("Idempotency-Key")
    if given is None:
        return None
    if not given.strip() or len(given) > MAX_IDEMPOTENCY_KEY:
        refuse(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    key_hash = hashlib.sha256(given.encode()).hexdigest()
    body_hash = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return f"{task.id}:{route}:{key_hash}", body_hash


def replay(claimed: IdempotencyClaim, body_hash: str) -> Response:
    """The first answer given under this ``Idempotency-Key``, as it was, at once."""
    if claimed["BodyHash"] != body_hash:
        refuse(422, "This Idempotency-Key was used with a different body; use a new key.")
    return json_answer(claimed["Body"].encode(), claimed["Status"], claimed["Headers"])


def start_job(state: WebhooksState, task: Task, body: dict[str, Any], route: str) -> Response:
    """Start a job (or replay the first answer of an ``Idempotency-Key``)."""
    parameters = resolve_parameters(state, task, body)
    scope = idempotency_scope(task, route, body)
    limit_trigger(state, task, scope[0] if scope else None)  # 429 past the task's limit
    document = state.jobs.prepare(task, parameters, state.urls.base(request_root()))
    record = dumps(document)
    if route == "polling":
        status, answer, headers = 202, record, poll_headers(document)
    else:
        status, answer, headers = 200, dumps(execute_answer(document)), {}
    claim = None
    if scope is not None:
        claim_key, body_hash = scope
        first: IdempotencyClaim = {
            "ExecuteId": document["ExecuteId"],
            "BodyHash": body_hash,
            "Status": status,
            "Headers": headers,
            "Body": answer.decode(),
        }
        claim = (claim_key, first)
    claimed = state.jobs.submit(task, document, claim=claim, body=record, counted=(route, status))
    if claimed is not None:
        return replay(claimed, scope[1] if scope else "")
    g.idms_trigger_counted = True  # in the job's transaction (see ``web.metrics``)
    if route == "polling":
        return PollAnswer(answer, document)
    return json_answer(answer, status)


def trigger(task_id: str, route: str) -> Response:
    """A webhook: the task, its key, its body, then the job. An answer that created no
    job (a refusal, Redis away, a replay) is counted here; a job's, with the job."""
    state = state_of(current_app)
    try:
        task = known_task(state, task_id)
        require_task_key(state, task)
        answer = start_job(state, task, trigger_body(state), route)
    except HTTPException as refused:
        count_refused(state, task_id, route, refused.code or 500)
        raise
    except StoreUnavailable:
        count_refused(state, task_id, route, 503)
        raise
    if not g.get("idms_trigger_counted"):
        count_refused(state, task_id, route, answer.status_code)
    return answer
