"""Schedules: tasks that run on their own, on UTC crontabs, one job per due time.

The clock is moved with time-machine for the cron arithmetic, missed runs, catch-up and
the failure counter; the schedulers and the store are real (Redis). The end-to-end cases
(two forking workers, a holder killed) are in ``test_schedules_e2e.py``.
"""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path

import pytest
import time_machine
from flask import Flask

from flask_idms_webhooks import IdmsWebhooks
from flask_idms_webhooks.errors import ConfigurationError, TaskLoadError
from flask_idms_webhooks.jobs import schedules as records
from flask_idms_webhooks.jobs.scheduler import Scheduler, SchedulerLoop
from flask_idms_webhooks.model.schedules import Schedule, cron_problem, parse_utc
from flask_idms_webhooks.state import WebhooksState, state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import ADMIN, poll_path
from tests.schedule_app import create_app

NOTE_FILTERS = """
[[tasks.source.filters]]
business_object = "Test"
column = "Delay"
type = "Double"
default = 0.0

[[tasks.source.filters]]
business_object = "Test"
column = "Region"
type = "String"
prompt = "Required"
"""


def task_file(tmp_path: Path, body: str, *, filters: bool = True, name: str = "tasks") -> Path:
    """A task file of one task ``nightly`` (a Python handler) with ``body``'s keys."""
    path = tmp_path / f"{name}.toml"
    text = '[[tasks]]\nid = "nightly"\nhandler = "tests.schedule_app:note"\n'
    text += textwrap.dedent(body).strip() + "\n"
    if filters:
        text += NOTE_FILTERS
    text += '\n[[tasks]]\nid = "plain"\nhandler = "tests.schedule_app:note"\n'
    path.write_text(text)
    return path


@pytest.fixture
def scheduled(redis_url, queue_name, tmp_path):
    """An app factory over a task file of a ``nightly`` task with the given keys."""

    def make(body: str, *, file_name: str = "tasks", **config) -> Flask:
        path = task_file(tmp_path, body, name=file_name)
        settings = {
            "IDMS_WEBHOOKS_REDIS_URL": redis_url,
            "IDMS_WEBHOOKS_QUEUE_NAME": queue_name,
            "IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT": 2,
            "IDMS_WEBHOOKS_TASKS_FILE": str(path),
        }
        settings.update(config)
        return create_app(**settings)

    return make


NIGHTLY = """
schedule = "0 2 * * *"
schedule_parameters = { Region = "EU" }
"""


def at(text: str) -> datetime:
    return parse_utc(text)


def history(state: WebhooksState, task_id: str = "nightly") -> list[dict]:
    from flask_idms_webhooks.jobs.store import loads

    return [loads(raw) for raw in state.store.history(task_id, 0, 100)[1]]


def burst(app: Flask) -> None:
    make_worker(app, simple=True).work(burst=True, logging_level="WARNING")


# -- the cron arithmetic ------------------------------------------------------------------
def test_cron_is_evaluated_in_utc_and_daylight_saving_does_not_exist():
    nightly = Schedule(cron=("0 2 * * *",))
    # Europe and the US change clocks in March and October/November: 24 h apart in UTC.
    for day in ("2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01"):
        start = at(f"{day}T02:00:00Z").timestamp()
        assert nightly.next_due(start) - start == 86400
    assert (
        nightly.latest_due(at("2026-12-06T01:59:59Z").timestamp())
        == at("2026-12-05T02:00:00Z").timestamp()
    )
    assert (
        nightly.latest_due(at("2026-12-06T02:00:00Z").timestamp())
        == at("2026-12-06T02:00:00Z").timestamp()
    )


def test_a_list_of_crons_is_due_when_any_is_and_run_at_is_due_once():
    both = Schedule(cron=("0 2 * * *", "30 14 * * 1-5"))
    monday = at("2026-12-07T03:00:00Z").timestamp()
    assert both.next_due(monday) == at("2026-12-07T14:30:00Z").timestamp()
    assert both.due_count(monday, monday + 7 * 86400) == 7 + 5
    once = Schedule(run_at=at("2026-12-24T02:00:00Z"))
    christmas_eve = at("2026-12-24T02:00:00Z").timestamp()
    assert once.next_due(christmas_eve - 1) == christmas_eve
    assert once.next_due(christmas_eve) is None
    assert once.latest_due(christmas_eve - 1) is None
    assert once.latest_due(christmas_eve + 3600) == christmas_eve


