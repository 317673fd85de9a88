"""Task keys, job tokens and the admin check: HMACs under the app's secret, compared in
constant time, checked without a Redis round trip."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable

from flask import Request

from .tasks import Task

#: A host app's own admin check: gets the request, says whether it is an admin's.
AdminCheck = Callable[[Request], bool]


def _mac(secret: bytes, purpose: str, subject: str) -> str:
    return _encoded(hmac.digest(secret, f"{purpose}:{subject}".encode(), "sha256"))


def _encoded(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a secret a caller gave with the expected one."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class Credentials:
    """The secrets of one app: derived task keys, job tokens, the admin token."""

    def __init__(
        self, secret: bytes, admin_token: str | None, admin_check: AdminCheck | None
    ) -> None:
        self._secret = secret
        self._admin_token = admin_token
        self._admin_check = admin_check
        self._task_keys: dict[tuple[str, int], str] = {}
        # Keyed once: a job token (one per trigger and per poll) copies it, and skips
        # OpenSSL's key setup and digest lookup. Same value as ``_mac(.., "job-token", ..)``.
        self._job_token_mac = hmac.new(secret, b"job-token:", "sha256")

    @property
    def admin_configured(self) -> bool:
        return bool(self._admin_token or self._admin_check)

    def task_key(self, task: Task) -> str:
        """The task's webhook key: the one from the task file, else derived."""
        if task.key:
            return task.key
        cache_key = (task.id, task.key_version)
        if cache_key not in self._task_keys:
            self._task_keys[cache_key] = _mac(
                self._secret, "task-key", f"{task.id}:{task.key_version}"
            )
        return self._task_keys[cache_key]

    def job_token(self, job_id: str) -> str:
        """The read-only token of one job, embedded in its polling URL."""
        mac = self._job_token_mac.copy()
        mac.update(job_id.encode())
        return _encoded(mac.digest())

    def check_task_key(self, task: Task, given: str | None) -> bool:
        return same(given, self.task_key(task))

    def check_job_token(self, job_id: str, given: str | None) -> bool:
        return same(given, self.job_token(job_id))

    def check_admin(self, request: Request) -> bool:
        if self._admin_check is not None:
            return bool(self._admin_check(request))
        if self._admin_token is None:
            return False
        return same(bearer_token(request), self._admin_token)


def bearer_token(request: Request) -> str | None:
    # Headers straight from the WSGI environ: what ``request.headers`` would answer,
    # without building it (the webhooks and the poll are hot paths).
    header: str = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def presented_task_key(request: Request) -> str | None:
    """A task key as a caller may send it: Bearer, ``X-Webhook-Key`` or ``?key=``."""
    return (
        bearer_token(request)
        or request.environ.get("HTTP_X_WEBHOOK_KEY")
        or request.args.get("key")
        or None
    )
