"""The iMIS client's errors, each also the engine's error it means (a row refused, a
source unreadable, a target unreachable)."""

from __future__ import annotations

import httpx

from ...errors import IdmsWebhooksError, TransientError
from ..base import RowWriteError, SourceReadError, TargetUnavailable

#: The longest message kept from an answer that is not iMIS's JSON.
MESSAGE_LIMIT = 500


class ImisError(IdmsWebhooksError):
    """Base class of the iMIS client's errors."""


class ImisAuthError(ImisError, TargetUnavailable, SourceReadError):
    """iMIS refused the credentials (or a fresh token)."""


class ImisUnavailable(ImisError, TargetUnavailable, SourceReadError, TransientError):
    """iMIS could not be reached, timed out, or kept answering 429/5xx after the retries."""


class ImisRequestError(ImisError, RowWriteError):
    """iMIS refused one request (a 4xx, or a write whose outcome is unknown).

    ``status`` is the HTTP status, or None when no usable answer came back.
    """

    def __init__(self, status: int | None, message: str, *, request: str = "") -> None:
        self.status, self.message, self.request = status, message, request
        answered = f"iMIS answered {status}" if status is not None else "iMIS gave no answer"
        super().__init__(f"{answered} to {request}: {message}" if request else message)


def error_message(response: httpx.Response) -> str:
    """What iMIS says went wrong: ``Errors.$values[0].Message``, ``Message``, or the body."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        errors = answer.get("Errors")
        values = errors.get("$values") if isinstance(errors, dict) else None
        if values and isinstance(values[0], dict) and values[0].get("Message"):
            return str(values[0]["Message"])
        if isinstance(answer.get("Message"), str) and answer["Message"]:
            return str(answer["Message"])
    text = response.text.strip() or f"HTTP {response.status_code}"
    return text[:MESSAGE_LIMIT] + "…" if len(text) > MESSAGE_LIMIT else text


def login_refusal(response: httpx.Response) -> str:
    """Why ``/token`` refused the login (OWIN's ``error_description``, ...)."""
    try:
        answer = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(answer, dict):
        for key in ("error_description", "error", "Message"):
            if isinstance(answer.get(key), str) and answer[key]:
                return str(answer[key])
    return f"HTTP {response.status_code}"
