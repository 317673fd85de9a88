"""Task chaining: children start when the parent ends, before its record is sealed."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_idms_webhooks import IdmsWebhooks, TaskLoadError
from tests.helpers import ADMIN, abandon_job, poll_path


def start_parent(client, key, **parameters):
    answer = client.post(
        f"/idms/tasks/parent/jobs?key={key('parent')}", json={"QueryParameters": parameters}
    )
    assert answer.status_code == 202
    return answer.headers["Location"]


def test_on_success_children_start_with_the_parents_values(client, key, run_burst):
    location = start_parent(client, key, Count=3)
    run_burst()  # runs the parent, which queues its children; the burst runs them too
    parent = client.get(poll_path(location)).get_json()
    assert parent["Success"] is True
    child, needy = parent["Chain"]
    assert child["TaskId"] == "child" and child["Error"] is None
    assert child["PollingUrl"].startswith("http://localhost/idms/jobs/")
    assert needy["TaskId"] == "needy" and needy["ExecuteId"] is None and "Other" in needy["Error"]
    done = client.get(poll_path(child["PollingUrl"]))
    assert done.status_code == 200
    body = done.get_json()
    assert body["ExecuteId"] == child["ExecuteId"]
    assert body["InsertedCount"] == 3
    assert body["QueryParameters"]["Count"] == {"Value": 3, "Source": "chain"}
    assert body["Trigger"] == "chain"


def test_on_failure_children_start_and_on_success_ones_do_not(client, key, run_burst, state):
    location = start_parent(client, key, Count=2, Fail=True)
    run_burst()
    parent = client.get(poll_path(location)).get_json()
    assert parent["Status"] == "failed"
    assert [entry["TaskId"] for entry in parent["Chain"]] == ["rescue"]
    assert client.get(poll_path(parent["Chain"][0]["PollingUrl"])).get_json()["Success"] is True
    assert state.store.history("child", 0, 10)[0] == 0


def test_a_cancelled_parent_starts_nothing(client, key, state):
    location = start_parent(client, key, Count=1)
    job_id = poll_path(location).split("/")[-1].split("?")[0]
    assert client.delete(f"/idms/jobs/{job_id}", headers=ADMIN).status_code == 202
    parent = client.get(poll_path(location)).get_json()
    assert parent["Status"] == "cancelled" and parent["Chain"] == []
    assert state.queue.count == 0


def make(redis_url, **chains):
    webhooks = IdmsWebhooks()
    for task_id, children in chains.items():
        webhooks.task(task_id, on_success=children)(lambda parameters, context: None)
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", IDMS_WEBHOOKS_REDIS_URL=redis_url)
    webhooks.init_app(app)


def test_a_chain_cycle_is_a_load_error(redis_url):
    with pytest.raises(TaskLoadError, match="cycle: a -> b -> c -> a"):
        make(redis_url, a=["b"], b=["c"], c=["a"])


def test_a_chain_to_an_unknown_task_is_a_load_error(redis_url):
    with pytest.raises(TaskLoadError) as raised:
        make(redis_url, a=["ghost"])
    assert raised.value.task == "a" and raised.value.key == "chain.on_success"
    assert "ghost" in str(raised.value)


def test_a_task_file_chain_cycle_names_the_file(redis_url, tmp_path):
    task_file = tmp_path / "tasks.toml"
    table = '[[tasks]]\nid = "{}"\nhandler = "tests.sample_app:boom"\n'
    table += '[tasks.chain]\non_failure = ["{}"]\n'
    task_file.write_text(table.format("x", "y") + table.format("y", "x"))
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s", IDMS_WEBHOOKS_REDIS_URL=redis_url, IDMS_WEBHOOKS_TASKS_FILE=str(task_file)
    )
    with pytest.raises(TaskLoadError, match="cycle") as raised:
        IdmsWebhooks(app)
    assert str(task_file) in str(raised.value)


def test_a_parent_whose_worker_died_starts_its_on_failure_children_once(app, client, key, state):
    answer = abandon_job(client, state, "parent", {"Count": 1})
    assert state.recovery.reap() == 1
    polled = client.get(poll_path(answer.headers["Location"])).get_json()  # a poller sees it too
    assert polled["Status"] == "failed" and polled["Error"]["Type"] == "WorkerDied"
    assert [entry["TaskId"] for entry in polled["Chain"]] == ["rescue"]
    assert state.store.history("rescue", 0, 10)[0] == 1  # started once, not by both