def test_cron_problems_quote_the_expression():
    assert cron_problem("0 2 * * *") is None
    assert "'61 * * * *'" in cron_problem("61 * * * *")
    assert "'0 2 * *'" in cron_problem("0 2 * *")
    assert "IDMS_WEBHOOKS_SCHEDULE_SECONDS" in cron_problem("*/5 * * * * *")
    assert cron_problem("*/5 * * * * *", seconds=True) is None


# -- load errors --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "key", "says"),
    [
        ('schedule = "0 25 * * *"', "schedule", "'0 25 * * *'"),
        ('schedule = "0 0 30 2 *"', "schedule", "never due"),
        ('schedule = ["0 2 * * *", "every night"]', "schedule", "'every night'"),
        ('schedule = "*/5 * * * * *"', "schedule", "6 fields"),
        ('schedule = "0 2 * * *"\nrun_at = 2026-12-24T02:00:00Z', "run_at", "not both"),
        ('run_at = "2026-12-24T02:00:00"', "run_at", "UTC"),
        ('run_at = "at Christmas"', "run_at", "ISO 8601"),
        ('schedule = "0 2 * * *"\ncatch_up = "all"', "catch_up", "latest, none"),
        ('schedule = "0 2 * * *"\nmax_failures = -1', "max_failures", "from 0"),
        ('schedule = "0 2 * * *"\nenabled = "yes"', "enabled", "true or false"),
        ("enabled = false", "enabled", "`schedule`"),
        ('schedule = "0 2 * * *"', "schedule_parameters.Region", "Required"),
        (
            'schedule = "0 2 * * *"\nschedule_parameters = { Region = "EU", Delay = "slow" }',
            "schedule_parameters.Delay",
            "number",
        ),
        (
            'schedule = "0 2 * * *"\nschedule_parameters = { Region = "EU", Nope = 1 }',
            "schedule_parameters.Nope",
            "Unknown",
        ),
    ],
)
def test_a_bad_schedule_is_a_load_error_naming_the_task_and_key(scheduled, body, key, says):
    with pytest.raises(TaskLoadError) as caught:
        scheduled(body)
    assert caught.value.task == "nightly" and caught.value.key == key, str(caught.value)
    assert says in str(caught.value)


def test_a_seconds_field_is_accepted_only_where_the_setting_allows(scheduled):
    app = scheduled(
        'schedule = "*/5 * * * * *"\nschedule_parameters = { Region = "EU" }',
        IDMS_WEBHOOKS_SCHEDULE_SECONDS=True,
    )
    assert state_of(app).tasks["nightly"].schedule.cron == ("*/5 * * * * *",)


def test_a_schedule_without_a_public_url_is_a_configuration_error(scheduled):
    with pytest.raises(ConfigurationError) as caught:
        scheduled(NIGHTLY, IDMS_WEBHOOKS_PUBLIC_URL="")
    assert "IDMS_WEBHOOKS_PUBLIC_URL" in str(caught.value) and "'nightly'" in str(caught.value)


def test_python_tasks_take_the_same_keywords(redis_url, queue_name):
    webhooks = IdmsWebhooks()

    @webhooks.task("py-nightly", schedule=["0 2 * * *"], max_failures=2, catch_up="none")
    def work(parameters, context):
        return None

    with pytest.raises(TaskLoadError) as caught:
        webhooks.task("bad", schedule="0 2 * * * * *")(work)
    assert caught.value.key == "schedule" and "'0 2 * * * * *'" in str(caught.value)
    with pytest.raises(TaskLoadError):
        webhooks.task("worse", schedule="0 2 * * *", catch_up="all")(work)
    webhooks.task("fast", schedule="*/5 * * * * *")(work)  # checked at init_app
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s", IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_PUBLIC_URL="https://sync.example.org",
    )  # fmt: skip
    with pytest.raises(TaskLoadError) as seconds:
        webhooks.init_app(app)
    assert "6 fields" in str(seconds.value)


