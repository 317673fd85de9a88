"""The example app's tasks over its SQLite membership database (in-process worker)."""

from __future__ import annotations

import sqlite3

import pytest

from example_app import create_app
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import poll_path


@pytest.fixture
def example(tmp_path, redis_url, queue_name):
    database = tmp_path / "members.db"
    app = create_app(
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        IDMS_WEBHOOKS_SECRET_KEY="example-secret",
        EXAMPLE_DATABASE=str(database),
    )
    return app, database


def trigger(app, task_id: str, parameters: dict):
    state = state_of(app)
    key = state.credentials.task_key(state.tasks[task_id])
    return app.test_client().post(
        f"/idms/tasks/{task_id}/jobs",
        json={"QueryParameters": parameters},
        headers={"X-Webhook-Key": key},
    )


def finish(app, answer):
    make_worker(app, simple=True).work(burst=True, logging_level="WARNING")
    return app.test_client().get(poll_path(answer.headers["Location"])).get_json()


def member(database, member_id: int) -> sqlite3.Row:
    connection = sqlite3.connect(database)
    connection.row_factory = sqlite3.Row
    return connection.execute("SELECT * FROM member WHERE id = ?", (member_id,)).fetchone()


def test_the_database_is_seeded_once_with_thousands_of_members(example):
    app, database = example
    create_app(  # a second app on the same file (as a second gunicorn worker) adds nothing
        IDMS_WEBHOOKS_REDIS_URL=app.config["IDMS_WEBHOOKS_REDIS_URL"],
        IDMS_WEBHOOKS_SECRET_KEY="example-secret",
        EXAMPLE_DATABASE=str(database),
    )
    assert sqlite3.connect(database).execute("SELECT COUNT(*) FROM member").fetchone()[0] == 5000


def test_merge_contacts_takes_two_ids_by_qualified_key(example):
    app, database = example
    duplicate = member(database, 5)  # member 5 has a phone; member 7 has none
    assert member(database, 7)["phone"] is None and duplicate["phone"]
    answer = trigger(app, "merge-contacts", {"CsContact1.ImisId": 7, "CsContact2.ImisId": 5})
    assert answer.status_code == 202
    final = finish(app, answer)
    assert final["Success"] is True and final["UpdatedCount"] == 2
    assert member(database, 7)["phone"] == duplicate["phone"]
    assert member(database, 5)["status"] == "M" and member(database, 5)["merged_into"] == 7
    again = finish(
        app, trigger(app, "merge-contacts", {"CsContact1.ImisId": 7, "CsContact2.ImisId": 5})
    )
    assert again["Success"] is True and again["SkippedCount"] == 2 and again["UpdatedCount"] == 0


def test_merge_contacts_refuses_the_bare_column_name(example):
    app, _ = example
    answer = trigger(app, "merge-contacts", {"ImisId": 7})
    assert answer.status_code == 422
    message = str(answer.get_json()["errors"])
    assert "CsContact1.ImisId" in message and "CsContact2.ImisId" in message


def test_merging_a_member_with_itself_fails_with_a_clear_error(example):
    app, _ = example
    final = finish(
        app, trigger(app, "merge-contacts", {"CsContact1.ImisId": 9, "CsContact2.ImisId": 9})
    )
    assert final["Status"] == "failed"
    assert final["Error"] == {
        "Type": "ValueError",
        "Message": "CsContact1.ImisId and CsContact2.ImisId name the same member",
    }


def test_renewal_uses_the_fixed_status_filter_and_counts_every_row(example):
    app, database = example
    final = finish(app, trigger(app, "renew-memberships", {"LastName": "Smith"}))
    assert final["QueryParameters"]["PaidBefore"] == {
        "Value": "2026-12-31",
        "Source": "task default",
    }
    inactive = sqlite3.connect(database).execute(
        "SELECT COUNT(*) FROM member"
        " WHERE last_name = 'Smith' AND status = 'I' AND updated_on IS NOT NULL"
    )
    assert inactive.fetchone()[0] == 0  # the fixed filter Status = "A" kept them out
    assert final["ProcessedCount"] == final["RowCount"] > 100
    assert final["UpdatedCount"] + final["SkippedCount"] + final["ErrorCount"] == final["RowCount"]


def test_the_dues_summary_runs_nightly_or_every_ten_seconds_in_the_demo(tmp_path, redis_url):
    def schedule_of(**extra):
        app = create_app(
            IDMS_WEBHOOKS_REDIS_URL=redis_url,
            IDMS_WEBHOOKS_SECRET_KEY="example-secret",
            EXAMPLE_DATABASE=str(tmp_path / "members.db"),
            **extra,
        )
        return state_of(app).tasks["refresh-dues-summary"].schedule

    nightly = schedule_of()
    assert nightly.cron == ("0 2 * * *",) and nightly.max_failures == 3
    assert schedule_of(EXAMPLE_FAST_SCHEDULE="1").cron == ("*/10 * * * * *",)
    assert schedule_of().cron == ("0 2 * * *",)  # not left behind in the environment
