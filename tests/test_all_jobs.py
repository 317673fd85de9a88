"""``GET /idms/jobs`` as an admin uses it: the jobs of every task, newest first, by status
and by task, one page at a time; a query it does not know is 422, not ignored."""

from __future__ import annotations

import pytest

from tests.helpers import ADMIN


def start(client, key, task_id: str, parameters: dict | None = None) -> str:
    answer = client.post(
        f"/idms/tasks/{task_id}/jobs",
        json={"QueryParameters": parameters or {}},
        headers={"X-Webhook-Key": key(task_id)},
    )
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["ExecuteId"]


@pytest.fixture
def jobs(client, key, run_burst) -> dict[str, str]:
    """Five jobs, oldest first: two succeeded, one failed, one cancelled, one queued."""
    made = {
        "first": start(client, key, "count", {"Count": 2}),
        "second": start(client, key, "count", {"Count": 3}),
        "boom": start(client, key, "boom"),
    }
    run_burst()
    made["cancelled"] = start(client, key, "count", {"Count": 4})
    assert client.delete(f"/idms/jobs/{made['cancelled']}", headers=ADMIN).status_code == 202
    made["queued"] = start(client, key, "count", {"Count": 5})
    return made


def listed(client, query: str = "") -> dict:
    answer = client.get(f"/idms/jobs{query}", headers=ADMIN)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_every_tasks_jobs_newest_first(client, jobs):
    body = listed(client)
    assert (body["Page"], body["PageSize"], body["Total"]) == (1, 20, 5)
    ids = [job["ExecuteId"] for job in body["Jobs"]]
    assert ids == [jobs[n] for n in ("queued", "cancelled", "boom", "second", "first")]
    assert [job["Status"] for job in body["Jobs"]] == [
        "queued", "cancelled", "failed", "succeeded", "succeeded",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "names"),
    [
        ("succeeded", ["second", "first"]),
        ("failed", ["boom"]),
        ("cancelled", ["cancelled"]),
        ("queued", ["queued"]),
        ("in progress", []),
    ],
)
def test_by_status(client, jobs, status, names):
    body = listed(client, f"?status={status}")
    assert body["Total"] == len(names)
    assert [job["ExecuteId"] for job in body["Jobs"]] == [jobs[name] for name in names]
    assert all(job["Status"] == status for job in body["Jobs"])


def test_by_task_and_by_page(client, jobs):
    assert [job["ExecuteId"] for job in listed(client, "?task=boom")["Jobs"]] == [jobs["boom"]]
    body = listed(client, "?task=count&status=succeeded&page_size=1&page=2")
    assert (body["Total"], body["Page"], body["PageSize"]) == (2, 2, 1)
    assert [job["ExecuteId"] for job in body["Jobs"]] == [jobs["first"]]
    assert listed(client, "?page=9")["Jobs"] == []


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("?state=failed", "state"),
        ("?status=done", "status"),
        ("?task=nope", "No task 'nope'"),
        ("?page=0", "page"),
        ("?page_size=500", "page_size"),
    ],
)
def test_a_query_it_does_not_know_is_422(client, query, says):
    answer = client.get(f"/idms/jobs{query}", headers=ADMIN)
    assert answer.status_code == 422
    assert says in answer.text


def test_admins_only(client, key):
    assert client.get("/idms/jobs").status_code == 401
    assert client.get("/idms/jobs", headers={"X-Webhook-Key": key("count")}).status_code == 401
