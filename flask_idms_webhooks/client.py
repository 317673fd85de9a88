"""A client for other machines: start a task's job over HTTP and follow it to its end,
with the polling rules Power Automate keeps (HTTP-CONTRACT.md). Only httpx: no Flask
(docs/client.rst has an example)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from time import monotonic, sleep
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

#: Statuses a poller retries (rule 3 of the contract): the job is not known to be lost.
RETRIED = frozenset({408, 429})
#: Back-off between retries the server gave no Retry-After for: first, then doubled up to.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: The contract's Retry-After: integer seconds, nothing else.
INTEGER = re.compile(r"\d+")


class ClientError(Exception):
    """A request the server refused, could not answer, or answered against the contract.

    ``message`` is the server's own (its error body's ``message``) when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        errors: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message if status_code is None else f"{status_code}: {message}")
        self.message = message
        self.status_code = status_code
        #: The error body's ``errors`` (for a 422: what is wrong with which parameter).
        self.errors = errors
        #: The answer's ``Retry-After`` in seconds, when it had an integer one.
        self.retry_after = retry_after


class Refused(ClientError):
    """A 4xx: wrong key (401), no such task or job (404), invalid parameters (422), …"""


class Unavailable(ClientError):
    """A 5xx or a network error (``status_code`` None); when polling, after retries."""


class ProtocolError(ClientError):
    """An answer the contract does not allow: a 202 without an absolute ``Location`` or
    an integer ``Retry-After``, a 3xx, a body that is not a JSON object."""


class WaitTimeout(ClientError):
    """``wait``'s timeout ran out with the job still queued or running (it goes on)."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        #: The last document read.
        self.job = job


@dataclass(frozen=True)
class RowError:
    """One of a job's first row errors."""

    row: int
    message: str


@dataclass(frozen=True)
class JobError:
    """Why a job failed or was cancelled."""

    type: str
    message: str


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("Retry-After", "").strip()
    return int(value) if INTEGER.fullmatch(value) else None


@dataclass(frozen=True)
class Job:
    """A job status document (HTTP-CONTRACT.md), its fields in snake_case.

    ``location`` is where the job is polled (the 202's ``Location``, else the URL last
    polled); ``retry_after`` the seconds the server asked to wait before the next poll;
    ``http_status`` the status of the answer it came from; ``document`` the raw JSON."""

    execute_id: str
    task_id: str
    status: str
    status_description: str | None
    success: bool | None
    percent_complete: int
    row_count: int | None
    processed_count: int
    inserted_count: int
    updated_count: int
    skipped_count: int
    error_count: int
    errors: tuple[RowError, ...]
    query_parameters: Mapping[str, Any]
    created_on: datetime | None
    started_on: datetime | None
    updated_on: datetime | None
    completed_on: datetime | None
    polling_url: str | None
    retry_after: int | None
    chain: tuple[Mapping[str, Any], ...]
    error: JobError | None
    location: str | None
    http_status: int
    document: dict[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled): its document is final."""
        return self.success is not None

    @classmethod
    def from_document(
        cls,
        document: dict[str, Any],
        *,
        location: str | None = None,
        retry_after: int | None = None,
        http_status: int = 200,
    ) -> Job:
        """A Job of a status document (``location`` defaults to its ``PollingUrl``)."""
        if not isinstance(document.get("ExecuteId"), str):
            raise ProtocolError("the answer is not a job status document (no ExecuteId)")
        error = document.get("Error")

        def count(name: str) -> int:
            return int(document.get(name) or 0)

        try:
            return cls(
                execute_id=document["ExecuteId"],
                task_id=str(document.get("TaskId", "")),
                status=str(document.get("Status", "")),
                status_description=document.get("StatusDescription"),
                success=document.get("Success"),
                percent_complete=count("PercentComplete"),
                row_count=document.get("RowCount"),
                processed_count=count("ProcessedCount"),
                inserted_count=count("InsertedCount"),
                updated_count=count("UpdatedCount"),
                skipped_count=count("SkippedCount"),
                error_count=count("ErrorCount"),
                errors=tuple(
                    RowError(int(e["Row"]), str(e["Message"])) for e in document.get("Errors") or ()
                ),
                query_parameters=document.get("QueryParameters") or {},
                created_on=_when(document.get("CreatedOn")),
                started_on=_when(document.get("StartedOn")),
                updated_on=_when(document.get("UpdatedOn")),
                completed_on=_when(document.get("CompletedOn")),
                polling_url=document.get("PollingUrl"),
                retry_after=retry_after if retry_after is not None else document.get("RetryAfter"),
                chain=tuple(document.get("Chain") or ()),
                error=JobError(str(error.get("Type")), str(error.get("Message")))
                if error
                else None,
                location=location or document.get("PollingUrl"),
                http_status=http_status,
                document=document,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as malformed:
            raise ProtocolError(f"a malformed job status document: {malformed!r}") from None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _refusal(response: httpx.Response) -> ClientError:
    """The exception of an error answer, with the server's message when it gave one."""
    body = _json_object(response) or {}
    message = body.get("message") or response.reason_phrase or "error"
    kind = Unavailable if response.status_code >= 500 else Refused
    return kind(
        str(message),
        status_code=response.status_code,
        errors=body.get("errors"),
        retry_after=_retry_after(response),
    )


