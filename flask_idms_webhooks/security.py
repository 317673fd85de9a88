"""Task keys, job tokens and the admin check: HMACs under the app's secret, compared in
constant time, checked without a Redis round trip."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable

from flask import Request

from .model.tasks import WEBHOOK_SECRET_PREFIX, Task

#: A host app's own admin check: gets the request, says whether it is an admin's.
AdminCheck = Callable[[Request], bool]


def _mac(secret: bytes, purpose: str, subject: str) -> str:
    digest = hmac.digest(secret, f"{purpose}:{subject}".encode(), "sha256")
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a secret a caller gave with the expected one."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one. (Not
    Werkzeug's ``request.authorization``: it reads a token with a ``=`` inside as
    parameters, and keys are the caller's strings.)"""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class Credentials:
    """The secrets of one app: derived task keys, job tokens, the admin token."""

    def __init__(
        self, secret: bytes, admin_token: str | None, admin_check: AdminCheck | None
    ) -> None:
        self._secret = secret
        self._admin_token = admin_token
        self._admin_check = admin_check
        self._task_keys: dict[tuple[str, int], str] = {}

    @property
    def admin_configured(self) -> bool:
        return bool(self._admin_token or self._admin_check)

    @property
    def host_admin_check(self) -> bool:
        """Whether the host app's own check decides who is an admin (not the token)."""
        return self._admin_check is not None

    def task_key(self, task: Task) -> str:
        """The task's webhook key: the one from the task file, else derived (and kept:
        a task's key is checked on every trigger)."""
        if task.key:
            return task.key
        cache_key = (task.id, task.key_version)
        if cache_key not in self._task_keys:
            self._task_keys[cache_key] = _mac(
                self._secret, "task-key", f"{task.id}:{task.key_version}"
            )
        return self._task_keys[cache_key]

    def callback_secret(self, task: Task) -> str:
        """The secret the task's completion callbacks are signed with: the task's own,
        else derived like its key (under another label, so it is not the key)."""
        if task.callback_secret:
            return task.callback_secret
        digest = hmac.digest(
            self._secret, f"callback-secret:{task.id}:{task.key_version}".encode(), "sha256"
        )
        return WEBHOOK_SECRET_PREFIX + base64.b64encode(digest).decode()

    def job_token(self, job_id: str) -> str:
        """The read-only token of one job, embedded in its polling URL."""
        return _mac(self._secret, "job-token", job_id)

    def check_task_key(self, task: Task, given: str | None) -> bool:
        return same(given, self.task_key(task))

    def check_job_token(self, job_id: str, given: str | None) -> bool:
        return same(given, self.job_token(job_id))

    def is_admin_token(self, given: str | None) -> bool:
        """Whether ``given`` is the admin token (False when none is configured)."""
        return self._admin_token is not None and same(given, self._admin_token)

    def check_admin(self, request: Request) -> bool:
        """The host's check, else the admin token: as a Bearer token, or, on a GET (a
        browser on the dashboard), as the password of HTTP Basic with any user name."""
        if self._admin_check is not None:
            return bool(self._admin_check(request))
        if self._admin_token is None:
            return False
        if self.is_admin_token(bearer_token(request)):
            return True
        basic = request.authorization
        return (
            request.method in ("GET", "HEAD")
            and basic is not None
            and basic.type == "basic"
            and same(basic.password, self._admin_token)
        )
