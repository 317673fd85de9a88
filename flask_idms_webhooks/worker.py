"""RQ workers bound to an app, and the reaper of jobs whose worker died."""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Flask
from rq import SimpleWorker, Worker
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from .errors import StoreUnavailable
from .jobs.callbacks import is_delivery
from .jobs.documents import CANCELLED, FAILED, HORSE_DIED
from .jobs.lifecycle import job_id_of
from .jobs.patience import patiently
from .jobs.redis import queue_for, warn_if_evicting, worker_redis
from .jobs.store import available, is_store_error, loads
from .state import WebhooksState, state_of

logger = logging.getLogger("flask_idms_webhooks")


class JobSealedFailed(Exception):
    """What RQ's failed registry shows for a job sealed ``failed`` (its error's message)."""


def file_cancelled(job: Any, queue: Any, pipe: Any) -> None:
    """RQ's job as cancelled: its status, its canceled registry, kept as long as a failure."""
    ttl = job.failure_ttl or 0
    job.set_status(JobStatus.CANCELED, pipeline=pipe)
    queue.failed_job_registry.remove(job, pipeline=pipe)
    queue.canceled_job_registry.add(job, ttl=ttl, pipeline=pipe)
    if ttl > 0:
        pipe.expire(job.key, ttl)


@contextlib.contextmanager
def redis_away(what: str) -> Iterator[None]:
    """Go on when Redis cannot serve now (refused, timed out, out of memory, loading):
    RQ 3's worker quits on such an error outside its dequeue loop; ours logs ``what``."""
    try:
        yield
    except (redis.RedisError, StoreUnavailable) as error:
        if isinstance(error, redis.RedisError) and not is_store_error(error):
            raise
        logger.warning("%s; Redis unavailable: %s", what, error)


class PromptUnsubscribe:
    """An RQ worker that stops its pubsub thread before unsubscribing. RQ unsubscribes,
    then stops the thread: one that reads the unsubscribe reply first waits for the next
    message (60 s), and the join gives up after 1 s, on every shutdown (and every burst).
    Stopping it first lets the reply end it. (redis-py 8.2's ``stop()`` waits for the
    thread: it is told to stop without waiting.)"""

    pubsub_thread: Any

    def unsubscribe(self) -> None:
        thread = getattr(self, "pubsub_thread", None)
        if thread is not None:
            if "timeout" in inspect.signature(thread.stop).parameters:
                thread.stop(timeout=0)
            else:
                thread.stop()
        super().unsubscribe()  # type: ignore[misc]


class _AppWorkerMixin(PromptUnsubscribe):
    """Runs every job inside the app context (Flask's pattern for task queues)."""

    app: Flask
    # RQ's, on the worker class this is mixed into
    _stop_requested: bool
    _shutdown_requested_date: Any
    queues: list[Any]
    connection: redis.Redis
    name: str
    work: Any
    register_death: Any

    @property
    def _webhooks(self) -> WebhooksState:
        return state_of(self.app)

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        with redis_away("worker heartbeat not written"):
            super().heartbeat(*args, **kwargs)  # type: ignore[misc]

    def run_maintenance_tasks(self) -> None:
        with redis_away("RQ maintenance skipped"):
            super().run_maintenance_tasks()  # type: ignore[misc]

    def serve(self, **options: Any) -> None:
        """RQ's ``work()``, started again when it quits on a Redis error (refused, timeout,
        out of memory, loading), until a stop is requested or a burst is done."""
        while True:
            with redis_away(f"worker {self.name} stopped serving"):
                self.work(**options)
            if self._stopping or options.get("max_jobs"):
                return
            if options.get("burst") and self._queue_done():
                return
            logger.warning("worker %s: Redis unavailable; serving again when it is back", self.name)
            self._wait_for_redis()

    @property
    def _stopping(self) -> bool:
        """Whether a stop was asked (RQ raises StopRequested when idle, sets the flag when
        busy; both note the date)."""
        return self._stop_requested or self._shutdown_requested_date is not None

    def _queue_done(self) -> bool:
        try:
            return all(queue.count == 0 for queue in self.queues)
        except redis.RedisError:
            return False

    def _wait_for_redis(self) -> None:
        @available
        def ping() -> None:
            self.connection.ping()
            self.register_death()  # RQ refuses to start a worker whose key is alive

        while not self._stopping:
            try:
                patiently(self._webhooks.settings.store_outage, ping)
                return
            except StoreUnavailable:
                continue

    def perform_job(self, *args: Any, **kwargs: Any) -> Any:
        with self.app.app_context():
            return super().perform_job(*args, **kwargs)  # type: ignore[misc]

    # RQ files a job that returned in its finished registry: ours answers how it ended
    # (``jobs.run_job``), so a job sealed failed is in RQ's failed registry and one
    # sealed cancelled in its canceled registry, and tools reading RQ (rq-dashboard) agree.
    def _finalize_success(self, job: Any, queue: Any, execution: Any, return_value: Any) -> None:
        status = return_value.get("Status") if isinstance(return_value, dict) else None
        if status == FAILED:
            failure = JobSealedFailed(return_value.get("Error") or "the job failed")
            self._finalize_failure(job, queue, execution, (JobSealedFailed, failure, None))  # type: ignore[attr-defined]
        elif status == CANCELLED:
            job._result = return_value
            self.handle_execution_ended(job, queue, job.failure_callback_timeout)  # type: ignore[attr-defined]
            with self.connection.pipeline() as pipe:
                self.cleanup_execution(job, pipeline=pipe, execution=execution)  # type: ignore[attr-defined]
                file_cancelled(job, queue, pipe)
                pipe.execute()
        else:
            super()._finalize_success(job, queue, execution, return_value)  # type: ignore[misc]


