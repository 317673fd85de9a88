"""Credentials on requests: task keys, job tokens and the admin token, checked before a
body or a query is read, answered 401 / 404 exactly as the contract says.

A request may carry several credentials at once (Swagger UI sends every one it was
given: the admin token as Bearer and a task key as ``X-Webhook-Key``): any one valid for
the route opens it, and a 401 names each one that was wrong. Keys are compared in
constant time and never logged nor echoed."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import NoReturn, ParamSpec, TypeVar

from flask import current_app, request

from ..jobs.documents import JobDocument
from ..jobs.store import loads
from ..logs import LOGGER
from ..model.tasks import Task
from ..security import bearer_token
from ..state import WebhooksState, state_of
from .answers import refuse
from .rate_limits import limit_auth_failure

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger(LOGGER)

#: Where a task key may travel, as a 401 names the place.
BEARER = "the Bearer token"
HEADER = "the X-Webhook-Key header"
QUERY = "the key query parameter"
#: What a 401 calls the key a route wants.
THIS_TASK = "this task's key"
JOB_TASK = "the key of this job's task"

ADMIN_CLOSED = "IDMS_WEBHOOKS_ADMIN_TOKEN is not set on this server: the admin routes are closed."
KEY_REQUIRED = (
    "A valid task key is required: Authorization: Bearer <key>, X-Webhook-Key: <key>, "
    "or ?key=<key>."
)

#: (place, value) of a credential the request carries.
Presented = tuple[str, str]


def unauthorized(message: str) -> NoReturn:
    limit_auth_failure(message)  # past IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT: 429, not 401
    refuse(401, message, headers={"WWW-Authenticate": 'Bearer realm="idms-webhooks"'})


def presented_keys() -> Iterator[Presented]:
    """Every credential where a task key may travel (Bearer, ``X-Webhook-Key``,
    ``?key=``), in that order, read one at a time: a caller's first valid one ends the
    search, so the common request costs no more than with a single place."""
    bearer = bearer_token(request)
    if bearer:
        yield BEARER, bearer
    header = request.headers.get("X-Webhook-Key")
    if header:
        yield HEADER, header
    query = request.args.get("key")
    if query:
        yield QUERY, query


def wrong_keys(
    state: WebhooksState, task: Task | None, keys: Iterable[Presented]
) -> list[Presented] | None:
    """None as soon as one of the keys is ``task``'s, else every key given (maybe none)."""
    wrong = []
    for place, given in keys:
        if task is not None and state.credentials.check_task_key(task, given):
            return None
        wrong.append((place, given))
    return wrong


def sentence(parts: Iterable[str]) -> str:
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def key_refusal(
    state: WebhooksState, wrong: list[Presented], wanted: str, *, admin_accepted: bool = False
) -> list[str]:
    """What is wrong with each key given (never the key itself)."""
    parts = []
    for place, given in wrong:
        if place == BEARER and admin_accepted:
            parts.append(f"{place} is neither {wanted} nor the admin token")
        elif place == BEARER and state.credentials.is_admin_token(given):
            parts.append(
                f"{place} is the admin token, which does not open this route ({wanted} does)"
            )
        else:
            parts.append(f"{place} is not {wanted}")
    return parts


@functools.cache
def warn_admin_routes_closed() -> None:
    """Said once per process, where it matters: an admin route was refused for it."""
    logger.warning("%s They answer 401 to everyone.", ADMIN_CLOSED)


def admin_refusal(state: WebhooksState) -> str | None:
    """None when the request is an admin's, else what a 401 tells the caller."""
    credentials = state.credentials
    if not credentials.admin_configured:
        warn_admin_routes_closed()
        return ADMIN_CLOSED
    if credentials.check_admin(request):
        return None
    if credentials.host_admin_check:
        return "The app's admin check refused this request."
    if bearer_token(request) is not None:
        return "The Bearer token is not the admin token."
    basic = request.authorization
    if basic is not None and basic.type == "basic":
        if request.method in ("GET", "HEAD"):
            return "The password of HTTP Basic is not the admin token."
        return "HTTP Basic opens only the admin GET routes: send Authorization: Bearer <token>."
    return "A valid admin token is required (Authorization: Bearer <token>)."


