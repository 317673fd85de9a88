"""``idms-webhooks call URL``: a task's polling webhook from the command line, against a
served app, with the exit codes of ``flask idms-webhooks trigger --wait``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from flask_idms_webhooks import client as client_module
from flask_idms_webhooks.call import main
from tests.helpers import ADMIN, ROOT, wait_for


@pytest.fixture
def served(live_server: tuple[str, int]) -> str:
    host, port = live_server
    return f"http://{host}:{port}"


def polling(served: str, task_id: str) -> str:
    """The task's polling webhook URL without its key."""
    return f"{served}/idms/tasks/{task_id}/jobs"


def call(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, ["call", *args], env={"IDMS_WEBHOOKS_KEY": None, **env})


def in_the_table(table: str, label: str, value: str) -> bool:
    return any(label in line and value in line for line in table.splitlines())


def test_without_wait_it_prints_the_polling_url_and_the_job_is_queued(served, key, state):
    result = call(polling(served, "count"), "-p", "Count=3", IDMS_WEBHOOKS_KEY=key("count"))
    assert result.exit_code == 0, result.output
    location = result.stdout.strip()
    assert location.startswith(f"{served}/idms/jobs/") and "token=" in location
    assert key("count") not in location
    poll = httpx.get(location)
    assert poll.status_code == 202 and poll.json()["Status"] == "queued"
    assert state.queue.count == 1


def test_json_without_wait_prints_the_start_document(served, key):
    result = call(polling(served, "count"), "-p", "Count=3", "--key", key("count"), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["Status"] == "queued" and document["QueryParameters"]["Count"] == {
        "Value": 3, "Source": "request",
    }  # fmt: skip
    assert httpx.get(document["PollingUrl"]).json() == document


def test_a_key_in_the_url_wins_over_the_environment(served):
    url = httpx.get(f"{served}/idms/tasks/count", headers=ADMIN).json()["Webhooks"]["Polling"]
    result = call(url, "-p", "Count=1", IDMS_WEBHOOKS_KEY="a key of another task")
    assert result.exit_code == 0, result.output


def test_a_bad_key_exits_4_with_the_servers_message(served, state):
    result = call(polling(served, "count"), "-p", "Count=1", "--wait", "--key", "wrong")
    assert result.exit_code == 4, result.output
    assert "401: The X-Webhook-Key header is not this task's key." in result.stderr
    assert "wrong" not in result.stderr and result.stdout == ""
    assert state.queue.count == 0


def test_could_not_start_exits_4(served, key):
    invalid = call(polling(served, "count"), "-p", "Count=many", "--key", key("count"))
    assert invalid.exit_code == 4 and "422: Invalid QueryParameters." in invalid.stderr
    missing = call(polling(served, "count"), "--key", key("count"))  # Count is Required
    assert missing.exit_code == 4 and "422" in missing.stderr
    unknown = call(polling(served, "nope"), "--key", key("count"))
    assert unknown.exit_code == 4 and "404: No task 'nope'." in unknown.stderr
    away = call("http://127.0.0.1:9/idms/tasks/count/jobs", "--key", "k")  # nothing there
    assert away.exit_code == 4 and "could not be started" in away.stderr


def test_usage_errors_exit_2(served):
    assert call(polling(served, "count"), "-p", "Count").exit_code == 2
    relative = call("/idms/tasks/count/jobs")
    assert relative.exit_code == 2 and "not an absolute http(s) URL" in relative.stderr


def test_still_running_at_the_timeout_exits_5_and_the_job_goes_on(served, key, state):
    args = ["-p", "Count=1", "--key", key("count"), "--wait", "--timeout", "0.2"]
    result = call(polling(served, "count"), *args, "--interval", "0.05")
    assert result.exit_code == 5, result.output
    assert "Still queued after 0.2 s: http" in result.stderr and "token=" in result.stderr
    assert state.queue.count == 1


def test_ctrl_c_while_waiting_exits_130_with_the_polling_url(served, key, monkeypatch):
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(client_module, "sleep", interrupted)
    result = call(polling(served, "count"), "-p", "Count=1", "--key", key("count"), "--wait")
    assert result.exit_code == 130, result.output
    assert f"the job goes on: {served}/idms/jobs/" in result.stderr


def test_a_job_cancelled_while_waited_on_exits_3(served, key, state):
    def cancel_once_queued() -> None:
        job_id = wait_for(lambda: state.queue.job_ids, timeout=10)[0]
        httpx.delete(f"{served}/idms/jobs/{job_id}", headers={"X-Webhook-Key": key("count")})

    canceller = threading.Thread(target=cancel_once_queued)
    canceller.start()
    try:
        args = ["-p", "Count=5", "--key", key("count"), "--wait", "--interval", "0.02"]
        result = call(polling(served, "count"), *args, "--timeout", "10")
    finally:
        canceller.join(10)
    assert result.exit_code == 3, result.output
    assert in_the_table(result.stdout, "Status", "cancelled")


def test_outcomes_with_a_real_worker(served, key, start_worker):
    start_worker()
    wait = ["--wait", "--interval", "0.05", "--timeout", "30"]
    succeeded = call(polling(served, "count"), "-p", "Count=30", "--key", key("count"), *wait)
    assert succeeded.exit_code == 0, succeeded.output
    for label, value in (("Status", "succeeded"), ("Processed", "30"), ("Updated", "10")):
        assert in_the_table(succeeded.stdout, label, value), succeeded.stdout
    failed = call(polling(served, "boom"), "--key", key("boom"), *wait, "--json")
    assert failed.exit_code == 1, failed.output
    document = json.loads(failed.stdout)
    assert document["Error"]["Message"] == "the source could not be read"
    assert document == httpx.get(document["PollingUrl"]).json()  # exactly the served document


def test_the_installed_command_with_the_key_in_the_environment(served, key, state, run_burst):
    command = os.path.join(os.path.dirname(sys.executable), "idms-webhooks")
    env: dict[str, Any] = dict(os.environ, IDMS_WEBHOOKS_KEY=key("count"))
    waiting = subprocess.Popen(
        [command, "call", polling(served, "count"), "-p", "Count=12", "--wait",
         "--interval", "0.05", "--timeout", "20"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: state.queue.count, timeout=10)
        run_burst()  # while the command polls
        out, err = waiting.communicate(timeout=20)
    finally:
        waiting.kill()
        waiting.wait()
    assert waiting.returncode == 0, (out, err)
    assert in_the_table(out, "Status", "succeeded") and in_the_table(out, "Processed", "12")
    assert "token=" in err  # the polling URL, said before the wait
