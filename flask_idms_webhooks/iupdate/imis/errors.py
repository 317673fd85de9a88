"""The iMIS client's errors, each also the engine's error it means (a row refused, a
source unreadable, a target unreachable)."""

from __future__ import annotations

from ...errors import IdmsWebhooksError, TransientError
from ..base import RowWriteError, SourceReadError, TargetUnavailable


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
