"""Signed triggers: with ``require_signature``, the webhooks accept only requests signed
per Standard Webhooks (here signed by the ``standardwebhooks`` package, as a sender
would), on top of the task key; a ``webhook-id`` seen before replays its first answer."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from standardwebhooks import Webhook

from flask_idms_webhooks import FilterRow, IdmsWebhooks, JobContext, Task, TaskLoadError
from flask_idms_webhooks.jobs.keys import PREFIX
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.web.answers import task_document
from tests.helpers import bound_app

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()


def work(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.set_row_count(0)


@pytest.fixture
def app(redis_url: str, queue_name: str) -> Flask:
    webhooks = IdmsWebhooks()
    region = [FilterRow("Test", "Region", default="EU")]
    webhooks.task("signed", filters=region, require_signature=True, signing_secrets=[NEW, OLD])(
        work
    )
    webhooks.task("plain", filters=region)(work)
    return bound_app(webhooks, redis_url, IDMS_WEBHOOKS_QUEUE_NAME=queue_name)


def key_of(app: Flask, task_id: str) -> str:
    state = state_of(app)
    return state.credentials.task_key(state.tasks[task_id])


def signed(
    body: bytes, secret: str = OLD, webhook_id: str = "msg_1", at: float | None = None
) -> dict[str, str]:
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, when, body),
    }


def post(app: Flask, body: bytes, headers: dict[str, str], task_id: str = "signed", key=True):
    sent = {"Content-Type": "application/json", **headers}
    if key:
        sent["X-Webhook-Key"] = key_of(app, task_id)
    return app.test_client().post(f"/idms/tasks/{task_id}/jobs", data=body, headers=sent)


BODY = json.dumps({"QueryParameters": {"Region": "US"}}).encode()


def jobs_of(app: Flask) -> int:
    return state_of(app).store.history("signed", 0, 10)[0]


@pytest.mark.parametrize("secret", [OLD, NEW])
def test_a_request_signed_with_any_of_the_secrets_starts_a_job(app: Flask, secret: str) -> None:
    answer = post(app, BODY, signed(BODY, secret))
    assert answer.status_code == 202
    assert answer.get_json()["QueryParameters"]["Region"]["Value"] == "US"
    assert jobs_of(app) == 1


def test_an_empty_signed_body_is_fine(app: Flask) -> None:
    assert post(app, b"", signed(b"")).status_code == 202


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_401_naming_it(app: Flask, missing: str) -> None:
    headers = signed(BODY)
    del headers[missing]
    answer = post(app, BODY, headers)
    assert answer.status_code == 401
    assert f"the {missing} header is missing" in answer.get_json()["message"]
    assert jobs_of(app) == 0


#: Headers a sender may get wrong, made when the test runs (a timestamp made when the
#: tests are collected would be minutes old by then).
BAD_HEADERS: dict[str, tuple[Callable[[], dict[str, str]], str]] = {
    "other secret": (lambda: signed(BODY, OTHER), "webhook-signature header matches none"),
    "tampered body": (lambda: signed(b'{"QueryParameters": {"Region": "FR"}}'), "signature"),
    "other id": (lambda: signed(BODY) | {"webhook-id": "msg_2"}, "webhook-signature"),
    "stale": (
        lambda: signed(BODY, at=time.time() - 1000),
        "s behind the server's clock (at most 300 s)",
    ),
    "future": (
        lambda: signed(BODY, at=time.time() + 1000),
        "s ahead of the server's clock (at most 300 s)",
    ),
    "not seconds": (
        lambda: signed(BODY) | {"webhook-timestamp": "soon"},
        "webhook-timestamp header must be",
    ),
    "long id": (lambda: signed(BODY, webhook_id="m" * 300), "webhook-id header is longer"),
    "superscript": (
        lambda: signed(BODY) | {"webhook-timestamp": "\u00b2"},
        "webhook-timestamp header must be",
    ),
    "huge": (lambda: signed(BODY) | {"webhook-timestamp": "9" * 400}, "must be whole seconds"),
    "too long for int()": (
        lambda: signed(BODY) | {"webhook-timestamp": "9" * 5000},
        "must be whole seconds",
    ),
}


@pytest.mark.parametrize("case", BAD_HEADERS)
def test_a_bad_signature_is_401_naming_the_header(app: Flask, case: str) -> None:
    make_headers, named = BAD_HEADERS[case]
    answer = post(app, BODY, make_headers())
    assert answer.status_code == 401
    assert named in answer.get_json()["message"]
    assert answer.get_json()["code"] == 401
    assert jobs_of(app) == 0


def test_the_task_key_is_still_required(app: Flask) -> None:
    answer = post(app, BODY, signed(BODY), key=False)
    assert answer.status_code == 401 and "key" in answer.get_json()["message"].lower()


def test_a_retry_with_the_same_webhook_id_replays_the_first_answer(app: Flask) -> None:
    first = post(app, BODY, signed(BODY, webhook_id="msg_9", at=time.time() - 60))
    retry = post(app, BODY, signed(BODY, webhook_id="msg_9"))  # re-signed, as senders do
    assert first.status_code == retry.status_code == 202
    assert retry.data == first.data
    assert retry.headers["Location"] == first.headers["Location"]
    assert jobs_of(app) == 1
    other = b'{"QueryParameters": {"Region": "FR"}}'
    reused = post(app, other, signed(other, webhook_id="msg_9"))
    assert reused.status_code == 422 and "webhook-id" in reused.get_json()["message"]
    claims = list(state_of(app).redis.scan_iter(f"{PREFIX}idem:signed:polling:webhook-id:*"))
    assert len(claims) == 1
    assert 590 <= state_of(app).redis.ttl(claims[0]) <= 600  # remembered 10 minutes


def test_tasks_without_it_and_validate_take_unsigned_requests(app: Flask) -> None:
    assert post(app, BODY, {}, task_id="plain").status_code == 202
    state = state_of(app)
    documents = {
        task.id: task_document(state, "http://h", task, None) for task in state.tasks.values()
    }
    assert (documents["signed"]["RequireSignature"], documents["plain"]["RequireSignature"]) == (
        True,
        False,
    )
    validate = app.test_client().post(
        "/idms/tasks/signed/validate", json={}, headers={"X-Webhook-Key": key_of(app, "signed")}
    )
    assert validate.status_code == 200


TASK = '[[tasks]]\nid = "t"\nhandler = "tests.test_signed_triggers:work"\n'


def load(tmp_path: Path, redis_url: str, extra: str) -> Flask:
    task_file = tmp_path / "tasks.toml"
    task_file.write_text(TASK + extra)
    return bound_app(None, redis_url, IDMS_WEBHOOKS_TASKS_FILE=str(task_file))


def test_the_task_file_keys(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGN_A", NEW)
    monkeypatch.setenv("SIGN_B", OLD)
    app = load(
        tmp_path,
        redis_url,
        'require_signature = true\nsigning_secrets = ["${SIGN_A}", "${SIGN_B}"]\n',
    )
    task = state_of(app).tasks["t"]
    assert task.require_signature and task.signing_secrets == (NEW, OLD)
    assert os.environ["SIGN_A"] == NEW


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ("require_signature = true\n", "signing_secrets", "required with require_signature"),
        (f'require_signature = true\nsigning_secrets = ["{OLD}"]\n', "signing_secrets[0]",
         "credentials never sit in the file"),
        ('require_signature = true\nsigning_secrets = ["${SIGN_BAD}"]\n', "signing_secrets[0]",
         "whsec_\" followed by valid base64"),
        ('signing_secrets = ["${SIGN_A}"]\n', "signing_secrets", "without require_signature"),
        ('require_signature = "yes"\n', "require_signature", "true or false"),
    ],
)  # fmt: skip
def test_bad_task_file_keys_are_load_errors(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, extra: str, key: str,
    message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("SIGN_A", NEW)
    monkeypatch.setenv("SIGN_BAD", "whsec_not*base64")
    with pytest.raises(TaskLoadError) as raised:
        load(tmp_path, redis_url, extra)
    assert (raised.value.task, raised.value.key) == ("t", key)
    assert message in str(raised.value)


def test_python_tasks_are_checked_too() -> None:
    with pytest.raises(TaskLoadError, match="required with require_signature"):
        IdmsWebhooks().task("t", require_signature=True)(work)
    with pytest.raises(TaskLoadError, match="required with require_signature"):
        IdmsWebhooks().register_task(Task("t", work, require_signature=True))
