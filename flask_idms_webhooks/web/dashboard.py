"""``GET /idms/dashboard``: every task with its last job and next scheduled run, the
recent jobs of all tasks (by status, by task, newest first, a page at a time), each
linking to its job page, and the queue and the workers (admin; a browser logs in with
HTTP Basic, any user name and the admin token as the password)."""

from __future__ import annotations

import time
from typing import Any

from flask import Response, current_app, render_template
from marshmallow import RAISE

from ..jobs.listing import STATUSES
from ..jobs.metrics import read_totals
from ..jobs.store import loads
from ..state import WebhooksState, state_of
from .answers import refuse, request_root, task_documents
from .auth import ADMIN_CLOSED, admin_refusal, guarded
from .blueprint import blp
from .docs import documented_errors, operation
from .jobpage import HEADERS
from .rate_limits import limit_auth_failure
from .schemas import IdmsAllJobsArgsSchema

#: Seconds between the page's reloads.
REFRESH = 15
PAGE_SIZE = 25
LOG_IN = "Log in with any user name and the admin token as the password."


def admin_in_a_browser(state: WebhooksState) -> None:
    """The admin check, answering a 401 a browser turns into a login prompt."""
    refusal = admin_refusal(state)
    if refusal is not None:
        limit_auth_failure(refusal)
        refuse(
            401,
            refusal if refusal == ADMIN_CLOSED else LOG_IN,
            headers={"WWW-Authenticate": 'Basic realm="idms-webhooks", charset="UTF-8"'},
        )


@blp.route("/dashboard")
@operation("getDashboard")
@guarded(admin_in_a_browser)
@blp.doc(
    security=[{"IdmsBasic": []}, {"IdmsBearer": []}],
    responses={"200": {"description": "The dashboard (HTML).", "content": {"text/html": {}}}},
)
@blp.arguments(IdmsAllJobsArgsSchema, location="query", unknown=RAISE, as_kwargs=True)
@documented_errors(401, 422)
def dashboard(**args: Any) -> Response:
    """The dashboard: tasks, recent jobs, queue and workers (admin, HTTP Basic)."""
    state = state_of(current_app)
    task_id, status, page = args.get("task"), args.get("status"), args["page"]
    if task_id is not None and task_id not in state.tasks:
        refuse(422, f"No task {task_id!r}.")
    total, documents = state.store.jobs_page(
        [task_id] if task_id else list(state.tasks), status, (page - 1) * PAGE_SIZE, PAGE_SIZE
    )
    html = render_template(
        "idms_webhooks/dashboard.html",
        tasks=task_rows(state),
        jobs=[loads(document) for document in documents],
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        task=task_id,
        status=status,
        statuses=STATUSES,
        totals=read_totals(state.redis, state.queue.key),
        refresh=REFRESH,
        now=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    )
    return Response(html, 200, HEADERS, mimetype="text/html")


def task_rows(state: WebhooksState) -> list[dict[str, Any]]:
    """Each task: its id, name, last job and next scheduled run."""
    tasks = list(state.tasks.values())
    documents = task_documents(state, state.urls.base(request_root()), tasks)
    rows = []
    for task, document in zip(tasks, documents, strict=True):
        _, last = state.store.history(task.id, 0, 1)
        schedule: dict[str, Any] = dict(document.get("Schedule") or {})
        rows.append({
            "id": task.id,
            "name": task.name or "",
            "last": loads(last[0]) if last else None,
            "next_run": schedule.get("NextRunOn"),
        })  # fmt: skip
    return rows
