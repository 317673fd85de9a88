"""Completion callbacks: once a job is sealed, its final document is POSTed to the
``CallbackUrl`` its trigger gave, signed per the Standard Webhooks specification, at
least once.

Each attempt is an RQ job (``deliver_callback``), on the app's queue: a retry is put on
RQ's schedule, so the attempts survive the restart of any process. The callback is marked
due in the transaction that seals its job; the first attempt is queued right after, by
whoever sealed it; and every reaper pass (in every worker) sweeps the callbacks that are
due and have no delivery waiting, so neither a crash between the two nor a worker killed
mid-attempt loses one (see ``callback_records`` for the lease an attempt holds).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from flask import current_app
from redis.client import Pipeline
from rq import Queue
from rq.job import JobStatus
from standardwebhooks import Webhook

from ..config import EXTENSION_KEY, Settings, package_version
from ..errors import ConfigurationError, StoreUnavailable
from ..logs import about_job, job_is_of
from ..model.tasks import Task
from ..security import Credentials
from .callback_policy import CallbackPolicy, without_query
from .callback_records import CLAIM_SLACK, DELIVERED, FAILED, RETRYING, CallbackView, Claim
from .delivery import Outcome, Sender
from .documents import JobDocument
from .store import JobStore

__all__ = ["DELIVERY_ENTRY_POINT", "Callbacks", "deliver_callback", "is_delivery"]

logger = logging.getLogger("flask_idms_webhooks")

#: The RQ job function of an attempt, by dotted path.
DELIVERY_ENTRY_POINT = "flask_idms_webhooks.jobs.deliver_callback"
#: How a delivery's RQ job id starts (a job's RQ job id never does: see ``rq_job_id``).
DELIVERY_PREFIX = "callback-"
#: What a callback records when its job's sealed document expired before it went out.
EXPIRED = "Expired"
#: What a callback records when its window ended with no attempt recorded.
WINDOW_ENDED = "RetryWindowEnded"
#: RQ's states of a delivery about to run: the sweep leaves it be. (A retry on RQ's
#: schedule that is overdue is queued again: no worker may run RQ's scheduler; the
#: claim's lease keeps a late copy from sending twice at once.)
WAITING = (JobStatus.QUEUED,)


def is_delivery(rq_id: str) -> bool:
    """Whether an RQ job id is a callback's delivery (not a dispatch of a job)."""
    return rq_id.startswith(DELIVERY_PREFIX)


class _HasCallbacks(Protocol):
    @property
    def callbacks(self) -> Callbacks: ...


def deliver_callback(job_id: str) -> None:
    """The RQ job function: one attempt of a job's callback, in the worker's app context."""
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise ConfigurationError("IdmsWebhooks is not initialised on the worker's app")
    with about_job(job_id):
        cast(_HasCallbacks, state).callbacks.deliver(job_id)


def user_agent() -> str:
    return f"flask-idms-webhooks/{package_version()} (completion callback)"


