"""The routes of HTTP-CONTRACT.md, on the extension's Blueprint. No business rules: the
views check credentials, read the request and answer what the jobs say.

The webhooks and the poll are the hot paths: they are documented with flask-smorest's
decorators (``docs.documented``) but parse and answer by themselves, with the same
schemas and error shapes, and answer the job store's bytes as they are.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, request

from ..errors import StoreUnavailable
from ..jobs.scheduler import ScheduleView
from ..jobs.store import loads
from ..logs import LOGGER
from ..model.tasks import Task
from ..state import state_of

# Routes of their own modules, on the same Blueprint (registered by being imported).
from . import callbacks, connector, dashboard, health, listing, metrics, tracing  # noqa: F401
from .answers import (
    TaskDocument,
    ValidateAnswer,
    bad_query_string_answer,
    job_answer,
    json_answer,
    refuse,
    request_root,
    row_errors_csv,
    store_unavailable_answer,
    task_documents,
)
from .auth import admin_of_task, cancellable_job, guarded, key_of_task, known_task, read_job
from .blueprint import blp
from .docs import (
    ADMIN_ONLY,
    JOB_READER,
    POLL_HEADERS,
    POLLS_LIMITED,
    TASK_KEY_ONLY,
    documented,
    documented_errors,
    operation,
    webhook_docs,
)
from .jobpage import job_page, wants_page
from .rate_limits import limit_poll
from .schemas import (
    QUEUED_JOB_EXAMPLE,
    IdmsExecuteSchema,
    IdmsJobListArgsSchema,
    IdmsJobListSchema,
    IdmsJobSchema,
    IdmsScheduleBodySchema,
    IdmsScheduleSchema,
    IdmsTaskSchema,
    IdmsTriggerBodySchema,
    IdmsValidateSchema,
)
from .triggers import resolve_parameters, trigger

__all__ = ["blp"]

logger = logging.getLogger(LOGGER)


@blp.errorhandler(StoreUnavailable)
def store_unavailable(error: StoreUnavailable) -> Response:
    logger.warning("Redis unavailable: %s", error)
    return store_unavailable_answer(error)


@blp.errorhandler(UnicodeDecodeError)
def undecodable_query(error: UnicodeDecodeError) -> Response:
    """A raw byte that is not UTF-8 in the query string (a server passes it through as
    is) makes Werkzeug's ``request.args`` raise: that is the caller's error, a 400."""
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        return bad_query_string_answer()
    raise error


@blp.route("/tasks")
@operation("listTasks")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.response(200, IdmsTaskSchema(many=True))
@documented_errors(401)
def list_tasks() -> list[TaskDocument]:
    """List the tasks, with their schedules (admin)."""
    state = state_of(current_app)
    return task_documents(state, state.urls.base(request_root()), list(state.tasks.values()))


@blp.route("/tasks/<task_id>")
@operation("getTask")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.response(200, IdmsTaskSchema)
@documented_errors(401, 404)
def get_task(task_id: str) -> TaskDocument:
    """A task's webhook URLs (with its key), parameters, body template and schedule (admin)."""
    state = state_of(current_app)
    task = known_task(state, task_id)
    return task_documents(state, state.urls.base(request_root()), [task])[0]


def scheduled_task(task_id: str) -> Task:
    state = state_of(current_app)
    task = known_task(state, task_id)
    if task.schedule is None:
        refuse(404, f"Task {task_id!r} has no schedule (it runs by webhook only).")
    return task


@blp.route("/tasks/<task_id>/schedule", methods=["GET"])
@operation("getTaskSchedule")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.response(200, IdmsScheduleSchema)
@documented_errors(401, 404)
def get_schedule(task_id: str) -> ScheduleView:
    """A task's schedule: cron, enabled, next and last run, failures, recent due times (admin)."""
    task = scheduled_task(task_id)
    view = state_of(current_app).scheduler.views_of([task])[task.id]
    assert view is not None  # the task has a schedule
    return view


@blp.route("/tasks/<task_id>/schedule", methods=["PUT"])
@operation("setTaskSchedule")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.arguments(IdmsScheduleBodySchema)
@blp.response(200, IdmsScheduleSchema)
@documented_errors(400, 401, 404, 415, 422)
def put_schedule(body: dict[str, bool], task_id: str) -> ScheduleView:
    """Turn a task's schedule on (its failure count starts afresh) or off (admin)."""
    task = scheduled_task(task_id)
    scheduler = state_of(current_app).scheduler
    return scheduler.set_enabled(task, body["Enabled"], "Disabled by an admin (PUT schedule)")


