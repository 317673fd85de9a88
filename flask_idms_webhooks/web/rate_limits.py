"""The web side of the rate limits (``jobs.rate_limits``): what each one counts, against
whom, and the 429 with ``Retry-After`` that a refusal answers.

- ``IDMS_WEBHOOKS_RATE_LIMIT`` (or a task's ``rate_limit``): a task's triggers that would
  start a job, counted once the key, the body and its QueryParameters passed; a repeat of
  an ``Idempotency-Key`` already claimed starts nothing and is not counted (it replays).
- ``IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT``: the answers 401 to one client address. Past it,
  its failing requests get 429 instead; a request whose credentials are valid goes on.
- ``IDMS_WEBHOOKS_POLL_RATE_LIMIT``: the polls of one client address, counted first.

The client address is ``request.remote_addr``: the peer, or what ``ProxyFix``
(``IDMS_WEBHOOKS_PROXY_FIX``) read in the proxy's headers.
"""

from __future__ import annotations

from typing import NoReturn

from flask import current_app, request

from ..jobs.rate_limits import Refusal
from ..model.tasks import Task
from ..state import WebhooksState, state_of
from .answers import refuse


def client_address() -> str:
    return request.remote_addr or "unknown"


def too_many(refusal: Refusal, message: str) -> NoReturn:
    """429 in the one error shape, with the whole seconds until the limit frees a slot."""
    seconds = refusal.retry_after
    refuse(
        429,
        f"{message} Retry after {seconds} s.",
        headers={"Retry-After": str(seconds)},
    )


def limit_trigger(state: WebhooksState, task: Task, claim_key: str | None) -> None:
    """Count a trigger that would start a job of ``task``; 429 past its limit.
    ``claim_key``: its ``Idempotency-Key``'s claim, if it has one."""
    if task.id not in state.rate_limits.triggers:
        return
    if claim_key is not None and state.store.claimed(claim_key):
        return  # a replay of the first answer: nothing starts
    refusal = state.rate_limits.trigger(task.id)
    if refusal is not None:
        too_many(refusal, f"Task {task.id!r} was triggered too often: at most {refusal.allowed}.")


def limit_auth_failure(reason: str) -> None:
    """Count the failed credentials of this request (``reason``: what its 401 says);
    429 instead of the 401 past the client address's limit."""
    refusal = state_of(current_app).rate_limits.auth_failure(client_address())
    if refusal is not None:
        too_many(
            refusal,
            f"Too many failed credentials from this address: at most {refusal.allowed} "
            f"(valid credentials still pass). This request's: {reason}",
        )


def limit_poll(state: WebhooksState) -> None:
    """Count a poll from this client address; 429 past its limit."""
    refusal = state.rate_limits.poll(client_address())
    if refusal is not None:
        too_many(refusal, f"Too many polls from this address: at most {refusal.allowed}.")
