"""Progress reporting: a job's record is written at most every ~1 % or ~1 s, never per
row, and the figures a poller sees move forward."""

from __future__ import annotations

import time

from flask_idms_webhooks.jobs.store import JobStore


def test_progress_writes_are_throttled_not_per_row(client, key, run_burst, monkeypatch):
    writes: list[dict] = []
    original = JobStore.update

    def counting(self, document, row_errors=()):
        writes.append(dict(document))
        return original(self, document, row_errors)

    monkeypatch.setattr(JobStore, "update", counting)
    answer = client.post(
        f"/idms/tasks/count/jobs?key={key('count')}", json={"QueryParameters": {"Count": 20000}}
    )
    started = time.monotonic()
    run_burst()
    elapsed = time.monotonic() - started
    # one write per percent point, one per second, plus the row count: never 20,000
    assert len(writes) <= 100 + elapsed + 2
    percents = [write["PercentComplete"] for write in writes]
    assert percents == sorted(percents)
    assert max(percents) == 99
    processed = [write["ProcessedCount"] for write in writes]
    assert processed == sorted(processed)
    final = client.get(answer.headers["Location"].split("localhost", 1)[1]).get_json()
    assert final["PercentComplete"] == 100 and final["ProcessedCount"] == 20000
