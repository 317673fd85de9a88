"""What a webhook answers when its task runs one job at a time and has one queued or
running (``concurrency = "reject"`` or ``"join"``): nothing new starts either way."""

from __future__ import annotations

from typing import Any

from flask import Response

from ..jobs.documents import JobDocument, joins
from ..jobs.store import dumps
from ..model.tasks import Concurrency, Task
from .answers import PollAnswer, json_answer


def busy_answer(task: Task, running: JobDocument, wanted: JobDocument, route: str) -> Response:
    """``join`` with the same parameters: the running job's answer, as if this request
    had started it (the polling webhook's 202 with its Location; the standard webhook's
    200 with its ExecuteId). Otherwise 409, with that job's Location in body and header."""
    if joins(task, running, wanted):
        if route == "polling":
            return PollAnswer(dumps(running), running)
        joined = {"ExecuteId": running["ExecuteId"], "TaskId": task.id, "Status": running["Status"]}
        return json_answer(dumps(joined), 200)
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
