"""What a webhook answers when its task runs one job at a time and has one queued or
running (``concurrency = "reject"`` or ``"join"``): nothing new starts either way."""

from __future__ import annotations

from typing import Any

from flask import Response

from ..jobs.documents import JobDocument, joins
from ..jobs.store import dumps
from ..model.tasks import Concurrency, Task
from .answers import json_answer, poll_headers


def joined_answer(
    task: Task, running: JobDocument, wanted: JobDocument, route: str
) -> tuple[int, dict[str, str], bytes] | None:
    """(status, headers, body) of a trigger that follows the ``running`` job, as if it had
    started it (the polling webhook's 202 with its Location; the standard webhook's 200
    with its ExecuteId); None when it does not join (another concurrency, other values)."""
    if not joins(task, running, wanted):
        return None
    if route == "polling":
        return 202, poll_headers(running), dumps(running)
    joined = {"ExecuteId": running["ExecuteId"], "TaskId": task.id, "Status": running["Status"]}
    return 200, {}, dumps(joined)


def busy_answer(task: Task, running: JobDocument, wanted: JobDocument, route: str) -> Response:
    """The joined answer (``joined_answer``), else 409 with the running job's Location in
    body and header."""
    joined = joined_answer(task, running, wanted, route)
    if joined is not None:
        return json_answer(joined[2], joined[0], joined[1])
    because = "with other QueryParameters " if task.concurrency is Concurrency.JOIN else ""
    body: dict[str, Any] = {
        "code": 409,
        "status": "Conflict",
        "message": (
            f"Task {task.id!r} runs one job at a time (concurrency = {task.concurrency}) and "
            f"job {running['ExecuteId']} is {because}{running['Status']}: nothing was started. "
            "Follow it at Location, or trigger again once it has ended."
        ),
        "errors": {
            "Job": {
                "ExecuteId": running["ExecuteId"],
                "Status": running["Status"],
                "Location": running["PollingUrl"],
            }
        },
    }
    headers = {"Location": running["PollingUrl"], "Retry-After": str(running["RetryAfter"])}
    return json_answer(dumps(body), 409, headers)