# -- the scheduler's ticks ----------------------------------------------------------------
def test_a_due_time_starts_one_scheduled_job_with_its_parameters(scheduled):
    app = scheduled(NIGHTLY)
    state = state_of(app)
    with time_machine.travel(at("2026-12-06T01:59:58Z"), tick=False) as clock:
        assert state.scheduler.tick() == {}  # first sight: the past is not caught up
        clock.move_to(at("2026-12-06T02:00:01Z"))
        started = state.scheduler.tick()
        assert started["nightly"].outcome == "started"
        assert state.scheduler.tick() == {}  # handled: nothing more for this due time
        other = Scheduler(state.jobs)
        assert other.tick() == {}  # nor for any other scheduler
    (job,) = history(state)
    assert job["Trigger"] == "schedule" and job["DueOn"] == "2026-12-06T02:00:00Z"
    assert job["QueryParameters"]["Region"] == {"Value": "EU", "Source": "schedule"}
    assert job["QueryParameters"]["Delay"] == {"Value": 0.0, "Source": "task default"}
    assert job["PollingUrl"].startswith("https://sync.example.org/idms/jobs/")
    burst(app)
    client = app.test_client()
    final = client.get(poll_path(job["PollingUrl"]))
    assert final.status_code == 200 and final.get_json()["Success"] is True
    with time_machine.travel(at("2026-12-06T02:00:05Z"), tick=False):  # the next, from then
        view = client.get("/idms/tasks/nightly/schedule", headers=ADMIN).get_json()
    assert view["LastRunOn"] == "2026-12-06T02:00:01Z"
    assert view["LastOutcome"] == "succeeded"
    assert view["NextRunOn"] == "2026-12-07T02:00:00Z"
    assert view["RecentRuns"] == [{"DueOn": "2026-12-06T02:00:00Z", "ExecuteId": job["ExecuteId"]}]


def test_two_schedulers_racing_for_every_due_time_start_one_job_each(scheduled):
    first = state_of(scheduled(NIGHTLY))
    second = state_of(scheduled(NIGHTLY))
    with time_machine.travel(at("2026-12-01T00:00:00Z"), tick=False) as clock:
        first.scheduler.tick()
        for day in range(1, 6):
            clock.move_to(at(f"2026-12-0{day}T02:00:00Z"))
            outcomes = [first.scheduler.tick(), second.scheduler.tick()]
            assert sum(len(outcome) for outcome in outcomes) == 1
            burst(scheduled(NIGHTLY))
    jobs = history(first)
    assert sorted(job["DueOn"] for job in jobs) == [f"2026-12-0{d}T02:00:00Z" for d in range(1, 6)]


def test_a_due_time_while_a_job_of_the_task_runs_is_skipped_and_recorded(scheduled):
    app = scheduled(NIGHTLY)
    state = state_of(app)
    client = app.test_client()
    key = state.credentials.task_key(state.tasks["nightly"])
    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False) as clock:
        state.scheduler.tick()
        webhook = client.post(
            "/idms/tasks/nightly/jobs",
            json={"QueryParameters": {"Region": "US"}},
            headers={"X-Webhook-Key": key},
        )
        assert webhook.status_code == 202  # queued, not run: still there at 02:00
        clock.move_to(at("2026-12-06T02:00:00Z"))
        skipped = state.scheduler.tick()["nightly"]
        assert skipped.outcome == "skipped"
        assert webhook.get_json()["ExecuteId"] in skipped.reason
        burst(app)
        clock.move_to(at("2026-12-07T02:00:00Z"))
        assert state.scheduler.tick()["nightly"].outcome == "started"
    runs = client.get("/idms/tasks/nightly/schedule", headers=ADMIN).get_json()["RecentRuns"]
    assert runs[1]["DueOn"] == "2026-12-06T02:00:00Z" and "still queued" in runs[1]["Skipped"]
    assert runs[0]["DueOn"] == "2026-12-07T02:00:00Z" and "ExecuteId" in runs[0]
    assert [job["Trigger"] for job in history(state)] == ["schedule", "webhook"]


