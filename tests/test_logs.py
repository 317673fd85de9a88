"""The log as an operator reads it: one INFO line per finished job (task, job, status,
counts, duration, rows/s), whoever seals it; ``IDMS_WEBHOOKS_LOG_FORMAT = "json"`` gives
JSON lines carrying ``task_id``, ``job_id`` and the request's ``X-Request-Id`` (made when
absent, echoed in the answer); secrets are redacted in both formats."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from flask_idms_webhooks.errors import ConfigurationError
from flask_idms_webhooks.logs import LOGGER, log_to
from tests.helpers import ADMIN


@pytest.fixture(autouse=True)
def own_logger() -> Iterator[None]:
    """Whatever a test sets up, the extension's logger is as it was afterwards."""
    logger = logging.getLogger(LOGGER)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def start(client, key, task_id: str, parameters: dict | None = None, **headers: str):
    answer = client.post(
        f"/idms/tasks/{task_id}/jobs",
        json={"QueryParameters": parameters or {}},
        headers={"X-Webhook-Key": key(task_id), **headers},
    )
    assert answer.status_code == 202, answer.get_json()
    return answer


def finished_lines(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if getattr(r, "duration_seconds", "absent") != "absent"]


def test_one_line_per_finished_job(client, key, run_burst, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    job_id = start(client, key, "count", {"Count": 3}).get_json()["ExecuteId"]
    run_burst()
    [line] = finished_lines(caplog.records)
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(
        f"job {job_id} of task count succeeded: 3 processed (1 inserted, 1 updated, 1 skipped,"
        " 0 errors, 0 deleted)"
    )
    assert (line.task_id, line.job_id, line.status) == ("count", job_id, "succeeded")
    assert line.counts["Processed"] == 3 and line.duration_seconds >= 0


def test_a_failed_job_and_a_cancelled_one_have_their_line(client, key, run_burst, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    failed = start(client, key, "boom").get_json()["ExecuteId"]
    run_burst()
    cancelled = start(client, key, "count", {"Count": 3}).get_json()["ExecuteId"]
    assert client.delete(f"/idms/jobs/{cancelled}", headers=ADMIN).status_code == 202
    lines = {line.job_id: line for line in finished_lines(caplog.records)}
    assert lines[failed].status == "failed" and " failed: 2 processed" in lines[failed].msg
    assert lines[cancelled].status == "cancelled"
    assert len(finished_lines(caplog.records)) == 2  # one each, never more


def test_json_lines_carry_the_request_id_and_the_job(make_app, key, capsys):
    app = make_app(IDMS_WEBHOOKS_LOG_FORMAT="json")
    client = app.test_client()
    answer = start(client, key, "count", {"Count": 3}, **{"X-Request-Id": "flow-run-42"})
    assert answer.headers["X-Request-Id"] == "flow-run-42"
    job_id = answer.get_json()["ExecuteId"]
    cancel = client.delete(f"/idms/jobs/{job_id}", headers={**ADMIN, "X-Request-Id": "stop-1"})
    assert cancel.headers["X-Request-Id"] == "stop-1"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    [sealed] = [line for line in lines if line.get("status") == "cancelled"]
    assert sealed["level"] == "INFO" and sealed["name"] == LOGGER and sealed["time"]
    assert sealed["request_id"] == "stop-1"
    assert (sealed["task_id"], sealed["job_id"]) == ("count", job_id)
    assert sealed["message"].startswith(f"job {job_id} of task count cancelled")


def test_a_request_id_is_made_when_absent_or_not_plain(client, key):
    made = start(client, key, "count", {"Count": 1}).headers["X-Request-Id"]
    assert len(made) == 32 and int(made, 16) >= 0
    odd = client.get("/idms/health", headers={"X-Request-Id": "two words<script>"})
    assert odd.headers["X-Request-Id"] != "two words<script>"
    assert len(odd.headers["X-Request-Id"]) == 32
    assert client.get("/idms/tasks", headers=ADMIN).headers["X-Request-Id"]


def test_worker_lines_name_the_job_they_are_about(make_app, key, capsys):
    from flask_idms_webhooks.worker import make_worker

    app = make_app(IDMS_WEBHOOKS_LOG_FORMAT="json")
    job_id = start(app.test_client(), key, "boom").get_json()["ExecuteId"]
    make_worker(app, simple=True).work(burst=True, logging_level="WARNING")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    ours = [line for line in lines if line.get("name") == LOGGER]
    failure = [line for line in ours if line["level"] == "ERROR"]
    assert failure and all(line["job_id"] == job_id for line in failure)
    assert all(line["task_id"] == "boom" for line in failure)
    assert "the source could not be read" in failure[0].get("exc_info", "")


@pytest.mark.parametrize("form", ["text", "json"])
def test_secrets_are_redacted_in_both_formats(form):
    stream = io.StringIO()
    log_to(form, logging.INFO, stream)
    logging.getLogger(LOGGER).warning(
        "calling %s with %s",
        "https://x/idms/tasks/t/jobs?key=k3y-s3cret&a=1&token=t0k3n",
        "Authorization: Bearer b34r3r-s3cret",
    )
    text = stream.getvalue()
    for secret in ("k3y-s3cret", "t0k3n", "b34r3r-s3cret"):
        assert secret not in text
    assert text.count("[redacted]") == 3 and "a=1" in text
    if form == "json":
        assert json.loads(text)["level"] == "WARNING"


def test_an_unknown_log_format_is_a_configuration_error(make_app):
    with pytest.raises(ConfigurationError, match="LOG_FORMAT must be text or json"):
        make_app(IDMS_WEBHOOKS_LOG_FORMAT="xml")