class Callbacks:
    """The completion callbacks of one app's jobs."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        queue: Queue,
        tasks: Mapping[str, Task],
        credentials: Credentials,
    ) -> None:
        self.policy = CallbackPolicy.of(settings)
        self.store = store
        self.queue = queue
        self.tasks = tasks
        self.credentials = credentials
        self.sender = Sender(
            allow_private=self.policy.allow_private,
            timeout=self.policy.timeout,
            user_agent=user_agent(),
        )
        # RQ's limit on an attempt, beyond the receiver's timeout (connect, answer, a
        # little of its body): the bound of a receiver that answers byte by byte.
        self.job_timeout = 2 * self.policy.timeout + 5
        # An attempt in flight holds its callback this long: past it, its worker died.
        self.lease = self.job_timeout + settings.heartbeat_timeout
        # A callback due for this long with no delivery waiting is swept up.
        self.grace = float(settings.heartbeat_timeout)

    # -- queueing ------------------------------------------------------------------------
    def enqueuer(self, job_id: str, rq_id: str, at: float | None = None) -> Any:
        def enqueue(pipe: Pipeline) -> None:
            options: dict[str, Any] = {
                "args": (job_id,),
                "job_id": rq_id,
                "result_ttl": 600,
                "failure_ttl": 86400,
                "description": f"idms-webhooks callback of {job_id}",
                "pipeline": pipe,
            }
            if at is None:
                self.queue.enqueue_call(DELIVERY_ENTRY_POINT, timeout=self.job_timeout, **options)
            else:
                when = datetime.fromtimestamp(at, tz=UTC)
                self.queue.enqueue_at(
                    when, DELIVERY_ENTRY_POINT, job_timeout=self.job_timeout, **options
                )

        return enqueue

    def queue_now(self, job_id: str) -> None:
        rq_id = f"{DELIVERY_PREFIX}{job_id}-{secrets.token_hex(4)}"
        self.store.queue_delivery(job_id, rq_id, self.enqueuer(job_id, rq_id))

    def sealed(self, document: JobDocument) -> None:
        """A job was just sealed (by the caller): queue its callback's first attempt, if it
        has one. Redis being away now loses nothing: the sweep queues it later."""
        if not document.get("CallbackUrl"):
            return
        try:
            self.queue_now(document["ExecuteId"])
        except StoreUnavailable as error:
            logger.warning(
                "job %s: its callback is not queued yet (%s); a reaper pass will",
                document["ExecuteId"],
                error,
            )

    def sweep(self) -> int:
        """Queue the callbacks due (for a while) with no delivery waiting: one whose first
        attempt was never queued, whose worker died mid-attempt, or whose retry RQ's
        scheduler has not queued (no worker runs it). Answers how many were queued."""
        now = time.time()
        queued = 0
        for job_id, rq_id in self.store.due_callbacks(before=now - self.grace):
            job = self.queue.fetch_job(rq_id) if rq_id else None
            if job is not None and job.get_status(refresh=False) in WAITING:
                continue
            self.queue_now(job_id)
            queued += 1
        return queued

    # -- an attempt ----------------------------------------------------------------------
    def deliver(self, job_id: str) -> None:
        """One attempt of a job's callback, if one is due, and what comes next: delivered,
        tried again later, or given up."""
        claim = self.store.claim_callback(job_id, self.lease)
        if not isinstance(claim, Claim):
            return  # nothing left to do, or not due: another delivery has it
        job_is_of(claim.task_id)
        shown = without_query(claim.url)
        if claim.body is None:
            logger.warning(
                "job %s: callback to %s given up: the job's record expired", job_id, shown
            )
            self.store.record_callback(job_id, FAILED, EXPIRED)
            return
        if time.time() > claim.sealed_at + self.policy.retry_for + 2 * self.grace + CLAIM_SLACK:
            # Past the window (and a late sweep's time): its last attempts ended unrecorded
            # (their workers died, or RQ's timeout stopped them): it is given up.
            logger.warning("job %s: callback to %s given up: retried for long enough", job_id,
                           shown)  # fmt: skip
            self.store.record_callback(job_id, FAILED, WINDOW_ENDED)
            return
        task = self.tasks.get(claim.task_id)
        if task is None:
            outcome = Outcome("UnknownTask", retry=True)  # a worker of an older release
        else:
            outcome = self.sender.send(claim.url, claim.body, self.signed(task, job_id, claim.body))
        self.record(job_id, claim, outcome, shown)

    def signed(self, task: Task, job_id: str, body: bytes) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt: the same ``webhook-id`` (the job
        id) on every attempt, this attempt's time, the signature of both and the body."""
        timestamp = int(time.time())
        webhook = Webhook(self.credentials.callback_secret(task))
        signature = webhook.sign(job_id, datetime.fromtimestamp(timestamp, tz=UTC), body)
        return {
            "webhook-id": job_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }

    def record(self, job_id: str, claim: Claim, outcome: Outcome, shown: str) -> None:
        attempt = claim.attempt
        if outcome.delivered:
            logger.info("job %s: callback to %s delivered (%s), attempt %d", job_id, shown,
                        outcome.status, attempt)  # fmt: skip
            self.store.record_callback(job_id, DELIVERED, outcome.status, delivered=True)
            return
        now = time.time()
        deadline = claim.sealed_at + self.policy.retry_for
        # (An attempt planned at the deadline may run up to the claim's slack before it.)
        if not outcome.retry or now >= deadline - CLAIM_SLACK:
            why = "not retried" if not outcome.retry else "retried for long enough"
            logger.warning("job %s: callback to %s failed (%s), attempt %d: %s", job_id, shown,
                           outcome.status, attempt, why)  # fmt: skip
            self.store.record_callback(job_id, FAILED, outcome.status)
            return
        # The last attempt of the window is at its end, whatever the wait would be.
        at = min(now + self.policy.next_wait(attempt, outcome.retry_after), deadline)
        logger.warning("job %s: callback to %s failed (%s), attempt %d; retrying in %d s",
                       job_id, shown, outcome.status, attempt, round(at - now))  # fmt: skip
        rq_id = f"{DELIVERY_PREFIX}{job_id}-{secrets.token_hex(4)}"
        self.store.record_callback(
            job_id,
            RETRYING,
            outcome.status,
            next_at=at,
            enqueue=(rq_id, self.enqueuer(job_id, rq_id, at=at)),
        )

    def view(self, job_id: str) -> CallbackView | None:
        """The delivery state of a job's callback (None: it has none)."""
        return self.store.callback_view(job_id)