@pytest.mark.parametrize("catch_up", ["latest", "none"])
def test_after_downtime_catch_up_runs_once_or_not_at_all(scheduled, catch_up):
    state = state_of(scheduled(NIGHTLY + f'catch_up = "{catch_up}"\n'))
    with time_machine.travel(at("2026-12-01T01:00:00Z"), tick=False) as clock:
        state.scheduler.tick()  # the due time it records
        clock.move_to(at("2026-12-05T09:00:00Z"))  # down for five due times
        outcome = state.scheduler.tick()["nightly"]
        assert state.scheduler.tick() == {}
    runs = state.scheduler.views()["nightly"]["RecentRuns"]
    assert len(runs) == 1 and runs[0]["DueOn"] == "2026-12-05T02:00:00Z"
    if catch_up == "latest":
        assert outcome.outcome == "started" and runs[0]["Missed"] == 4
        assert len(history(state)) == 1
    else:
        assert outcome.outcome == "skipped" and "missed" in runs[0]["Skipped"]
        assert history(state) == []


def test_run_at_runs_once(scheduled):
    state = state_of(
        scheduled('run_at = 2026-12-24T02:00:00Z\nschedule_parameters = { Region = "EU" }')
    )
    with time_machine.travel(at("2026-12-24T01:00:00Z"), tick=False) as clock:
        state.scheduler.tick()
        assert state.scheduler.views()["nightly"]["NextRunOn"] == "2026-12-24T02:00:00Z"
        clock.move_to(at("2026-12-24T02:00:00Z"))
        assert state.scheduler.tick()["nightly"].outcome == "started"
        clock.move_to(at("2027-12-24T02:00:00Z"))
        assert state.scheduler.tick() == {}
        assert state.scheduler.views()["nightly"]["NextRunOn"] is None
    assert len(history(state)) == 1


def test_a_disabled_schedule_starts_nothing_and_shows_no_next_run(scheduled):
    app = scheduled(NIGHTLY + "enabled = false\n")
    state = state_of(app)
    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False) as clock:
        for day in range(6, 10):
            clock.move_to(at(f"2026-12-{day:02d}T02:00:00Z"))
            assert state.scheduler.tick() == {}
        view = state.scheduler.views()["nightly"]
    assert view["Enabled"] is False and view["NextRunOn"] is None
    assert history(state) == [] and state.queue.count == 0


def test_failed_runs_disable_the_schedule_after_max_failures(scheduled):
    app = scheduled(NIGHTLY + "max_failures = 2\n")
    app.config["SCHEDULE_FAIL"] = True
    state = state_of(app)
    client = app.test_client()

    def night(day: int) -> dict:
        clock.move_to(at(f"2026-12-{day:02d}T02:00:00Z"))
        state.scheduler.tick()
        burst(app)
        return client.get("/idms/tasks/nightly/schedule", headers=ADMIN).get_json()

    with time_machine.travel(at("2026-12-01T00:00:00Z"), tick=False) as clock:
        state.scheduler.tick()
        assert night(1)["ConsecutiveFailures"] == 1
        app.config["SCHEDULE_FAIL"] = False
        assert night(2)["ConsecutiveFailures"] == 0  # a success resets the count
        app.config["SCHEDULE_FAIL"] = True
        assert night(3)["ConsecutiveFailures"] == 1
        # a webhook run's failure does not count
        key = state.credentials.task_key(state.tasks["nightly"])
        body = {"QueryParameters": {"Region": "EU"}}
        client.post("/idms/tasks/nightly/jobs", json=body, headers={"X-Webhook-Key": key})
        burst(app)
        disabled = night(4)
        assert disabled["ConsecutiveFailures"] == 2 and disabled["Enabled"] is False
        assert disabled["NextRunOn"] is None and disabled["LastOutcome"] == "failed"
        assert disabled["DisabledReason"].startswith("Disabled after 2 consecutive failed")
        assert "told to fail" in disabled["DisabledReason"]
        assert night(5)["RecentRuns"][0]["DueOn"] == "2026-12-04T02:00:00Z"  # none started
        enabled = client.put(
            "/idms/tasks/nightly/schedule", json={"Enabled": True}, headers=ADMIN
        ).get_json()
        assert enabled["Enabled"] is True and enabled["ConsecutiveFailures"] == 0
        assert enabled["DisabledReason"] is None
        assert enabled["NextRunOn"] == "2026-12-06T02:00:00Z"  # no catch-up of the 5th
    assert [job["Trigger"] for job in history(state)].count("schedule") == 4