def _accepted(response: httpx.Response, url: str) -> Job:
    """The Job of a 202, held to the contract's rules (absolute Location, integer
    Retry-After): a poller that cannot follow them cannot follow the job."""
    location = response.headers.get("Location") or ""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProtocolError(f"202 from {url} without an absolute Location (got {location!r})")
    retry_after = _retry_after(response)
    if retry_after is None:
        got = response.headers.get("Retry-After")
        raise ProtocolError(f"202 from {url} without an integer Retry-After (got {got!r})")
    body = _json_object(response)
    if body is None:
        raise ProtocolError(f"202 from {url} without a JSON object body")
    return Job.from_document(body, location=location, retry_after=retry_after, http_status=202)


def _location(job: Job) -> str:
    if not job.location:
        raise ProtocolError(f"job {job.execute_id} has no polling URL")
    return job.location


class Client:
    """A flask-idms-webhooks server, seen from another machine.

    ``base_url`` is the server's root (``https://host``, or ``https://host/app`` when the
    app is mounted under a path); the routes' ``prefix`` (``IDMS_WEBHOOKS_URL_PREFIX``)
    is added to it, unless ``base_url`` already ends with it. ``key`` is the task key,
    sent as the ``X-Webhook-Key`` header (never in a URL the client builds). ``timeout``
    bounds each request; ``transport`` and ``headers`` go to the underlying
    ``httpx.Client``. ``retries`` is how many failed polls in a row (408, 429, 5xx,
    network errors) ``wait`` tolerates. Use it as a context manager, or ``close()`` it."""

    def __init__(
        self,
        base_url: str,
        key: str | None = None,
        *,
        prefix: str = "/idms",
        timeout: float = 30.0,
        retries: int = 10,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.base_url = root if root.endswith(prefix) else root + prefix
        self.key = key
        self.retries = retries
        sent = {"Accept": "application/json", **(headers or {})}
        if key is not None:
            sent["X-Webhook-Key"] = key
        self._http = httpx.Client(headers=sent, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.RequestError as error:
            raise Unavailable(f"{method} {url.split('?')[0]}: {error}") from error

    def start(
        self,
        task_id: str,
        parameters: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Start a job of ``task_id`` through its polling webhook
        (``POST {base_url}/tasks/{task_id}/jobs``); its first document."""
        url = f"{self.base_url}/tasks/{quote(task_id, safe='')}/jobs"
        return self.start_url(url, parameters, idempotency_key)

    def start_url(
        self,
        polling_webhook_url: str,
        parameters: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Start a job through a task's polling webhook URL as given (``Webhooks.Polling``
        of the task document, which may carry ``?key=``).

        Not retried: without an ``idempotency_key`` a retry could start a second job.
        Raises ``Refused`` (4xx), ``Unavailable`` (5xx, network), ``ProtocolError`` (any
        answer but a 202 that keeps the contract: the standard webhook's 200, say)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"QueryParameters": dict(parameters)} if parameters is not None else None
        response = self._send("POST", polling_webhook_url, json=body, headers=headers)
        if response.status_code >= 400:
            raise _refusal(response)
        if response.status_code != 202:
            said = f"{response.status_code}, not 202: is this a task's polling webhook (…/jobs)?"
            raise ProtocolError(said, status_code=response.status_code)
        return _accepted(response, polling_webhook_url.split("?")[0])

    def status(self, job: Job) -> Job:
        """One poll of the job's ``Location``: 202 while queued or running, else final."""
        return self._answer(self._send("GET", _location(job)), _location(job))

    def _answer(self, response: httpx.Response, url: str) -> Job:
        """The Job of a poll's answer: a 202 follows the rules, any other 2xx is final."""
        if response.status_code >= 400:
            raise _refusal(response)
        if response.status_code == 202:
            return _accepted(response, url.split("?")[0])
        body = _json_object(response) if 200 <= response.status_code < 300 else None
        if body is None:
            said = f"{response.status_code} from {url.split('?')[0]}: not a job status document"
            raise ProtocolError(said, status_code=response.status_code)
        return Job.from_document(body, location=url, http_status=response.status_code)

    def _poll(self, job: Job, deadline: float | None) -> Job:
        """One poll, retried after 408, 429, 5xx and network errors (after their
        Retry-After, else a doubling back-off) until ``retries`` or the deadline."""
        backoff = FIRST_BACKOFF
        failures = 0
        while True:
            try:
                return self.status(job)
            except (Refused, Unavailable) as error:
                if isinstance(error, Refused) and error.status_code not in RETRIED:
                    raise
                failures += 1
                delay = error.retry_after if error.retry_after is not None else backoff
                backoff = min(backoff * 2, MAX_BACKOFF)
                if failures > self.retries:
                    raise
                if deadline is not None:
                    remaining = deadline - monotonic()
                    if remaining <= 0:  # the job may well run on: the wait ran out
                        said = f"job {job.execute_id} still {job.status} (the last poll: {error})"
                        raise WaitTimeout(said, job) from error
                    delay = min(delay, remaining)
                sleep(delay)

    def wait(
        self,
        job: Job,
        on_progress: Callable[[Job], None] | None = None,
        timeout: float | None = None,
        interval: float | None = None,
    ) -> Job:
        """Poll the job until it has finished; its final Job (succeeded, failed or
        cancelled alike: look at ``success`` and ``status``).

        Between polls it sleeps the server's ``Retry-After``, or ``interval`` when that is
        shorter (a terminal refreshing often); a retried poll waits as long as the server
        asks, whatever ``interval`` says. Polling stops at the first answer that is
        not a 202. ``on_progress`` is called with each 202's Job. Raises ``WaitTimeout``
        (carrying the last Job) when ``timeout`` seconds run out first; ``Refused``,
        ``Unavailable``, ``ProtocolError`` as ``status`` does, once retries are spent."""
        deadline = None if timeout is None else monotonic() + timeout
        current = job
        # A Job from ``cancel`` may already be final; from a poll, only a 202 is not.
        while current.http_status == 202 and not current.finished:
            delay = float(current.retry_after or 0)
            if interval is not None:
                delay = min(delay, interval)
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    said = f"job {current.execute_id} still {current.status} after {timeout:g} s"
                    raise WaitTimeout(said, current)
                delay = min(delay, remaining)
            sleep(delay)
            current = self._poll(current, deadline)
            if current.http_status == 202 and on_progress is not None:
                on_progress(current)
        return current

    def cancel(self, job: Job) -> Job:
        """Cancel a queued or running job (``DELETE`` of its poll URL, with the task key:
        the job token only reads); the document answered. A job that has already finished
        is not an error: its final Job is answered (the server's 409 carries it)."""
        response = self._send("DELETE", _location(job))
        if response.status_code == 409:
            errors = (_json_object(response) or {}).get("errors")
            finished = errors.get("Job") if isinstance(errors, dict) else None
            if isinstance(finished, dict):
                return Job.from_document(finished, location=job.location)
        if response.status_code >= 400:
            raise _refusal(response)
        body = _json_object(response)
        if body is None:
            raise ProtocolError(f"{response.status_code} from the cancel: not a job document")
        return Job.from_document(body, location=job.location, http_status=response.status_code)
