"""Chained jobs: the tasks a finished job starts, claimed once and created by whoever
finishes the parent (its worker, the reaper, a poll)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypedDict

from redis.client import Pipeline

from ..errors import ParameterError, TaskBusy
from ..model.parameters import CHAIN as CHAIN_SOURCE
from ..model.parameters import QueryParameterSet, ResolvedParameter
from ..model.tasks import Chain, Task
from .documents import CHAIN, SUCCEEDED, ChainEntry, JobDocument, joins
from .store import JobStore
from .urls import Urls


class Jobs(Protocol):
    """What chaining needs of the ``JobManager``."""

    store: JobStore
    urls: Urls
    tasks: Mapping[str, Task]
    parameters: Mapping[str, QueryParameterSet]

    def prepare(
        self,
        task: Task,
        parameters: Mapping[str, ResolvedParameter],
        base_url: str,
        trigger: str = ...,
        due_on: str | None = None,
    ) -> JobDocument: ...

    def live_ttl(self, task: Task) -> int: ...

    def enqueuer(
        self, task: Task, job_id: str, rq_id: str | None = None, *, at: float | None = None
    ) -> Callable[[Pipeline], None]: ...


def passed_on(chain: Chain, document: JobDocument) -> dict[str, Any]:
    """The values a job's chained tasks are offered, by their keys (each child takes the
    keys it has): what ``chain.parameters`` names (a parent key's resolved value, or a
    constant), else every resolved value of the parent."""
    values = {key: value["Value"] for key, value in document["QueryParameters"].items()}
    if chain.parameters is None:
        return values
    return {
        key: values.get(source.parent) if source.parent is not None else source.value
        for key, source in chain.parameters.items()
    }


class PlannedChild(TypedDict):
    """A chained job as its parent claims it: its Chain entry and, if it can start, the
    document it is created with."""

    Entry: ChainEntry
    Document: JobDocument | None


class ChainStarter:
    """Starts the chained tasks of finished jobs, for one ``JobManager``."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    def start(self, task: Task, status: str, document: JobDocument) -> list[ChainEntry]:
        """Start the tasks chained to this outcome, once; answers the parent's Chain.

        The children are planned (ids, documents), claimed for the parent in one write,
        then created: whoever seals the parent later (the worker, the reaper, a poll)
        finds the same children and creates any a dead process had not. Children get what
        the chain's ``parameters`` say, else the parent's values for the keys they share.
        """
        children = task.chain.on_success if status == SUCCEEDED else task.chain.on_failure
        base_url = self.jobs.urls.base_of(document["PollingUrl"])
        values = passed_on(task.chain, document)
        planned = [self._plan_child(child, values, base_url) for child in children]
        # Claimed before (a dead process's children), they are the ones, whatever the
        # outcome now; else these are, if there are any.
        claimed = self.jobs.store.claim_chain(document["ExecuteId"], planned)
        if claimed is None or not all(
            isinstance(item, dict) and "Entry" in item for item in claimed
        ):
            return list(document.get("Chain") or [])  # none, or claimed by an older release
        return [self._create(item) for item in claimed]

    def _create(self, item: PlannedChild) -> ChainEntry:
        """Create a planned child (once); its entry, unless its task runs one job at a
        time and has one: then it joins that job, or is not started."""
        child = item["Document"]
        if child is None:
            return item["Entry"]
        child_task = self.jobs.tasks[child["TaskId"]]
        try:
            self.jobs.store.create_once(
                child,
                live_ttl=self.jobs.live_ttl(child_task),
                enqueue=self.jobs.enqueuer(child_task, child["ExecuteId"]),
                exclusive=child_task.one_at_a_time,
            )
        except TaskBusy as busy:
            running = busy.running
            if joins(child_task, running, child):
                return {
                    **item["Entry"],
                    "ExecuteId": running["ExecuteId"],
                    "PollingUrl": running["PollingUrl"],
                }
            return {
                **item["Entry"],
                "ExecuteId": None,
                "PollingUrl": None,
                "Error": f"Not started: job {running['ExecuteId']} of the task is still "
                f"{running['Status']} (concurrency = {child_task.concurrency}).",
            }
        return item["Entry"]

    def _plan_child(self, child_id: str, values: Mapping[str, Any], base_url: str) -> PlannedChild:
        """One chained task's entry and new document (None if it cannot start), with the
        values offered for the keys it has."""
        entry: ChainEntry = {
            "TaskId": child_id,
            "ExecuteId": None,
            "PollingUrl": None,
            "Error": None,
        }
        child = self.jobs.tasks.get(child_id)
        if child is None:
            return {"Entry": {**entry, "Error": f"No task {child_id!r}."}, "Document": None}
        parameter_set = self.jobs.parameters[child_id]
        passed = {key: value for key, value in values.items() if key in parameter_set.rows}
        try:
            resolved = parameter_set.resolve(passed, source=CHAIN_SOURCE)
            document = self.jobs.prepare(child, resolved, base_url, CHAIN)
        except ParameterError as error:
            failed = f"Invalid QueryParameters: {json.dumps(error.errors)}"
            return {"Entry": {**entry, "Error": failed}, "Document": None}
        entry["ExecuteId"], entry["PollingUrl"] = document["ExecuteId"], document["PollingUrl"]
        return {"Entry": entry, "Document": document}