class IdmsWorker(_AppWorkerMixin, Worker):
    """A forking worker that rides out Redis outages and never leaves a job behind.

    - When a work-horse ends abnormally (killed, out of memory, stopped after a cancel's
      grace), its job is recovered at once: dispatched again if its task had not started,
      else sealed cancelled or failed. A horse that exits normally has sealed its job.
    - RQ's heartbeats and maintenance failing while Redis is away do not end the worker
      (RQ 3 quits on them), and RQ's execution TTLs cover ``IDMS_WEBHOOKS_STORE_OUTAGE``,
      so a job is not declared abandoned by RQ because Redis was away.
    - A running job asked to cancel that has not stopped itself after
      ``IDMS_WEBHOOKS_CANCEL_GRACE`` is killed (its record then says its counts may lag).
    """

    _horse_status: int | None = None

    def wait_for_horse(self) -> tuple[int | None, int | None, Any]:
        pid, status, rusage = super().wait_for_horse()
        self._horse_status = status
        return pid, status, rusage

    def main_work_horse(self, job: Any, queue: Any) -> None:
        # In the work-horse (a throwaway child process): the job's record goes through
        # RQ's connection, so the horse opens one connection to Redis, not two.
        self._webhooks.in_work_horse(self.connection)
        # What the horse inherited is left out of the garbage collector's passes: a job's
        # rows make it run a full pass now and then, which would otherwise scan the whole
        # app (a tenth of a 100,000-row SQL job's time) and touch every page the horse
        # shares with the worker.
        gc.freeze()
        super().main_work_horse(job, queue)

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        ttl: int = super().get_heartbeat_ttl(job, working_time)
        return ttl + self._webhooks.settings.store_outage

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        with redis_away(f"job {job.id}: heartbeats not written"):
            super().maintain_heartbeats(job, execution)
            self._stop_if_cancel_ignored(job)

    def _stop_if_cancel_ignored(self, job: Any) -> None:
        asked = self._webhooks.store.cancel_requested_at(job_id_of(job.id))
        grace = self._webhooks.settings.cancel_grace
        if asked is not None and time.time() - asked >= grace:
            logger.warning("job %s: not stopped %d s after its cancel; killing it", job.id, grace)
            self.kill_horse()

    def monitor_work_horse(self, job: Any, queue: Any, execution: Any) -> None:
        self._horse_status = None
        with redis_away(f"job {job.id}: RQ's post-mortem not written"):
            super().monitor_work_horse(job, queue, execution)
        if self._horse_status == os.EX_OK or is_delivery(job.id):
            return  # (a callback's attempt that died is swept up when its lease ends)
        with self.app.app_context():
            self._webhooks.recovery.seal_abandoned(
                job_id_of(job.id), HORSE_DIED, job.id, patient=True
            )
        # RQ filed the dead horse's job as failed; a job killed after its cancel is
        # sealed cancelled.
        with redis_away(f"job {job.id}: not filed as cancelled in RQ"):
            sealed = self._webhooks.store.read(job_id_of(job.id))[0]
            if sealed is not None and loads(sealed)["Status"] == CANCELLED:
                with self.connection.pipeline() as pipe:
                    file_cancelled(job, queue, pipe)
                    pipe.execute()


class IdmsSimpleWorker(_AppWorkerMixin, SimpleWorker):
    """A worker that runs jobs in its own process (tests, debugging)."""


def make_worker(
    app: Flask, *, simple: bool = False, **options: Any
) -> IdmsWorker | IdmsSimpleWorker:
    state = state_of(app)
    connection = worker_redis(state.settings.redis_url)
    queue = queue_for(connection, state.settings.queue_name)
    cls: type[IdmsWorker | IdmsSimpleWorker] = IdmsSimpleWorker if simple else IdmsWorker
    # RQ checks on a running job every job_monitoring_interval: often enough to stop a
    # job that ignores its cancel soon after the grace.
    options.setdefault("job_monitoring_interval", max(1, min(30, state.settings.cancel_grace // 3)))
    worker = cls([queue], connection=connection, serializer=JSONSerializer, **options)
    warn_if_evicting(connection, "idms-webhooks worker")
    worker.app = app
    return worker


class Reaper(threading.Thread):
    """Recovers the jobs whose worker died (``Recovery.reap``) and queues the callbacks
    due that no delivery waits for (``Callbacks.sweep``), every quarter of
    ``IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT``."""

    def __init__(self, state: WebhooksState, interval: float | None = None) -> None:
        super().__init__(name="idms-reaper", daemon=True)
        self.state = state
        self.interval = interval or max(0.5, state.settings.heartbeat_timeout / 4)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                reaped = self.state.recovery.reap()
            except Exception:  # Redis away: try again next round
                logger.warning("reaper pass failed", exc_info=True)
                reaped = 0  # (the callbacks are swept all the same)
            if reaped:
                logger.warning("reaper: recovered %d job(s) whose worker died", reaped)
            try:
                swept = self.state.callbacks.sweep()
            except Exception:
                logger.warning("callback sweep failed", exc_info=True)
                continue
            if swept:
                logger.warning("reaper: queued %d callback(s) due with no delivery waiting", swept)

    def stop(self) -> None:
        self._stop_event.set()
