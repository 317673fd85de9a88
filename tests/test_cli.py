"""The ``flask idms-webhooks`` commands."""

from __future__ import annotations

import json

from tests.conftest import poll_path


def test_trigger_starts_a_job_and_prints_its_polling_url(app, client, run_burst):
    result = app.test_cli_runner().invoke(
        args=["idms-webhooks", "trigger", "count", "-p", "Count=4", "-p", "Delay=0"]
    )
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith("http://127.0.0.1:8000/idms/jobs/") and "token=" in url
    run_burst()
    final = client.get(poll_path(url))
    assert final.status_code == 200
    body = final.get_json()
    assert body["ProcessedCount"] == 4
    assert body["QueryParameters"]["Count"] == {"Value": 4, "Source": "request"}


def test_trigger_refuses_bad_parameters_and_unknown_tasks(app, state):
    runner = app.test_cli_runner()
    bad = runner.invoke(args=["idms-webhooks", "trigger", "count", "-p", "Count=many"])
    assert bad.exit_code == 2
    assert "Count" in bad.output
    unknown = runner.invoke(args=["idms-webhooks", "trigger", "nope"])
    assert unknown.exit_code == 2 and "nope" in unknown.output
    assert state.queue.count == 0


def test_tasks_lists_each_task_with_working_webhook_urls(app, client, key):
    result = app.test_cli_runner().invoke(args=["idms-webhooks", "tasks"])
    assert result.exit_code == 0
    assert f"/idms/tasks/count/jobs?key={key('count')}" in result.output
    assert "QueryParameters: Count, Delay, FailEvery" in result.output


def test_reap_seals_a_running_job_whose_heartbeat_stopped(app, client, key, state):
    answer = client.post(
        f"/idms/tasks/count/jobs?key={key('count')}", json={"QueryParameters": {"Count": 1}}
    )
    document = answer.get_json()
    document["Status"] = "in progress"
    state.store.start(document)
    state.redis.delete(state.store.heartbeat_key(document["ExecuteId"]))  # the worker died
    result = app.test_cli_runner().invoke(args=["idms-webhooks", "reap"])
    assert result.exit_code == 0 and "sealed 1 job" in result.output
    sealed = json.loads(state.store.read(document["ExecuteId"])[0])
    assert sealed["Status"] == "failed" and sealed["Error"]["Type"] == "WorkerDied"
