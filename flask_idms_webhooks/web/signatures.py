"""Signed triggers: the webhooks of a task with ``require_signature`` accept only requests
signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature:
v1,<base64 HMAC-SHA256 of id.timestamp.body>``) with one of its ``signing_secrets``, on
top of its key. The signature is checked by the ``standardwebhooks`` package."""

from __future__ import annotations

import re
import time

from flask import request
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ..model.tasks import Task
from .auth import unauthorized

#: How far a request's ``webhook-timestamp`` may be from the server's clock (the spec's).
TOLERANCE_SECONDS = 5 * 60
#: The longest ``webhook-id`` accepted (it keys the replay of the first answer).
MAX_WEBHOOK_ID = 255
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: Whole seconds since 1970, in ASCII digits (``str.isdigit`` takes "²"; a huge number
#: does not fit a float).
TIMESTAMP = re.compile(r"[0-9]{1,12}")


def require_signature(task: Task) -> str:
    """The request's ``webhook-id``, once its signature is good; else 401 naming the
    header at fault."""
    given = {name: request.headers.get(name, "").strip() for name in HEADERS}
    for name, value in given.items():
        if not value:
            unauthorized(
                f"Task {task.id!r} accepts only signed requests (Standard Webhooks): "
                f"the {name} header is missing."
            )
    if len(given["webhook-id"]) > MAX_WEBHOOK_ID:
        unauthorized(f"The webhook-id header is longer than {MAX_WEBHOOK_ID} characters.")
    if not TIMESTAMP.fullmatch(given["webhook-timestamp"]):
        unauthorized("The webhook-timestamp header must be whole seconds since 1970 (UTC).")
    skew = int(given["webhook-timestamp"]) - time.time()
    if abs(skew) > TOLERANCE_SECONDS:
        side = "ahead of" if skew > 0 else "behind"
        unauthorized(
            f"The webhook-timestamp header is {abs(skew):.0f} s {side} the server's clock "
            f"(at most {TOLERANCE_SECONDS} s): sign each attempt afresh."
        )
    body = request.get_data(cache=True)
    for secret in task.signing_secrets:
        try:
            Webhook(secret).verify(body, given, json_parse=False)
        except WebhookVerificationError:
            continue
        return given["webhook-id"]
    return unauthorized(
        "The webhook-signature header matches none of the task's signing secrets for this "
        "body, webhook-id and webhook-timestamp (expected v1,<base64 HMAC-SHA256>)."
    )