def test_a_changed_enabled_in_the_file_wins_over_redis(scheduled):
    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False):
        app = scheduled(NIGHTLY)
        client = app.test_client()
        state_of(app).scheduler.tick()
        off = client.put("/idms/tasks/nightly/schedule", json={"Enabled": False}, headers=ADMIN)
        assert off.get_json()["DisabledReason"].startswith("Disabled by an admin")
        again = scheduled(NIGHTLY)  # the file unchanged: Redis's state holds
        assert state_of(again).scheduler.views()["nightly"]["Enabled"] is False
        state_of(again).scheduler.tick()
        assert state_of(again).scheduler.views()["nightly"]["Enabled"] is False
        file_off = scheduled(NIGHTLY + "enabled = false\n")
        state_of(file_off).scheduler.tick()
        client.put("/idms/tasks/nightly/schedule", json={"Enabled": True}, headers=ADMIN)
        file_on = scheduled(NIGHTLY + "enabled = true\n")  # changed in the file: it wins
        state_of(file_on).scheduler.tick()
        assert state_of(file_on).scheduler.views()["nightly"]["Enabled"] is True


# -- the routes and the command line ------------------------------------------------------
def test_schedule_routes_and_the_task_document(scheduled):
    app = scheduled(NIGHTLY + "max_failures = 3\n")
    client = app.test_client()
    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False):
        view = client.get("/idms/tasks/nightly/schedule", headers=ADMIN)
        assert view.status_code == 200
        assert view.get_json() == {
            "Cron": ["0 2 * * *"], "RunAt": None, "Enabled": True,
            "NextRunOn": "2026-12-06T02:00:00Z", "LastRunOn": None, "LastOutcome": None,
            "ConsecutiveFailures": 0, "MaxFailures": 3, "CatchUp": "latest",
            "DisabledReason": None, "RecentRuns": [],
        }  # fmt: skip
        tasks = {t["TaskId"]: t for t in client.get("/idms/tasks", headers=ADMIN).get_json()}
        assert tasks["nightly"]["Schedule"] == view.get_json()
        assert tasks["plain"]["Schedule"] is None
        assert client.get("/idms/tasks/plain", headers=ADMIN).get_json()["Schedule"] is None
    assert client.get("/idms/tasks/plain/schedule", headers=ADMIN).status_code == 404
    assert client.get("/idms/tasks/nope/schedule", headers=ADMIN).status_code == 404
    assert client.get("/idms/tasks/nightly/schedule").status_code == 401
    put = client.put
    assert put("/idms/tasks/nightly/schedule", json={"Enabled": False}).status_code == 401
    for bad in ({}, {"Enabled": "false"}, {"Enabled": 0}, {"Enabled": True, "Extra": 1}):
        answer = put("/idms/tasks/nightly/schedule", json=bad, headers=ADMIN)
        assert answer.status_code == 422, bad
        assert answer.get_json()["code"] == 422
    assert client.get("/idms/tasks/nightly/schedule", headers=ADMIN).get_json()["Enabled"]
    off = put("/idms/tasks/nightly/schedule", json={"Enabled": False}, headers=ADMIN)
    assert off.status_code == 200 and off.get_json()["NextRunOn"] is None


