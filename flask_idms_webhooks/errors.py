"""Domain exceptions. The view layer maps them to HTTP; nothing here knows about HTTP."""

from __future__ import annotations

from typing import Any


class IdmsWebhooksError(Exception):
    """Base class of every error this extension raises on purpose."""


class ConfigurationError(IdmsWebhooksError):
    """A setting is missing or has a bad value; the message names the full key."""


class TaskLoadError(IdmsWebhooksError):
    """A task file or a Python task registration is invalid; names file, task and key."""

    def __init__(self, message: str, *, source: str = "", task: str = "", key: str = "") -> None:
        where = ", ".join(
            part
            for part in (
                source and f"file {source}",
                task and f"task {task!r}",
                key and f"key {key!r}",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.detail, self.source, self.task, self.key = message, source, task, key


class ParameterError(IdmsWebhooksError):
    """QueryParameters that cannot be resolved: ``errors`` maps each key to its messages."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__("Invalid QueryParameters.")
        self.errors = errors


class TransientError(IdmsWebhooksError):
    """A failure a later attempt may not meet: the source or target could not be reached
    (after the client's own retries). A task with ``retries`` is run again after it."""


class JobCancelled(IdmsWebhooksError):
    """Raised inside a running task when its job was cancelled; ends the job ``cancelled``."""


class StoreUnavailable(IdmsWebhooksError):
    """Redis could not serve a request: refused, timed out, stalled, loading, out of
    memory, read-only.

    ``sent`` tells whether the request's commands may have reached Redis: a timeout after
    they were written (a paused Redis runs them when it resumes) is an unknown outcome;
    a connection that never opened, or a command Redis refused, changed nothing.
    """

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class OutcomeUnknown(StoreUnavailable):
    """A new job's writes were sent and no answer came: the job may exist. Carries the
    ``ExecuteId`` and ``PollingUrl`` it was given, for the caller to look."""

    def __init__(self, message: str, *, execute_id: str, polling_url: str) -> None:
        super().__init__(message, sent=True)
        self.execute_id, self.polling_url = execute_id, polling_url


class TaskBusy(IdmsWebhooksError):
    """A task that runs one job at a time (``concurrency`` reject or join) has a job
    queued or running: nothing was started. Carries that job's document."""

    def __init__(self, running: dict[str, Any], *, beating: bool = True) -> None:
        super().__init__(f"a job of task {running['TaskId']!r} is already {running['Status']}")
        self.running = running
        #: False: it is running with no heartbeat (its worker may have died).
        self.beating = beating
