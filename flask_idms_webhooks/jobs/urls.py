"""The one place where the URLs we hand out are built and read: a task's webhook URLs and
a job's PollingUrl (its poll route with its read-only job token)."""

from __future__ import annotations

import os
from typing import TypedDict
from urllib.parse import quote

from werkzeug.urls import iri_to_uri

from ..model.tasks import Task
from ..security import Credentials


class WebhookUrls(TypedDict):
    """A task's two webhooks, each with the task key in its query."""

    Standard: str
    Polling: str


def local_base_url() -> str:
    """Where a server on this machine answers when nothing else says: gunicorn's default
    bind (``127.0.0.1:8000``, or ``$PORT``), as ``make run`` serves."""
    return f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"


class Urls:
    """The URLs of one app: on its public URL when set, else on a given root (the
    request's, or the command line's), under its route prefix. Every URL is a URI."""

    def __init__(self, prefix: str, public_url: str | None, credentials: Credentials) -> None:
        self.prefix = prefix
        self.public_url = iri_to_uri(public_url) if public_url else None
        self._credentials = credentials

    def base(self, root: str) -> str:
        """The base of the URLs we hand out: the public URL, else ``root`` (a URI: a
        request's root URL, or a base URL given on the command line)."""
        return self.public_url or root.rstrip("/")

    def webhooks(self, base: str, task: Task) -> WebhookUrls:
        key = quote(self._credentials.task_key(task), safe="")
        root = f"{base.rstrip('/')}{self.prefix}/tasks/{task.id}"
        return {"Standard": f"{root}/execute?key={key}", "Polling": f"{root}/jobs?key={key}"}

    def polling_url(self, base: str, job_id: str) -> str:
        token = self._credentials.job_token(job_id)
        return f"{base.rstrip('/')}{self.prefix}/jobs/{job_id}?token={token}"

    def base_of(self, polling_url: str) -> str:
        """The base a PollingUrl was built on (a chained job's URLs are built on it too)."""
        return polling_url[: polling_url.index(f"{self.prefix}/jobs/")]
