"""Credentials on requests: task keys, job tokens and the admin token, checked before a
body or a query is read, answered 401 / 404 exactly as the contract says."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

from flask import current_app, request

from ..jobs.documents import JobDocument
from ..jobs.store import loads
from ..model.tasks import Task
from ..security import bearer_token
from ..state import WebhooksState, state_of
from .answers import refuse

P = ParamSpec("P")
R = TypeVar("R")


def unauthorized(message: str) -> NoReturn:
    refuse(401, message, headers={"WWW-Authenticate": 'Bearer realm="idms-webhooks"'})


def presented_task_key() -> str | None:
    """A task key as a caller may send it: Bearer, ``X-Webhook-Key`` or ``?key=``."""
    return (
        bearer_token(request)
        or request.headers.get("X-Webhook-Key")
        or request.args.get("key")
        or None
    )


def require_admin() -> None:
    credentials = state_of(current_app).credentials
    if not credentials.admin_configured:
        unauthorized("Admin routes are disabled: IDMS_WEBHOOKS_ADMIN_TOKEN is not set.")
    if not credentials.check_admin(request):
        unauthorized("A valid admin token is required (Authorization: Bearer <token>).")


def is_admin(state: WebhooksState) -> bool:
    return state.credentials.admin_configured and state.credentials.check_admin(request)


def known_task(state: WebhooksState, task_id: str) -> Task:
    task = state.tasks.get(task_id)
    if task is None:
        refuse(404, f"No task {task_id!r}.")
    return task


def require_task_key(state: WebhooksState, task: Task) -> None:
    if not state.credentials.check_task_key(task, presented_task_key()):
        unauthorized(
            "A valid task key is required: Authorization: Bearer <key>, "
            "X-Webhook-Key: <key>, or ?key=<key>."
        )


def require_job_task_key(state: WebhooksState, document: JobDocument) -> None:
    task = state.tasks.get(document["TaskId"])
    if task is None or not state.credentials.check_task_key(task, presented_task_key()):
        unauthorized("The key is not valid for this job's task.")


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
    if token is not None:
        if not state.credentials.check_job_token(job_id, token):
            unauthorized("This job token is not valid for this job.")
        return find_job(state, job_id)
    if presented_task_key() is None:
        unauthorized("A job token (?token=) or the task's key is required.")
    found = find_job(state, job_id)
    require_job_task_key(state, found[2])
    return found
