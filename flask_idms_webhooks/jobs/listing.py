"""The jobs of several tasks, newest first, by status (part of ``JobStore``): for the
admin list of all jobs and the dashboard.

A job's status is known without reading its record: queued and running jobs are in the
store's queued and running sets, and a sealed one is in ``sealed:{status}`` (written when
it is sealed; see ``seal_index``). Only one page of records is read."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

import redis
from redis.client import Pipeline

from .codec import available, loads
from .documents import CANCELLED, FAILED, IN_PROGRESS, QUEUED, SUCCEEDED
from .keys import PREFIX, StoreKeys

#: The statuses a list may be filtered by (the documents' values).
STATUSES = (QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, CANCELLED)
SEALED = (SUCCEEDED, FAILED, CANCELLED)


def sealed_key(status: str) -> str:
    """The sorted set of the jobs sealed ``status``, by when they were sealed."""
    return f"{PREFIX}sealed:{status}"


def seal_index(pipe: Pipeline, job_id: str, status: str, now: float) -> None:
    """On the pipeline that seals a job: file it under its final status."""
    pipe.zadd(sealed_key(status), {job_id: now})


class JobListing(StoreKeys):
    redis: redis.Redis
    result_ttl: int

    @available
    def jobs_page(
        self, task_ids: Sequence[str], status: str | None, offset: int, limit: int
    ) -> tuple[int, list[bytes]]:
        """(how many jobs, the documents of one page, newest first) of ``task_ids``, of
        ``status`` only unless None. Three round trips: the ids, the status set, a page."""
        now = time.time()
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.zrange(self.history_key(task_id), 0, -1, withscores=True)
            histories = cast(list[list[tuple[bytes, float]]], pipe.execute())
        created = sorted(
            ((score, raw.decode()) for history in histories for raw, score in history),
            reverse=True,
        )
        if status is not None:
            members = self._with_status(status, now)
            created = [(score, job_id) for score, job_id in created if job_id in members]
        page = [job_id for _, job_id in created[offset : offset + limit]]
        if not page:
            return len(created), []
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in page:
                pipe.mget([self.result_key(job_id), self.live_key(job_id)])
            pairs = cast(list[list[bytes | None]], pipe.execute())
        documents = []
        for sealed, live in pairs:
            record = sealed or live
            # A record gone (expired), or one whose status moved on since the sets were read.
            if record is not None and (status is None or loads(record)["Status"] == status):
                documents.append(record)
        return len(created) - (len(page) - len(documents)), documents

    def _with_status(self, status: str, now: float) -> set[str]:
        if status == QUEUED:
            key = self.QUEUED
        elif status == IN_PROGRESS:
            key = self.RUNNING
        else:
            key = sealed_key(status)
        with self.redis.pipeline(transaction=False) as pipe:
            if status in SEALED:  # older ones point at records that have expired
                pipe.zremrangebyscore(key, "-inf", now - self.result_ttl)
            pipe.zrange(key, 0, -1)
            members = cast(list[bytes], pipe.execute()[-1])
        return {raw.decode() for raw in members}
