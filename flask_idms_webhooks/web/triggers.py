"""Starting jobs over HTTP: the webhook body, its QueryParameters, ``Idempotency-Key``
claims and their replays."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

from flask import Response, current_app, g, request
from marshmallow import ValidationError
from webargs import core
from werkzeug.exceptions import HTTPException

from ..errors import ParameterError, StoreUnavailable, TaskBusy
from ..jobs.documents import JobDocument
from ..jobs.store import IDEMPOTENCY_TTL, IdempotencyClaim, dumps
from ..model.parameters import ResolvedParameter
from ..model.tasks import Task
from ..state import WebhooksState, state_of
from .answers import PollAnswer, execute_answer, json_answer, poll_headers, refuse, request_root
from .auth import known_task, require_task_key
from .bodies import parse_json_body
from .callbacks import callback_url, shown
from .concurrency import busy_answer, joined_answer
from .metrics import count_refused
from .rate_limits import limit_trigger
from .schemas import MAX_IDEMPOTENCY_KEY, IdmsTriggerBodySchema
from .signatures import require_signature

TRIGGER_BODY_SCHEMA = IdmsTriggerBodySchema()
#: How long a signed request's ``webhook-id`` replays its first answer (a sender's retry).
WEBHOOK_ID_TTL = 10 * 60


def trigger_body(state: WebhooksState, task: Task) -> tuple[dict[str, Any], str | None]:
    """A webhook's body, validated by ``IdmsTriggerBodySchema`` (the documented one), an
    empty body ``{}``; and the ``webhook-id`` of a task that requires signed requests,
    checked on the raw body before its fields are. Aborts as the other routes do: 4xx
    before anything changes."""
    request.max_content_length = state.settings.max_body_size
    body = parse_json_body(request)
    webhook_id = require_signature(task) if task.require_signature else None
    if body is core.missing:
        return {}, webhook_id
    try:
        loaded: dict[str, Any] = TRIGGER_BODY_SCHEMA.load(body)
    except ValidationError as error:
        refuse(422, errors={"json": error.messages})
    return loaded, webhook_id


def resolve_parameters(
    state: WebhooksState, task: Task, body: Mapping[str, Any]
) -> dict[str, ResolvedParameter]:
    try:
        return state.parameters[task.id].resolve(body.get("QueryParameters"))
    except ParameterError as error:
        refuse(422, "Invalid QueryParameters.", errors={"json": {"QueryParameters": error.errors}})


class Scope(NamedTuple):
    """What makes a repeat of a trigger replay its first answer: an ``Idempotency-Key``,
    else a signed request's ``webhook-id``."""

    key: str  # of the claim
    body_hash: str
    ttl: int  # seconds the first answer is kept
    named: str  # what the caller sent, for a message


def claim_scope(
    task: Task, route: str, body: Mapping[str, Any], webhook_id: str | None
) -> Scope | None:
    """The scope of a request's claim, if it has one."""
    given = request.headers.get("Idempotency-Key")
    if given is None and webhook_id is None:
        return None
    if given is not None and (not given.strip() or len(given) > MAX_IDEMPOTENCY_KEY):
        refuse(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    body_hash = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    if given is not None:
        key_hash = hashlib.sha256(given.encode()).hexdigest()
        return Scope(f"{task.id}:{route}:{key_hash}", body_hash, IDEMPOTENCY_TTL, "Idempotency-Key")
    assert webhook_id is not None
    id_hash = hashlib.sha256(webhook_id.encode()).hexdigest()
    return Scope(f"{task.id}:{route}:webhook-id:{id_hash}", body_hash, WEBHOOK_ID_TTL, "webhook-id")


def replay(claimed: IdempotencyClaim, scope: Scope) -> Response:
    """The first answer given under this ``Idempotency-Key`` (or ``webhook-id``), as it
    was, at once."""
    if claimed["BodyHash"] != scope.body_hash:
        refuse(422, f"This {scope.named} was used with a different body; use a new one.")
    return json_answer(claimed["Body"].encode(), claimed["Status"], claimed["Headers"])


def claimed_answer(
    document: JobDocument, scope: Scope, status: int, headers: dict[str, str], body: bytes
) -> IdempotencyClaim:
    """What a claim keeps of the first answer under its key: a repeat replays it."""
    return {
        "ExecuteId": document["ExecuteId"],
        "BodyHash": scope.body_hash,
        "Status": status,
        "Headers": headers,
        "Body": body.decode(),
    }


def start_job(
    state: WebhooksState,
    task: Task,
    body: dict[str, Any],
    route: str,
    webhook_id: str | None = None,
) -> Response:
    """Start a job (or replay the first answer of an ``Idempotency-Key`` or a signed
    request's ``webhook-id``)."""
    parameters = resolve_parameters(state, task, body)
    scope = claim_scope(task, route, body, webhook_id)
    callback = callback_url(state, body)
    limit_trigger(state, task, scope.key if scope else None)  # 429 past the task's limit
    base = state.urls.base(request_root())
    document = state.jobs.prepare(task, parameters, base, callback_url=shown(callback))
    record = dumps(document)
    if route == "polling":
        status, answer, headers = 202, record, poll_headers(document)
    else:
        status, answer, headers = 200, dumps(execute_answer(document)), {}
    claim = None
    if scope is not None:
        claim = (scope.key, claimed_answer(document, scope, status, headers, answer), scope.ttl)

    def joined(running: JobDocument) -> IdempotencyClaim | None:
        follows = joined_answer(task, running, document, route)
        return (
            None if scope is None or follows is None else claimed_answer(running, scope, *follows)
        )

    try:
        claimed = state.jobs.submit(
            task,
            document,
            claim=claim,
            body=record,
            counted=(route, status),
            callback=callback,
            joined=joined,
        )
    except TaskBusy as busy:
        return busy_answer(task, cast(JobDocument, busy.running), document, route)
    if claimed is not None:
        assert scope is not None
        return replay(claimed, scope)
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
        body, webhook_id = trigger_body(state, task)
        answer = start_job(state, task, body, route, webhook_id)
    except HTTPException as refused:
        count_refused(state, task_id, route, refused.code or 500)
        raise
    except StoreUnavailable:
        count_refused(state, task_id, route, 503)
        raise
    if not g.get("idms_trigger_counted"):
        count_refused(state, task_id, route, answer.status_code)
    return answer
