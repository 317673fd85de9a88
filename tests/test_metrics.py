"""``/idms/metrics`` as Prometheus scrapes it, parsed with ``prometheus_client.parser``:
the counters agree with the jobs run (whichever process ran or sealed them), refusals are
counted with their code, a ``task`` label is a known task or ``unknown`` (an attacker
cannot grow the label set), the queue and the workers are gauges; admin only unless
``IDMS_WEBHOOKS_METRICS_PUBLIC``."""

from __future__ import annotations

import http.client
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flask_idms_webhooks.jobs.liveness import WorkerBeat
from tests.helpers import ADMIN, gunicorn


def scrape(client) -> dict[tuple[str, frozenset], float]:
    answer = client.get("/idms/metrics", headers=ADMIN)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def post(client, key, task_id: str, route: str = "jobs", **body):
    return client.post(
        f"/idms/tasks/{task_id}/{route}",
        json=body,
        headers={"X-Webhook-Key": key(task_id) if task_id in ("count", "boom") else "x"},
    )


@pytest.fixture
def ran(client, key, run_burst):
    """Two counts and a boom run; a count waits on the queue; a 422 and a 404 refused.
    Answers the scrape before: this process's own counts outlive a test."""
    before = scrape(client)
    assert post(client, key, "count", QueryParameters={"Count": 3}).status_code == 202
    assert post(client, key, "count", "execute", QueryParameters={"Count": 6}).status_code == 200
    assert post(client, key, "boom").status_code == 202
    assert post(client, key, "count", QueryParameters={"Nope": 1}).status_code == 422
    assert post(client, key, "no-such-task").status_code == 404
    run_burst()
    assert post(client, key, "count", QueryParameters={"Count": 1}).status_code == 202
    return before


def test_the_counters_agree_with_the_jobs_run(client, ran):
    samples = scrape(client)
    total = "idms_webhooks_triggers_total"

    def more(**labels: str) -> float:
        return value(samples, total, **labels) - value(ran, total, **labels)

    assert more(task="count", route="polling", code="202") == 2
    assert more(task="count", route="standard", code="200") == 1
    assert more(task="boom", route="polling", code="202") == 1
    assert more(task="count", route="polling", code="422") == 1
    assert more(task="unknown", route="polling", code="404") == 1
    finished = "idms_webhooks_jobs_finished_total"
    assert value(samples, finished, task="count", status="succeeded") == 2
    assert value(samples, finished, task="boom", status="failed") == 1
    rows = "idms_webhooks_rows_total"  # Count 3 and Count 6: a third of each per outcome
    assert [value(samples, rows, task="count", outcome=o) for o in ("inserted", "updated")] == [
        3,
        3,
    ]
    assert value(samples, rows, task="boom", outcome="updated") == 2
    count = "idms_webhooks_job_duration_seconds_count"
    assert value(samples, count, task="count") == 2 and value(samples, count, task="boom") == 1
    bucket = "idms_webhooks_job_duration_seconds_bucket"
    assert value(samples, bucket, task="count", le="86400.0") == 2  # buckets reach a day
    assert value(samples, "idms_webhooks_queue_depth") == 1
    assert 0 <= value(samples, "idms_webhooks_oldest_queued_seconds") < 60
    assert value(samples, "idms_webhooks_workers_alive") == 0


def test_every_web_process_answers_the_same_totals(make_app, client, ran):
    other = make_app().test_client()  # another process's app on the same Redis
    mine, theirs = scrape(client), scrape(other)
    finished = "idms_webhooks_jobs_finished_total"
    assert value(theirs, finished, task="count", status="succeeded") == 2
    accepted = (
        "idms_webhooks_triggers_total",
        {"task": "count", "route": "polling", "code": "202"},
    )
    assert value(theirs, accepted[0], **accepted[1]) == value(mine, accepted[0], **accepted[1])


def test_unknown_task_ids_share_one_label(client, key, state):
    for n in range(30):
        post(client, key, f"probe-{n}")
    samples = scrape(client)
    tasks = {
        dict(labels)["task"]
        for name, labels in samples
        if name.startswith("idms_webhooks_triggers")
    }
    assert tasks <= {*state.tasks, "unknown"} and "unknown" in tasks
    assert not any("probe" in str(labels) for _, labels in samples)


def test_workers_alive_is_the_beating_workers(client, state):
    beat = WorkerBeat(state.redis, "metrics-worker", every=60)
    beat.beat()
    assert value(scrape(client), "idms_webhooks_workers_alive") == 1
    beat.stop()


def test_admin_only_unless_public(client, make_app):
    assert client.get("/idms/metrics").status_code == 401
    public = make_app(IDMS_WEBHOOKS_METRICS_PUBLIC=True).test_client()
    assert public.get("/idms/metrics").status_code == 200


def test_several_gunicorn_workers_answer_one_count_of_refusals(tmp_path, redis_url, queue_name):
    """prometheus-client's multiprocess mode: a refusal counted by any worker process is
    in every scrape, whichever process answers it. (The limit of failed credentials, 20 a
    minute, is kept in Redis: the workers share it.)"""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    with gunicorn(
        tmp_path, redis_url, queue_name, workers=3, PROMETHEUS_MULTIPROC_DIR=str(shared)
    ) as (port, _):
        answers = [  # each on a connection of its own: spread over the workers
            request(port, "POST", "/idms/tasks/count/jobs", {"X-Webhook-Key": "x"})
            for _ in range(30)
        ]
        assert answers == [401] * 20 + [429] * 10
        seen = set()
        for _ in range(12):
            answer = request(port, "GET", "/idms/metrics", ADMIN, read=True)
            samples = {
                (s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(answer)
                for s in family.samples
            }
            seen.add(tuple(value(samples, "idms_webhooks_triggers_total",
                                 task="count", route="polling", code=code)
                           for code in ("401", "429")))  # fmt: skip
        assert seen == {(20, 10)}


def request(port: int, method: str, path: str, headers: dict, read: bool = False) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=b"{}" if method == "POST" else None,
                           headers={"Content-Type": "application/json", **headers})  # fmt: skip
        answer = connection.getresponse()
        body = answer.read().decode()
        return body if read else answer.status
    finally:
        connection.close()
