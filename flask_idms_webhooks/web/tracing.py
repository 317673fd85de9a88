"""Each request's id: the caller's ``X-Request-Id`` when it is a plain token, else a new
one; echoed in the answer and carried by every log line of the request
(``logs.Context``), so a caller's report and the service's log meet."""

from __future__ import annotations

import re
import uuid

from flask import Response, g, request

from .blueprint import blp

HEADER = "X-Request-Id"
#: What a caller's id may be (anything else is replaced: it goes into log lines).
PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@blp.before_request
def take_request_id() -> None:
    given = request.headers.get(HEADER, "")
    g.idms_request_id = given if PLAIN_ID.fullmatch(given) else uuid.uuid4().hex


@blp.after_request
def echo_request_id(response: Response) -> Response:
    response.headers[HEADER] = g.get("idms_request_id") or uuid.uuid4().hex
    return response
