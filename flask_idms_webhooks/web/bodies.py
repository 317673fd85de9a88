"""Hardened request-body parsing: hostile JSON is a clear 4xx, never a 500.

webargs only catches JSON *decode* errors and treats a non-JSON body as missing; this
parser refuses a non-JSON content type (415), NaN/Infinity, duplicate keys, absurd
nesting and huge numbers (400). The size limit (413) is set per request by the view layer.
A body the server cannot read (gunicorn's malformed chunked framing) is a 400 too.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import flask
from flask_smorest import Blueprint, abort
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import RequestEntityTooLarge

MAX_DEPTH = 32
MAX_NUMBER_DIGITS = 40
#: How much of the server's own error text a 400 repeats (it quotes the client's bytes).
MAX_SERVER_ERROR_CHARS = 100


class _Refused(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not valid JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _Refused(f"number with more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS * 2:
        raise _Refused("number too long")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number out of range: {text[:20]}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {key[:50]!r}")
        result[key] = value
    return result


def _check_value(value: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that are not valid Unicode (a lone
    surrogate escape such as "\\ud800" is valid JSON syntax but cannot be stored)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
            stack.extend((key, depth) for key in item)
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise _Refused("a string holds a lone surrogate (not valid Unicode)") from None


@functools.cache
def unreadable_body_errors() -> tuple[type[Exception], ...]:
    """What the WSGI server raises out of ``wsgi.input`` for a body it cannot read.

    gunicorn parses chunked framing while the app reads: a bad chunk size, extension or
    terminator, a bad trailer, a body cut short (``NoMoreData``) raise inside
    ``get_data``, and Flask would answer 500. Every ``ParseException`` is the client's
    fault there (the request line and headers were parsed before the app ran). gunicorn
    is optional (the ``server`` extra), so it is imported only when a read fails.
    """
    try:
        from gunicorn.http import errors
    except ImportError:
        return ()
    return (errors.ParseException, errors.NoMoreData)


def parse_json_body(request: flask.Request) -> Any:
    """The request's JSON body, ``core.missing`` when there is none; aborts on bad input."""
    limit = request.max_content_length
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        abort(413, message=f"The body is larger than {limit} bytes.")
    except unreadable_body_errors() as error:
        detail = str(error)[:MAX_SERVER_ERROR_CHARS]
        abort(400, message=f"The request body could not be read: {detail}.")
    # A chunked body has no Content-Length: Werkzeug stops reading at the limit, silently.
    if limit is not None and request.content_length is None and len(data) >= limit:
        abort(413, message=f"The body is larger than {limit} bytes.")
    if not data.strip():
        return core.missing
    if not is_json_request(request):
        abort(415, message="The body must be JSON, sent with Content-Type: application/json.")
    try:
        value = json.loads(
            data,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
        _check_value(value)
    except RecursionError:
        abort(400, message=f"Malformed JSON: nested deeper than {MAX_DEPTH} levels.")
    except _Refused as error:
        abort(400, message=f"Malformed JSON: {error}.")
    except (ValueError, UnicodeDecodeError) as error:
        abort(400, message=f"Malformed JSON: {error}.")
    return value


class HardenedParser(FlaskParser):
    def _raw_load_json(self, req: flask.Request) -> Any:
        return parse_json_body(req)


class HardenedBlueprint(Blueprint):  # type: ignore[misc]
    """A flask-smorest Blueprint whose bodies go through :class:`HardenedParser`."""

    ARGUMENTS_PARSER = HardenedParser()
