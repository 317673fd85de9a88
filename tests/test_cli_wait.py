"""``flask idms-webhooks trigger --wait`` and ``jobs list|show|cancel``: a job followed
from the command line to its end, with the outcome as the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT, wait_for

TRIGGER = ["idms-webhooks", "trigger"]


def invoke(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_wait_follows_the_job_and_prints_its_counts(app, state, start_worker):
    start_worker()
    result = invoke(app, *TRIGGER, "count", "-p", "Count=30", "-p", "Delay=0.01", "--wait")
    assert result.exit_code == 0, result.output
    job_id = result.stderr.split(":")[0]
    sealed = json.loads(state.store.read(job_id)[0])
    assert sealed["Status"] == "succeeded" and sealed["ProcessedCount"] == 30
    table = result.stdout
    assert f"count: job {job_id}" in table
    for label, value in (("Status", "succeeded"), ("Processed", "30"), ("Updated", "10")):
        assert any(label in line and value in line for line in table.splitlines()), table
    assert sealed["PollingUrl"] in result.stderr  # said before the wait, to come back to


def test_wait_json_prints_the_final_document_exactly(app, state, start_worker):
    start_worker()
    result = invoke(app, *TRIGGER, "count", "-p", "Count=3", "--wait", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == json.loads(state.store.read(document["ExecuteId"])[0])


def test_a_failed_job_exits_1_with_its_error(app, start_worker):
    start_worker()
    result = invoke(app, *TRIGGER, "boom", "--wait")
    assert result.exit_code == 1, result.output
    assert "failed" in result.stdout and "the source could not be read" in result.stdout


def test_a_job_still_running_at_the_timeout_exits_5_and_goes_on(app, state, start_worker):
    start_worker()
    args = ["crawl", "-p", "Count=20", "-p", "Delay=0.05", "--wait", "--timeout", "0.3"]  # 1 s
    result = invoke(app, *TRIGGER, *args)
    assert result.exit_code == 5, result.output
    assert "Still " in result.stderr and "token=" in result.stderr
    job_id = result.stderr.split(":")[0]
    wait_for(lambda: state.store.read(job_id)[0] is not None, timeout=20)  # it went on
    assert json.loads(state.store.read(job_id)[0])["Status"] == "succeeded"


def test_could_not_start_exits_4_and_starts_nothing(app, state, make_app):
    for args, message in (
        (["nope", "--wait"], "no task 'nope' (tasks: count,"),
        (["count", "-p", "Count=many", "--wait"], "invalid QueryParameters"),
        (["count", "--wait"], "Count"),  # Required, no default
    ):
        result = invoke(app, *TRIGGER, *args)
        assert result.exit_code == 4, result.output
        assert message in result.stderr
    assert state.queue.count == 0
    away = make_app(IDMS_WEBHOOKS_REDIS_URL="redis://127.0.0.1:9/0")  # nothing listens there
    result = invoke(away, *TRIGGER, "count", "-p", "Count=1")
    assert result.exit_code == 4 and "could not be started" in result.stderr, result.output


def test_a_wait_ends_3_when_the_job_is_cancelled_meanwhile(app, state, start_worker, redis_url,
                                                            queue_name):  # fmt: skip
    """The real command, in its own process (no terminal: the bar is drawn once, at the
    end), cancelled from another command."""
    start_worker()
    env = dict(os.environ, IDMS_WEBHOOKS_REDIS_URL=redis_url, IDMS_WEBHOOKS_QUEUE_NAME=queue_name)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.sample_app:create_app", *TRIGGER,
         "crawl", "-p", "Count=400", "-p", "Delay=0.05", "--wait"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        running = wait_for(lambda: state.store.running(), timeout=20)
        job_id = running[0][0]
        wait_for(lambda: json.loads(state.store.live(job_id))["ProcessedCount"] > 0)
        cancelled = invoke(app, "idms-webhooks", "jobs", "cancel", job_id)
        assert cancelled.exit_code == 0 and "Cancellation requested" in cancelled.output
        out, err = waiting.communicate(timeout=20)
    finally:
        waiting.kill()
        waiting.wait()
    assert waiting.returncode == 3, (out, err)
    assert "cancelled" in out and "Processed" in out
    assert "in progress" in err or "cancelled" in err  # the bar, drawn where there is no tty


def test_jobs_list_show_and_cancel(app, state, run_burst):
    first = invoke(app, *TRIGGER, "count", "-p", "Count=2", "--json")
    second = invoke(app, *TRIGGER, "boom", "--json")
    first_id = json.loads(first.stdout)["ExecuteId"]
    second_id = json.loads(second.stdout)["ExecuteId"]
    queued = invoke(app, "idms-webhooks", "jobs", "list", "--status", "queued", "--json")
    assert [job["ExecuteId"] for job in json.loads(queued.stdout)["Jobs"]] == [second_id, first_id]
    shown = invoke(app, "idms-webhooks", "jobs", "show", first_id)
    assert shown.exit_code == 5 and shown.stdout.startswith("queued, 0%")
    run_burst()
    listing = invoke(app, "idms-webhooks", "jobs", "list", "--task", "count")
    assert listing.exit_code == 0 and first_id in listing.stdout and second_id not in listing.stdout
    assert "succeeded" in listing.stdout and "1 of 1 job(s)" in listing.stdout
    assert invoke(app, "idms-webhooks", "jobs", "show", first_id).exit_code == 0
    failed = invoke(app, "idms-webhooks", "jobs", "show", second_id, "--json")
    assert failed.exit_code == 1 and json.loads(failed.stdout)["Success"] is False
    finished = invoke(app, "idms-webhooks", "jobs", "cancel", first_id)
    assert finished.exit_code == 1 and "already finished" in finished.stderr
    assert invoke(app, "idms-webhooks", "jobs", "show", "no-such-job").exit_code == 4
    bad = invoke(app, "idms-webhooks", "jobs", "list", "--task", "nope")
    assert bad.exit_code == 2 and "no task 'nope'" in bad.output


def test_cancel_takes_a_queued_job_off_the_queue(app, state):
    job_id = json.loads(invoke(app, *TRIGGER, "count", "-p", "Count=2", "--json").stdout)[
        "ExecuteId"
    ]
    result = invoke(app, "idms-webhooks", "jobs", "cancel", job_id)
    assert result.exit_code == 0 and f"{job_id}: cancelled" in result.output
    assert json.loads(state.store.read(job_id)[0])["Status"] == "cancelled"
    assert state.queue.count == 0
