"""The extension's log lines, on the web side and in workers: text or JSON lines
(``IDMS_WEBHOOKS_LOG_FORMAT``), each carrying what it is about (``task_id``, ``job_id``,
the request's ``request_id``), with keys, tokens and Bearer credentials redacted."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

from flask import has_request_context, request
from pythonjsonlogger.json import JsonFormatter

#: The logger of the whole extension (and the parent of the engine's).
LOGGER = "flask_idms_webhooks"
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMATS = ("text", "json")
REDACTED = "[redacted]"

#: The job a worker's thread is running: every line logged meanwhile names it.
_job: ContextVar[dict[str, str] | None] = ContextVar("idms_job", default=None)
#: Where a request's id comes from: the web side's (``use_request_ids``), else none.
_request_ids: list[Callable[[], str | None]] = [lambda: None]


def use_request_ids(source: Callable[[], str | None]) -> None:
    """The request ids of the web side (``web.tracing``), for the lines of a request."""
    _request_ids[0] = source


def _spelled(char: str) -> str:
    """A pattern for one character as a client may send it: itself, or percent-encoded
    once or more (``?``, ``%3F``, ``%253F``); letters in either case (``k``, ``%4B``)."""
    codes = "|".join(sorted({f"{ord(variant):02X}" for variant in {char.lower(), char.upper()}}))
    return f"(?:{re.escape(char)}|%(?:25)*(?:{codes}))"


def _secret_query() -> re.Pattern[str]:
    # A path sent as ``/jobs%3Fkey=...`` is not a query to Werkzeug, but the key is in the
    # request line all the same: match the separators, the names and ``=`` however they
    # are encoded. A value ends at a separator (raw or encoded) or whitespace.
    separator = "|".join(_spelled(char) for char in "?&;")
    name = "|".join("".join(map(_spelled, word)) for word in ("key", "token", "signature"))
    value = r"(?:(?!%(?:25)*(?:26|3B))[^&;\s])*"
    return re.compile(f"(?i)((?:^|{separator})(?:{name}){_spelled('=')}){value}")


SECRET_QUERY = _secret_query()
BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s,;\"']+")


def redact_query(text: str) -> str:
    """``a?key=s3cret&x=1`` -> ``a?key=[redacted]&x=1``; ``a%3Fkey=s3cret`` too."""
    return SECRET_QUERY.sub(lambda match: match.group(1) + REDACTED, text)


def redact(text: str) -> str:
    """``text`` without query secrets (``key=``, ``token=``, ``signature=``) and Bearer
    credentials."""
    return BEARER.sub(lambda match: match.group(1) + REDACTED, redact_query(text))


@contextmanager
def about_job(job_id: str) -> Iterator[None]:
    """Every line logged in this thread (context) meanwhile carries the job's id, and its
    task's once :func:`job_is_of` said it."""
    token = _job.set({"job_id": job_id})
    try:
        yield
    finally:
        _job.reset(token)


def job_is_of(task_id: str) -> None:
    """The job at hand (:func:`about_job`) is one of ``task_id``."""
    current = _job.get()
    if current is not None:
        current["task_id"] = task_id


class Context(logging.Filter):
    """Adds ``task_id``, ``job_id`` and ``request_id`` to a line, where known: from the
    job at hand, else the request (its route's ids, its ``X-Request-Id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        known: dict[str, Any] = dict(_job.get() or {})
        if has_request_context():
            known.setdefault("request_id", _request_ids[0]())
            for name in ("task_id", "job_id"):
                if request.view_args and name in request.view_args:
                    known.setdefault(name, request.view_args[name])
        for name, value in known.items():
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


class Redacting(logging.Filter):
    """Redacts secrets from a line's message (its arguments merged in)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def handler(form: str, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler of the extension's lines in ``form`` (``text`` or ``json``)."""
    made = logging.StreamHandler(stream)
    if form == "json":
        made.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"})
        )
    else:
        made.setFormatter(logging.Formatter(TEXT_FORMAT))
    made.addFilter(Context())
    made.addFilter(Redacting())
    return made


def log_to(form: str, level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Write the extension's lines (and the engine's) through a handler of its own in
    ``form``, once; they no longer reach the root logger's handlers."""
    logger = logging.getLogger(LOGGER)
    for existing in [h for h in logger.handlers if getattr(h, "idms_form", None)]:
        logger.removeHandler(existing)
    made = handler(form, stream)
    made.idms_form = form  # type: ignore[attr-defined]
    logger.addHandler(made)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    logger.propagate = False
