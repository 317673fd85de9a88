"""The dashboard as an admin's browser gets it: a 401 that makes the browser ask for a
login (HTTP Basic, any user name, the admin token as the password), then every task with
its last job, the recent jobs of all tasks with links to their pages, filters by status
and task, and the queue and the workers. Basic is accepted on every admin GET route,
never on a route that changes something."""

from __future__ import annotations

import base64
import re

from tests.helpers import ADMIN


def basic(password: str, user: str = "ops") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def start(client, key, task_id: str, parameters: dict | None = None) -> dict:
    answer = client.post(
        f"/idms/tasks/{task_id}/jobs",
        json={"QueryParameters": parameters or {}},
        headers={"X-Webhook-Key": key(task_id)},
    )
    assert answer.status_code == 202
    return answer.get_json()


def test_a_browser_is_asked_to_log_in(client):
    answer = client.get("/idms/dashboard")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith('Basic realm="idms-webhooks"')
    assert client.get("/idms/dashboard", headers=basic("wrong")).status_code == 401


def test_the_dashboard_lists_tasks_jobs_queue_and_workers(client, key, run_burst):
    done = start(client, key, "count", {"Count": 3})
    failed = start(client, key, "boom")
    run_burst()
    waiting = start(client, key, "count", {"Count": 1})
    answer = client.get("/idms/dashboard", headers=basic("admin-token"))
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    html = answer.text
    for job in (done, failed, waiting):  # each links to its job page (token included)
        assert f'href="{job["PollingUrl"].replace("&", "&amp;")}"' in html
    jobs = re.findall(r'<tr data-job="([^"]+)">', html)
    assert jobs == [waiting["ExecuteId"], failed["ExecuteId"], done["ExecuteId"]]
    assert re.search(r'data-task="boom">.*?data-status="failed"', html, re.S)
    assert re.search(r'data-field="QueueDepth">1<', html)
    assert re.search(r'data-field="WorkersAlive">0<', html)


def test_filters_by_status_and_task(client, key, run_burst):
    start(client, key, "count", {"Count": 3})
    failed = start(client, key, "boom")
    run_burst()
    html = client.get("/idms/dashboard?status=failed", headers=ADMIN).text
    assert re.findall(r'<tr data-job="([^"]+)">', html) == [failed["ExecuteId"]]
    html = client.get("/idms/dashboard?task=count", headers=ADMIN).text
    assert failed["ExecuteId"] not in re.findall(r'<tr data-job="([^"]+)">', html)
    assert client.get("/idms/dashboard?colour=red", headers=ADMIN).status_code == 422


def test_basic_opens_admin_gets_but_never_a_change(client):
    assert client.get("/idms/tasks", headers=basic("admin-token", user="")).status_code == 200
    assert client.get("/idms/jobs", headers=basic("admin-token")).status_code == 200
    changed = client.put(
        "/idms/tasks/count/schedule", json={"Enabled": False}, headers=basic("admin-token")
    )
    assert changed.status_code == 401
