"""Completion callbacks on the web side: a webhook's ``CallbackUrl`` checked before
anything is created, and ``GET {prefix}/jobs/<job_id>/callback``, the delivery state of a
job's callback (job token or task key, as the poll). The sealed document never changes:
the delivery's progress is read here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app

from ..jobs.callback_policy import without_query
from ..jobs.callback_records import CallbackView
from ..state import WebhooksState, state_of
from .answers import refuse
from .auth import read_job
from .blueprint import blp
from .docs import JOB_READER, documented_errors, operation
from .schemas import IdmsCallbackSchema


def callback_url(state: WebhooksState, body: Mapping[str, Any]) -> str | None:
    """A webhook body's ``CallbackUrl`` (None without one), or a 422 naming it: checked
    against the app's callback settings before anything is created."""
    url = body.get("CallbackUrl")
    if url is None:
        return None
    problem = state.callbacks.policy.url_problem(url)
    if problem is not None:
        refuse(422, problem, errors={"json": {"CallbackUrl": [problem]}})
    return str(url)


def shown(url: str | None) -> str | None:
    """A callback URL as the job document shows it: without its query."""
    return without_query(url) if url else None


@blp.route("/jobs/<job_id>/callback")
@operation("getJobCallback")
@JOB_READER
@blp.response(200, IdmsCallbackSchema)
@documented_errors(401, 404)
def job_callback(job_id: str) -> CallbackView:
    """The delivery state of a job's completion callback (job token or task key)."""
    state = state_of(current_app)
    read_job(state, job_id)
    view = state.callbacks.view(job_id)
    if view is None:
        refuse(404, "This job has no callback (its trigger gave no CallbackUrl).")
    return view
