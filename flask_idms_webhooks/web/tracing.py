"""Each request's id: the caller's ``X-Request-Id`` when it is a plain token, else a new one;
echoed in the answer and carried by every log line of the request (``logs.Context``
asks for it), so a caller's report and the service's log meet."""

from __future__ import annotations

import re
import secrets

from flask import Response, request

from ..logs import use_request_ids
from .blueprint import blp

HEADER = "X-Request-Id"
#: What a caller's id may be (anything else is replaced: it goes into log lines).
PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Where a request keeps its id.
KEPT = "idms_webhooks.request_id"


def request_id() -> str:
    """This request's id (taken or made once, kept in the WSGI environ: the poll's hot
    path reads it there, not through the header and context proxies)."""
    environ = request.environ
    known: str | None = environ.get(KEPT)
    if known is None:
        given = environ.get("HTTP_X_REQUEST_ID", "")
        known = environ[KEPT] = given if PLAIN_ID.fullmatch(given) else secrets.token_hex(16)
    return known


@blp.after_request
def echo_request_id(response: Response) -> Response:
    response.headers[HEADER] = request_id()
    return response


def request_id_if_serving() -> str | None:
    """For log lines: the id of a request of this blueprint's, None for any other."""
    return request_id() if request.blueprint == blp.name else None


use_request_ids(request_id_if_serving)
