"""``GET /idms/metrics``: Prometheus text format, through ``prometheus-client``.

Two kinds of series. Totals from Redis (``jobs.metrics``), the same from every web
process: triggers accepted, jobs finished, rows, durations, the queue and the workers.
Per process: the webhook requests that never reached Redis (refusals, 503s), counted by
``prometheus-client`` in this process, or across a server's processes in its
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``). Both kinds of triggers are one series,
``idms_webhooks_triggers_total``. A ``task`` label is a known task id or ``unknown``."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from flask import Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from ..jobs.metrics import BUCKETS, Totals, read_totals
from ..state import WebhooksState, state_of
from .auth import require_admin
from .blueprint import blp
from .docs import documented_errors, operation

#: The webhook requests not counted in Redis (refused, or Redis away), in this process.
REFUSED = Counter(
    "idms_webhooks_triggers",
    "Webhook requests by task, route and answer code.",
    ["task", "route", "code"],
    registry=None,
)
UNKNOWN = "unknown"


def count_refused(state: WebhooksState, task_id: str, route: str, code: int) -> None:
    """A webhook answer that created no job (its accepted ones count in Redis)."""
    REFUSED.labels(task_id if task_id in state.tasks else UNKNOWN, route, code).inc()


@blp.route("/metrics")
@operation("getMetrics")
@blp.doc(
    security=[{"IdmsBearer": []}, {}],
    responses={"200": {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
)
@documented_errors(401)
def metrics() -> Response:
    """Prometheus metrics (admin, or open with IDMS_WEBHOOKS_METRICS_PUBLIC)."""
    state = state_of(current_app)
    if not state.settings.metrics_public:
        require_admin()
    registry = CollectorRegistry()
    registry.register(TotalsCollector(state, read_totals(state.redis, state.queue.key)))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def refused_samples() -> Iterable[Any]:
    """This process's (or, in multiprocess mode, every process's) refused triggers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collector = MultiProcessCollector(CollectorRegistry())  # type: ignore[no-untyped-call]
        found: Iterable[Metric] = collector.collect()  # type: ignore[no-untyped-call]
    else:
        found = REFUSED.collect()
    for family in found:
        if family.name == "idms_webhooks_triggers":
            yield from (s for s in family.samples if s.name.endswith("_total"))


class TotalsCollector:
    """The families of one scrape, from the totals read in Redis."""

    def __init__(self, state: WebhooksState, totals: Totals) -> None:
        self.known, self.totals = set(state.tasks), totals

    def task(self, task_id: str) -> str:
        return task_id if task_id in self.known else UNKNOWN

    def collect(self) -> Iterator[Metric]:
        totals = self.totals
        triggers: dict[tuple[str, ...], float] = defaultdict(float)
        for (task_id, *rest), value in totals.triggers.items():
            triggers[(self.task(task_id), *rest)] += value
        for sample in refused_samples():
            labels = sample.labels
            triggers[(self.task(labels["task"]), labels["route"], labels["code"])] += sample.value
        yield self.counter("triggers", "Webhook requests by task, route and answer code.",
                           ["task", "route", "code"], triggers)  # fmt: skip
        yield self.counter("jobs_finished", "Jobs sealed, by task and final status.",
                           ["task", "status"], self.by_task(totals.finished))  # fmt: skip
        yield self.counter("rows", "Rows of finished jobs, by task and outcome.",
                           ["task", "outcome"], self.by_task(totals.rows))  # fmt: skip
        yield self.durations()
        yield GaugeMetricFamily("idms_webhooks_queue_depth", "Jobs waiting on RQ's queue.",
                                value=totals.queue_depth)  # fmt: skip
        yield GaugeMetricFamily(
            "idms_webhooks_oldest_queued_seconds",
            "Seconds the longest-waiting queued job has been due.",
            value=totals.oldest_queued_seconds,
        )
        yield GaugeMetricFamily("idms_webhooks_workers_alive",
                                "Worker processes that beat in the last 15 seconds.",
                                value=totals.workers_alive)  # fmt: skip

    def by_task(self, counts: Mapping[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
        merged: dict[tuple[str, ...], float] = defaultdict(float)
        for (task_id, *rest), value in counts.items():
            merged[(self.task(task_id), *rest)] += value
        return merged

    @staticmethod
    def counter(
        name: str, documentation: str, labels: list[str], values: Mapping[tuple[str, ...], float]
    ) -> CounterMetricFamily:
        family = CounterMetricFamily(f"idms_webhooks_{name}", documentation, labels=labels)
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        return family

    def durations(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "idms_webhooks_job_duration_seconds",
            "Seconds from a job's start to its end, by task.",
            labels=["task"],
        )
        per_task: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for (task_id, bucket), value in self.totals.durations.items():
            per_task[self.task(task_id)][bucket] += value
        for task_id, buckets in sorted(per_task.items()):
            running, cumulative = 0.0, []
            for bound in [*map(str, BUCKETS), "+Inf"]:
                running += buckets.get(bound, 0.0)
                cumulative.append((floatToGoString(float(bound)), running))  # type: ignore[no-untyped-call]
            family.add_metric([task_id], cumulative, sum_value=buckets.get("sum", 0.0))
        return family
