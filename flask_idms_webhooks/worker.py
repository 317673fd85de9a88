"""RQ workers bound to an app, and the reaper of jobs whose worker died."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from flask import Flask
from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer

from .jobs.documents import HORSE_DIED
from .jobs.lifecycle import SEAL_ATTEMPTS
from .jobs.redis import queue_for, worker_redis
from .state import WebhooksState, state_of

logger = logging.getLogger("flask_idms_webhooks")


class _AppWorkerMixin:
    """Runs every job inside the app context (Flask's pattern for task queues)."""

    app: Flask

    def perform_job(self, *args: Any, **kwargs: Any) -> Any:
        with self.app.app_context():
            return super().perform_job(*args, **kwargs)  # type: ignore[misc]

    def unsubscribe(self) -> None:
        # RQ unsubscribes, then stops its pubsub thread: a thread that reads the
        # unsubscribe reply first waits for the next message (60 s), and the join gives up
        # after 1 s, on every shutdown (and every burst). Stopping it first lets the reply
        # end it.
        thread = getattr(self, "pubsub_thread", None)
        if thread is not None:
            thread.stop()
        super().unsubscribe()  # type: ignore[misc]


class IdmsWorker(_AppWorkerMixin, Worker):
    """A forking worker. When a work-horse ends abnormally (killed, stopped by a cancel,
    out of memory), its job is sealed at once: cancelled or failed. A horse that exits
    normally has run ``JobManager.run`` to its end, which sealed the job; the parent then
    reads nothing (the reaper still catches what a Redis outage left unsealed)."""

    _horse_status: int | None = None

    def wait_for_horse(self) -> tuple[int | None, int | None, Any]:
        pid, status, rusage = super().wait_for_horse()
        self._horse_status = status
        return pid, status, rusage

    def main_work_horse(self, job: Any, queue: Any) -> None:
        # In the work-horse (a throwaway child process): the job's record goes through
        # RQ's connection, so the horse opens one connection to Redis, not two.
        state_of(self.app).in_work_horse(self.connection)
        super().main_work_horse(job, queue)

    def monitor_work_horse(self, job: Any, queue: Any, execution: Any) -> None:
        self._horse_status = None
        super().monitor_work_horse(job, queue, execution)
        if self._horse_status == os.EX_OK:
            return
        with self.app.app_context():
            state_of(self.app).jobs.seal_abandoned(job.id, HORSE_DIED, attempts=SEAL_ATTEMPTS)


class IdmsSimpleWorker(_AppWorkerMixin, SimpleWorker):
    """A worker that runs jobs in its own process (tests, debugging)."""


def make_worker(app: Flask, *, simple: bool = False, **options: Any) -> Worker | SimpleWorker:
    state = state_of(app)
    connection = worker_redis(state.settings.redis_url)
    queue = queue_for(connection, state.settings.queue_name)
    cls: type[IdmsWorker | IdmsSimpleWorker] = IdmsSimpleWorker if simple else IdmsWorker
    worker = cls([queue], connection=connection, serializer=JSONSerializer, **options)
    worker.app = app
    return worker


class Reaper(threading.Thread):
    """Seals running jobs whose heartbeat stopped as failed ("worker died"), every
    quarter of ``IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT``."""

    def __init__(self, state: WebhooksState, interval: float | None = None) -> None:
        super().__init__(name="idms-reaper", daemon=True)
        self.state = state
        self.interval = interval or max(0.5, state.settings.heartbeat_timeout / 4)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                reaped = self.state.jobs.reap()
            except Exception:  # Redis away: try again next round
                logger.warning("reaper pass failed", exc_info=True)
                continue
            if reaped:
                logger.warning("reaper: sealed %d job(s) whose worker died", reaped)

    def stop(self) -> None:
        self._stop_event.set()