@blp.route("/tasks/<task_id>/execute", methods=["POST"])
@operation("executeTask")
@webhook_docs(blp.response(200, IdmsExecuteSchema))
def execute(task_id: str) -> Response:
    """Standard webhook: start a job, fire-and-forget (200 once it is queued)."""
    return trigger(task_id, "standard")


@blp.route("/tasks/<task_id>/jobs", methods=["GET"])
@operation("listTaskJobs")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.arguments(IdmsJobListArgsSchema, location="query")
@blp.response(200, IdmsJobListSchema)
@documented_errors(401, 404, 422)
def list_jobs(args: dict[str, int], task_id: str) -> dict[str, Any]:
    """Recent jobs of a task, newest first, paginated (admin)."""
    state = state_of(current_app)
    task = known_task(state, task_id)
    page, page_size = args["page"], args["page_size"]
    total, documents = state.store.history(task.id, (page - 1) * page_size, page_size)
    return {
        "TaskId": task.id,
        "Page": page,
        "PageSize": page_size,
        "Total": total,
        "Jobs": [loads(document) for document in documents],
    }


@blp.route("/tasks/<task_id>/jobs", methods=["POST"])
@operation("startJob")
@webhook_docs(blp.response(202, IdmsJobSchema, headers=POLL_HEADERS, example=QUEUED_JOB_EXAMPLE))
def polling_webhook(task_id: str) -> Response:
    """Asynchronous polling webhook: 202 with an absolute Location to poll."""
    return trigger(task_id, "polling")


@blp.route("/tasks/<task_id>/validate", methods=["POST"])
@operation("validateParameters")
@guarded(key_of_task)
@TASK_KEY_ONLY
@blp.arguments(IdmsTriggerBodySchema, required=False)
@blp.response(200, IdmsValidateSchema)
@documented_errors(400, 401, 404, 413, 415, 422, store=False)
def validate(body: dict[str, Any], task_id: str) -> ValidateAnswer:
    """Resolve QueryParameters as a job would receive them; nothing is started."""
    state = state_of(current_app)
    task = known_task(state, task_id)
    parameters = resolve_parameters(state, task, body)
    callbacks.callback_url(state, body)  # a CallbackUrl a webhook would refuse is a 422 here
    return {
        "TaskId": task.id,
        "QueryParameters": {key: value.as_document() for key, value in parameters.items()},
    }


@blp.route("/jobs/<job_id>", methods=["GET"])
@operation("pollJob")
@documented(
    JOB_READER,
    blp.response(200, IdmsJobSchema, description="The job has finished (whatever its outcome)."),
    blp.alt_response(
        202,
        schema=IdmsJobSchema,
        description="The job is queued or running: poll Location again after Retry-After.",
        headers=POLL_HEADERS,
        success=True,
        example=QUEUED_JOB_EXAMPLE,
    ),
    documented_errors(401, 404),
    POLLS_LIMITED,
)
def poll_job(job_id: str) -> Response:
    """Poll a job: 202 while queued or running, then 200 with the final document. (A
    browser gets the job page.)"""
    state = state_of(current_app)
    if state.rate_limits.polls:  # off: not even a call (the poll is the hot path)
        limit_poll(state)
    body, finished, document = read_job(state, job_id)
    if wants_page():
        return job_page(document, finished)
    answer = job_answer(body, finished, document)
    answer.headers["Vary"] = "Accept"
    return answer


@blp.route("/jobs/<job_id>", methods=["DELETE"])
@operation("cancelJob")
@TASK_KEY_ONLY
@blp.response(202, IdmsJobSchema, description="Cancellation requested (a queued job is cancelled).")
@documented_errors(401, 404, 409)
def cancel_job(job_id: str) -> Response:
    """Cancel a queued or running job (task key or admin token)."""
    state = state_of(current_app)
    finished, document = cancellable_job(state, job_id)
    if finished:
        refuse(409, "The job has already finished.", errors={"Job": document})
    return json_answer(state.jobs.cancel(job_id, document), 202)


@blp.route("/jobs/<job_id>/errors.csv")
@operation("getJobErrorsCsv")
@JOB_READER
@blp.response(
    200,
    {"type": "string"},
    content_type="text/csv",
    description="Every row error of the job (up to 10,000): columns Row, Message.",
)
@documented_errors(401, 404)
@POLLS_LIMITED
def job_errors(job_id: str) -> Response:
    """Download a job's row errors as CSV (job token or task key)."""
    state = state_of(current_app)
    if state.rate_limits.polls:
        limit_poll(state)
    read_job(state, job_id)
    return row_errors_csv(job_id, state.store.row_errors(job_id))
