"""``GET /idms/jobs``: the jobs of every task (or one), newest first, by status, one page
at a time (admin): what the dashboard shows, as JSON."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import RAISE

from ..jobs.store import loads
from ..state import state_of
from .answers import refuse
from .auth import admin_of_task, guarded
from .blueprint import blp
from .docs import ADMIN_ONLY, documented_errors, operation
from .schemas import IdmsAllJobsArgsSchema, IdmsAllJobsSchema


@blp.route("/jobs", methods=["GET"])
@operation("listJobs")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.arguments(IdmsAllJobsArgsSchema, location="query", unknown=RAISE)
@blp.response(200, IdmsAllJobsSchema)
@documented_errors(401, 422)
def list_all_jobs(args: dict[str, Any]) -> dict[str, Any]:
    """Recent jobs of all tasks (or of ``task``), newest first, by ``status``, paginated
    (admin)."""
    state = state_of(current_app)
    task_id = args.get("task")
    if task_id is not None and task_id not in state.tasks:
        known = ", ".join(sorted(state.tasks)) or "none"
        refuse(422, f"No task {task_id!r} (the tasks: {known}).")
    page, page_size = args["page"], args["page_size"]
    total, documents = state.store.jobs_page(
        [task_id] if task_id else list(state.tasks),
        args.get("status"),
        (page - 1) * page_size,
        page_size,
    )
    return {
        "Page": page,
        "PageSize": page_size,
        "Total": total,
        "Jobs": [loads(document) for document in documents],
    }