def test_the_schedules_commands(scheduled):
    app = scheduled(NIGHTLY)
    runner = app.test_cli_runner()
    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False):
        listing = runner.invoke(args=["idms-webhooks", "schedules"])
        assert listing.exit_code == 0, listing.output
        assert "nightly: 0 2 * * * (UTC), enabled" in listing.output
        assert "next run: 2026-12-06T02:00:00Z" in listing.output
        assert "plain: no schedule" in listing.output
        off = runner.invoke(args=["idms-webhooks", "schedules", "disable", "nightly"])
        assert off.exit_code == 0 and "nightly: disabled" in off.output
        listing = runner.invoke(args=["idms-webhooks", "schedules"])
        assert "DISABLED" in listing.output and "from the command line" in listing.output
        on = runner.invoke(args=["idms-webhooks", "schedules", "enable", "nightly"])
        assert "nightly: enabled; next run: 2026-12-06T02:00:00Z" in on.output
    bad = runner.invoke(args=["idms-webhooks", "schedules", "enable", "plain"])
    assert bad.exit_code == 2 and "no schedule" in bad.output


def test_a_claim_retried_after_the_running_job_ended_starts_the_run(scheduled, monkeypatch):
    app = scheduled(NIGHTLY)
    state = state_of(app)
    key = state.credentials.task_key(state.tasks["nightly"])
    passes = []
    original = records.ScheduleRecords._active_jobs

    def job_ends_after_the_first_read(self, pipe, task_id):
        seen = original(self, pipe, task_id)
        passes.append(seen)
        if len(passes) == 1:  # the webhook job is sealed between the claim's read and EXEC
            from flask_idms_webhooks.jobs.store import loads

            state.jobs.seal(loads(state.store.live(webhook["ExecuteId"])), "succeeded")
        return seen

    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False) as clock:
        state.scheduler.tick()
        webhook = (
            app.test_client()
            .post(
                "/idms/tasks/nightly/jobs",
                json={"QueryParameters": {"Region": "US"}},
                headers={"X-Webhook-Key": key},
            )
            .get_json()
        )
        monkeypatch.setattr(records.ScheduleRecords, "_active_jobs", job_ends_after_the_first_read)
        clock.move_to(at("2026-12-06T02:00:00Z"))
        claimed = state.scheduler.tick()["nightly"]
    assert [running for running, _ in passes] == [[webhook["ExecuteId"]], []]
    assert claimed.outcome == "started", claimed


def test_turning_on_a_schedule_that_is_on_changes_nothing_and_never_rewinds(scheduled):
    app = scheduled(NIGHTLY)
    state = state_of(app)
    client = app.test_client()

    def put(enabled: bool) -> dict:
        answer = client.put(
            "/idms/tasks/nightly/schedule", json={"Enabled": enabled}, headers=ADMIN
        )
        assert answer.status_code == 200
        return answer.get_json()

    with time_machine.travel(at("2026-12-01T01:00:00Z"), tick=False) as clock:
        state.scheduler.tick()
        clock.move_to(at("2026-12-04T02:00:00Z"))  # three nights due, not handled yet
        put(True)  # already on: the missed nights are still caught up
        assert state.scheduler.tick()["nightly"].outcome == "started"
        burst(app)
        clock.move_to(at("2026-12-04T01:59:59Z"))  # a web host's clock behind
        put(False)
        put(True)
        clock.move_to(at("2026-12-04T02:00:02Z"))
        assert state.scheduler.tick() == {}  # the handled due time is not handled again
    assert [job["DueOn"] for job in history(state)] == ["2026-12-04T02:00:00Z"]


def test_apps_with_queues_of_their_own_on_one_redis_each_run_their_schedules(scheduled, redis_url):
    first = state_of(scheduled(NIGHTLY, IDMS_WEBHOOKS_QUEUE_NAME="first"))
    second = state_of(scheduled(NIGHTLY, IDMS_WEBHOOKS_QUEUE_NAME="second"))
    loops = [SchedulerLoop(state.scheduler, lease=5) for state in (first, second)]
    with time_machine.travel(at("2026-12-06T01:00:00Z"), tick=False) as clock:
        for loop in loops:
            loop.step()
        clock.move_to(at("2026-12-06T02:00:00Z"))
        for loop in loops:
            loop.step()
    assert all(loop.holding for loop in loops)
    runs = [state.scheduler.views()["nightly"]["RecentRuns"] for state in (first, second)]
    assert [len(recent) for recent in runs] == [1, 1]
    assert runs[0][0]["ExecuteId"] != runs[1][0]["ExecuteId"]  # each app's own job
    for loop in loops:
        loop.stop()