def require_admin() -> None:
    refusal = admin_refusal(state_of(current_app))
    if refusal is not None:
        unauthorized(refusal)


def is_admin(state: WebhooksState) -> bool:
    return state.credentials.admin_configured and state.credentials.check_admin(request)


def known_task(state: WebhooksState, task_id: str) -> Task:
    task = state.tasks.get(task_id)
    if task is None:
        refuse(404, f"No task {task_id!r}.")
    return task


def require_task_key(state: WebhooksState, task: Task) -> None:
    """Pass when any key the request carries is the task's; else 401 naming each."""
    wrong = wrong_keys(state, task, presented_keys())
    if wrong is not None:
        unauthorized(sentence(key_refusal(state, wrong, THIS_TASK)) if wrong else KEY_REQUIRED)


def guarded(check: Callable[[WebhooksState], None]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Credentials first, before the body or the query is even read: an unknown task is
    404, a wrong key 401, whatever the request holds. Put it right under ``blp.route``,
    above flask-smorest's parsing decorators. (The webhooks and the poll check
    credentials first thing in the view, which reads its body itself.)"""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            state = state_of(current_app)
            request.max_content_length = state.settings.max_body_size
            check(state)
            return view(*args, **kwargs)

        return checked

    return decorate


def admin_of_task(state: WebhooksState) -> None:
    require_admin()
    task_id = (request.view_args or {}).get("task_id")
    if task_id is not None:
        known_task(state, task_id)


def key_of_task(state: WebhooksState) -> None:
    require_task_key(state, known_task(state, (request.view_args or {}).get("task_id") or ""))


def find_job(state: WebhooksState, job_id: str) -> tuple[bytes, bool, JobDocument]:
    """(document bytes, finished, document) of a job; 404 once it is gone."""
    found = state.jobs.current(job_id)
    if found is None:
        refuse(404, "No such job, or its record has expired.")
    body, finished, document = found
    return body, finished, document if document is not None else loads(body)


def read_job(state: WebhooksState, job_id: str) -> tuple[bytes, bool, JobDocument]:
    """A job as its reader may see it: with its job token (checked first, without a Redis
    read), or with its task's key."""
    token = request.args.get("token")
    if token is not None and state.credentials.check_job_token(job_id, token):
        return find_job(state, job_id)
    bad_token = ["the job token is not valid for this job"] if token is not None else []
    keys = presented_keys()
    first = next(keys, None)
    if first is None:
        unauthorized(
            sentence(bad_token)
            if bad_token
            else "A job token (?token=) or the task's key is required."
        )
    found = find_job(state, job_id)
    wrong = wrong_keys(state, state.tasks.get(found[2]["TaskId"]), chain([first], keys))
    if wrong is not None:
        unauthorized(sentence(bad_token + key_refusal(state, wrong, JOB_TASK)))
    return found


def cancellable_job(state: WebhooksState, job_id: str) -> tuple[bool, JobDocument]:
    """(finished, document) of a job the caller may cancel: with the admin token, or the
    key of the job's task."""
    if is_admin(state):
        _, finished, document = find_job(state, job_id)
        return finished, document
    keys = presented_keys()
    first = next(keys, None)
    if first is None:
        only_reads = " (a job token only reads its job)" if "token" in request.args else ""
        unauthorized(f"The task's key or an admin token is required{only_reads}.")
    _, finished, document = find_job(state, job_id)
    task = state.tasks.get(document["TaskId"])
    wrong = wrong_keys(state, task, chain([first], keys))
    if wrong is not None:
        admin = state.credentials.admin_configured
        unauthorized(sentence(key_refusal(state, wrong, JOB_TASK, admin_accepted=admin)))
    return finished, document
