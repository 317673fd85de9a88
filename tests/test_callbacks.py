"""Completion callbacks: the sealed document POSTed to a trigger's CallbackUrl, signed
per Standard Webhooks (verified here with the ``standardwebhooks`` package), retried with
back-off on 5xx, 408, 429 (honouring Retry-After) and network errors, not on other 4xx
nor a redirect; its delivery state at ``GET /idms/jobs/{job_id}/callback``; the task's
CallbackSecret. Receivers run on 127.0.0.1 (so the tests allow http and private
addresses); the attempts run on burst workers, a new one each round, as after a restart.
"""

from __future__ import annotations

import email.utils
import os
import signal
import time
from datetime import UTC, datetime

import pytest
from flask import Flask
from standardwebhooks import Webhook

from flask_idms_webhooks import TaskLoadError
from flask_idms_webhooks.iupdate.connections import Connections
from flask_idms_webhooks.state import WebhooksState, state_of
from flask_idms_webhooks.taskfile import load_task_file
from flask_idms_webhooks.worker import make_worker
from tests.callback_support import (
    CALLBACKS,
    FLOW_QUERY,
    WORKER_CALLBACKS,
    Answer,
    callback_path,
    children,
    delivery,
    receiving,
    secret_of,
    start,
    verified,
    work,
    work_until,
)
from tests.helpers import poll_path, wait_for


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(**CALLBACKS)


def test_the_sealed_document_is_posted_signed_and_byte_for_byte(app):
    with receiving(Answer(200)) as receiver:
        url = receiver.url("/hook") + FLOW_QUERY
        answer = start(app, url)
        assert answer.status_code == 202
        assert answer.get_json()["CallbackUrl"] == receiver.url("/hook")
        pending = delivery(app, answer)
        assert pending == {
            "Url": receiver.url("/hook"),
            "Attempts": 0,
            "LastStatus": None,
            "DeliveredOn": None,
            "State": "pending",
            "NextAttemptOn": None,
        }
        done = work_until(app, answer, "delivered")
    (request,) = receiver.received
    sealed = app.test_client().get(poll_path(answer.headers["Location"]))
    assert sealed.status_code == 200
    assert request.body == sealed.data  # the poll's 200 body, as it is
    assert request.path == "/hook" + FLOW_QUERY  # the receiver gets its whole URL
    document = verified(app, receiver)
    assert document["Status"] == "succeeded" and document["ProcessedCount"] == 3
    assert document["CallbackUrl"] == receiver.url("/hook")
    assert request.headers["webhook-id"] == answer.get_json()["ExecuteId"]
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("flask-idms-webhooks/")
    assert done["Attempts"] == 1 and done["LastStatus"] == "200"
    assert done["DeliveredOn"] and done["NextAttemptOn"] is None
    assert done["Url"] == receiver.url("/hook")


def test_failed_deliveries_are_retried_with_the_same_id_until_one_succeeds(app):
    """Two 500s then a 200: three deliveries of the same document, each signed afresh
    under the same webhook-id; the sealed document does not change meanwhile."""
    with receiving(Answer(500), Answer(500), Answer(200)) as receiver:
        answer = start(app, receiver.url())
        work(app)
        first = delivery(app, answer)
        assert (first["State"], first["Attempts"], first["LastStatus"]) == ("retrying", 1, "500")
        assert first["NextAttemptOn"] and first["DeliveredOn"] is None
        before = app.test_client().get(poll_path(answer.headers["Location"])).data
        done = work_until(app, answer, "delivered")
    after = app.test_client().get(poll_path(answer.headers["Location"])).data
    assert before == after
    assert len(receiver.received) == 3
    assert {request.body for request in receiver.received} == {before}
    assert {request.headers["webhook-id"] for request in receiver.received} == {
        answer.get_json()["ExecuteId"]
    }
    for index in range(3):
        assert verified(app, receiver, index)["Status"] == "succeeded"
    stamps = [int(request.headers["webhook-timestamp"]) for request in receiver.received]
    assert stamps == sorted(stamps) and stamps[0] < stamps[-1]
    assert done["Attempts"] == 3 and done["LastStatus"] == "200" and done["DeliveredOn"]


def test_a_receiver_that_times_out_is_retried_and_the_timeout_recorded(app):
    with receiving(Answer(200, delay=3), Answer(200)) as receiver:
        answer = start(app, receiver.url())
        work(app)
        first = delivery(app, answer)
        assert (first["State"], first["LastStatus"]) == ("retrying", "Timeout")
        done = work_until(app, answer, "delivered")
    assert done["Attempts"] == 2 and done["LastStatus"] == "200"
    assert len(receiver.received) == 2


def test_a_redirect_is_not_followed_nor_retried(app):
    with receiving(Answer(200)) as elsewhere:
        moved = Answer(302, headers={"Location": elsewhere.url("/moved")})
        with receiving(moved) as receiver:
            answer = start(app, receiver.url())
            done = work_until(app, answer, "failed")
            time.sleep(state_of(app).callbacks.grace + 0.5)
            assert state_of(app).callbacks.sweep() == 0
            work(app)
    assert (done["Attempts"], done["LastStatus"], done["DeliveredOn"]) == (1, "302", None)
    assert len(receiver.received) == 1
    assert len(elsewhere.received) == 0
    assert delivery(app, answer) == done


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_a_refusal_is_not_retried(app, status):
    with receiving(Answer(status)) as receiver:
        answer = start(app, receiver.url())
        done = work_until(app, answer, "failed")
        work(app)
    assert (done["Attempts"], done["LastStatus"]) == (1, str(status))
    assert len(receiver.received) == 1


def test_429_is_retried_after_the_receivers_retry_after(app):
    with receiving(Answer(429, headers={"Retry-After": "1"}), Answer(200)) as receiver:
        answer = start(app, receiver.url())
        work(app)
        assert delivery(app, answer)["LastStatus"] == "429"
        done = work_until(app, answer, "delivered")
    assert done["Attempts"] == 2 and len(receiver.received) == 2


def seconds_between(earlier: str, later: str) -> float:
    form = "%Y-%m-%dT%H:%M:%SZ"
    start_, end = (datetime.strptime(t, form).replace(tzinfo=UTC) for t in (earlier, later))
    return (end - start_).total_seconds()


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_a_retry_after_is_the_next_attempts_time(app, form):
    """A 503 asking for an hour (in seconds or as an HTTP date): the next attempt is
    planned an hour on, not after the 1 s back-off."""
    value = "3600" if form == "seconds" else email.utils.formatdate(time.time() + 3600, usegmt=True)
    with receiving(Answer(503, headers={"Retry-After": value})) as receiver:
        answer = start(app, receiver.url())
        work(app)
    state = delivery(app, answer)
    assert (state["State"], state["LastStatus"]) == ("retrying", "503")
    sealed = app.test_client().get(poll_path(answer.headers["Location"])).get_json()
    assert 3590 <= seconds_between(sealed["CompletedOn"], state["NextAttemptOn"]) <= 3610


def test_an_unreadable_retry_after_is_ignored_not_a_crash(app):
    """ "²" passes str.isdigit but is no number: the back-off applies, the attempt is
    recorded (it used to raise, unrecorded)."""
    with receiving(Answer(503, headers={"Retry-After": "\u00b2"})) as receiver:
        answer = start(app, receiver.url())
        work(app)
    state = delivery(app, answer)
    assert (state["State"], state["LastStatus"], state["Attempts"]) == ("retrying", "503", 1)


def test_retries_stop_when_the_retry_window_ends(make_app):
    """RETRY_FOR = 3 s: a Retry-After of an hour is cut to the window's end, where the
    last attempt is made; it failing, the callback is given up."""
    app = make_app(**CALLBACKS, IDMS_WEBHOOKS_CALLBACK_RETRY_FOR=3)
    with receiving(Answer(503, headers={"Retry-After": "3600"})) as receiver:
        answer = start(app, receiver.url())
        work(app)
        planned = delivery(app, answer)
        sealed = app.test_client().get(poll_path(answer.headers["Location"])).get_json()
        assert seconds_between(sealed["CompletedOn"], planned["NextAttemptOn"]) <= 4
        done = work_until(app, answer, "failed")
        work(app)
    assert done["Attempts"] == 2 and done["LastStatus"] == "503"
    assert len(receiver.received) == 2


def test_the_callback_route_reads_like_the_poll(app, client, key):
    with receiving(Answer(200)) as receiver:
        answer = start(app, receiver.url())
    job_id = answer.get_json()["ExecuteId"]
    path = f"/idms/jobs/{job_id}/callback"
    assert client.get(callback_path(answer)).status_code == 200
    assert client.get(path, headers={"X-Webhook-Key": key("count")}).status_code == 200
    refused = client.get(path)
    assert refused.status_code == 401 and refused.get_json()["message"]
    assert client.get(f"{path}?token=not-the-token").status_code == 401
    assert client.get(path, headers={"X-Webhook-Key": key("boom")}).status_code == 401
    unknown = state_of(app).credentials.job_token("NoSuchJobAtAll0000000x")
    assert (
        client.get(f"/idms/jobs/NoSuchJobAtAll0000000x/callback?token={unknown}").status_code == 404
    )


def test_a_job_without_a_callback_has_none(app):
    answer = start(app, None)
    assert answer.status_code == 202 and answer.get_json()["CallbackUrl"] is None
    missing = app.test_client().get(callback_path(answer))
    assert missing.status_code == 404
    assert "no callback" in missing.get_json()["message"]


def test_chained_jobs_have_no_callback_of_their_own(app):
    with receiving(Answer(200)) as receiver:
        state = state_of(app)
        key = state.credentials.task_key(state.tasks["parent"])
        answer = app.test_client().post(
            f"/idms/tasks/parent/jobs?key={key}",
            json={"QueryParameters": {"Count": 1}, "CallbackUrl": receiver.url()},
        )
        work_until(app, answer, "delivered")
    parent = verified(app, receiver, task="parent")
    (child,) = [entry for entry in parent["Chain"] if entry["ExecuteId"]]
    document = app.test_client().get(poll_path(child["PollingUrl"])).get_json()
    assert document["CallbackUrl"] is None
    assert len(receiver.received) == 1


def test_a_job_cancelled_in_the_queue_calls_back_too(app, client, key):
    with receiving(Answer(200)) as receiver:
        answer = start(app, receiver.url())
        job_id = answer.get_json()["ExecuteId"]
        cancel = client.delete(f"/idms/jobs/{job_id}", headers={"X-Webhook-Key": key("count")})
        assert cancel.get_json()["Status"] == "cancelled"
        work_until(app, answer, "delivered")
    assert verified(app, receiver)["Status"] == "cancelled"


def test_an_overdue_retry_no_scheduler_queued_is_swept_up(make_app):
    """Workers run without RQ's scheduler (``--without-scheduler``): a retry on RQ's
    schedule would wait forever; a reaper pass queues it once overdue."""
    app = make_app(**CALLBACKS, IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=1)
    state = state_of(app)
    with receiving(Answer(500), Answer(200)) as receiver:
        answer = start(app, receiver.url())
        no_scheduler = make_worker(app, simple=True)
        no_scheduler.work(burst=True, with_scheduler=False, logging_level="WARNING")
        first = delivery(app, answer)
        assert first["State"] == "retrying"
        wait_for(lambda: state.callbacks.sweep() == 1, timeout=30, interval=0.2)
        make_worker(app, simple=True).work(
            burst=True, with_scheduler=False, logging_level="WARNING"
        )
        assert delivery(app, answer)["State"] == "delivered" and len(receiver) == 2


def test_attempts_that_end_unrecorded_stop_with_the_retry_window(make_app):
    """Attempts whose workers died (claimed, never recorded) are not retried past
    IDMS_WEBHOOKS_CALLBACK_RETRY_FOR: the next one is given up, nothing is sent."""
    app = make_app(
        **CALLBACKS, IDMS_WEBHOOKS_CALLBACK_RETRY_FOR=1, IDMS_WEBHOOKS_HEARTBEAT_TIMEOUT=1
    )
    state = state_of(app)
    with receiving(Answer(200)) as receiver:
        answer = start(app, receiver.url())
        job_id = answer.get_json()["ExecuteId"]
        assert state.jobs.cancel(job_id, answer.get_json())  # sealed: its callback is due
        state.queue.empty()  # its first attempt lost
        claimed = state.store.claim_callback(job_id, 0.0)  # claimed by a worker that died
        assert claimed.attempt == 1
        time.sleep(1 + 2 * state.callbacks.grace + 1.5)  # past the window and a late sweep
        assert state.callbacks.sweep() == 1
        work(app)
        given_up = delivery(app, answer)
    assert (given_up["State"], given_up["LastStatus"]) == ("failed", "RetryWindowEnded")
    assert len(receiver) == 0


def test_a_callback_whose_first_attempt_was_lost_is_swept_up(app, client, key):
    """The job sealed, and its first attempt never queued (as if its sealer died right
    after the seal): a reaper pass queues it once it has been due for a while."""
    state: WebhooksState = state_of(app)
    with receiving(Answer(200)) as receiver:
        answer = start(app, receiver.url())
        job_id = answer.get_json()["ExecuteId"]
        client.delete(f"/idms/jobs/{job_id}", headers={"X-Webhook-Key": key("count")})
        state.queue.empty()  # the first attempt, lost
        work(app)
        assert len(receiver.received) == 0
        assert state.callbacks.sweep() == 0  # not due long enough yet
        time.sleep(state.callbacks.grace + 0.5)
        assert state.callbacks.sweep() == 1
        assert state.callbacks.sweep() == 0  # queued: once
        work(app)
    assert delivery(app, answer)["State"] == "delivered"
    assert len(receiver.received) == 1


# -- real forking workers ---------------------------------------------------------------


@pytest.mark.e2e
def test_a_retry_is_delivered_by_a_worker_started_after_the_first_stopped(make_app, start_worker):
    """The first attempt fails (500) on one worker, which is stopped; the retry, on RQ's
    schedule in Redis, is delivered by a worker started afterwards."""
    settings = {"IDMS_WEBHOOKS_CALLBACK_BACKOFF": "8s", "IDMS_WEBHOOKS_CALLBACK_TIMEOUT": "2s"}
    app = make_app(**{**CALLBACKS, **settings})
    with receiving(Answer(500), Answer(200)) as receiver:
        first = start_worker(**WORKER_CALLBACKS, **settings)
        answer = start(app, receiver.url())
        wait_for(lambda: delivery(app, answer)["State"] == "retrying")
        first.stop()
        assert len(receiver) == 1
        start_worker(**WORKER_CALLBACKS, **settings)
        done = wait_for(lambda: (found := delivery(app, answer))["State"] == "delivered" and found)
    assert done["Attempts"] == 2 and len(receiver) == 2
    assert verified(app, receiver, 0) == verified(app, receiver, 1)


@pytest.mark.e2e
def test_a_worker_killed_mid_attempt_leads_to_another_attempt(make_app, start_worker):
    """The worker and its work-horse are killed while the receiver holds the request:
    once the attempt's lease ends, a live worker's reaper queues it again."""
    settings = {"IDMS_WEBHOOKS_CALLBACK_TIMEOUT": "2s"}
    app = make_app(**{**CALLBACKS, **settings})
    with receiving(Answer(200, delay=10), Answer(200)) as receiver:
        worker = start_worker(**WORKER_CALLBACKS, **settings)
        answer = start(app, receiver.url())
        wait_for(lambda: len(receiver) == 1)
        for horse in children(worker.process.pid):
            os.kill(horse, signal.SIGKILL)
        worker.kill()
        assert delivery(app, answer)["State"] == "delivering"
        start_worker(**WORKER_CALLBACKS, **settings)
        done = wait_for(
            lambda: (found := delivery(app, answer))["State"] == "delivered" and found, timeout=60
        )
    assert done["Attempts"] == 2 and len(receiver) == 2
    ids = {request.headers["webhook-id"] for request in receiver.received}
    assert ids == {answer.get_json()["ExecuteId"]}


# -- the callback secret ----------------------------------------------------------------


def test_each_task_has_its_own_derived_secret_unlike_its_key(app, key):
    secrets = {secret_of(app, task) for task in ("count", "boom")}
    assert len(secrets) == 2
    for secret in secrets:
        assert secret.startswith("whsec_")
        Webhook(secret)  # a secret the package takes
    assert key("count") not in secret_of(app, "count")


TASK_FILE = """
[[tasks]]
id = "filed"
handler = "tests.sample_app:rescue"
callback_secret = {secret}
"""
#: 32 bytes, base64.
A_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw0lnlhL9WPws="


def test_a_task_files_callback_secret_signs_its_callbacks(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("FILED_CALLBACK_SECRET", A_SECRET)
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(TASK_FILE.format(secret='"${FILED_CALLBACK_SECRET}"'))
    app = make_app(**CALLBACKS, IDMS_WEBHOOKS_TASKS_FILE=str(tasks))
    assert secret_of(app, "filed") == A_SECRET
    with receiving(Answer(200)) as receiver:
        answer = start(app, receiver.url(), task="filed")
        work_until(app, answer, "delivered")
    (request,) = receiver.received
    assert Webhook(A_SECRET).verify(request.body, request.headers)["TaskId"] == "filed"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw0lnlhL9WPws="', "${AN_ENVIRONMENT_VARIABLE}"),
        ('"${BAD_SECRET}"', 'must be a Standard Webhooks secret: "whsec_"'),
        ('"${BAD_BASE64}"', "valid base64"),
        ('"${SHORT_SECRET}"', "24 to 64 bytes"),
        ("42", 'must be a Standard Webhooks secret: "whsec_"'),
    ],
)
def test_a_bad_callback_secret_is_a_load_error_naming_it(tmp_path, monkeypatch, value, message):
    monkeypatch.setenv("BAD_SECRET", "s3cret")
    monkeypatch.setenv("BAD_BASE64", "whsec_not*base64")
    monkeypatch.setenv("SHORT_SECRET", "whsec_c2hvcnQ=")
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(TASK_FILE.format(secret=value))
    with pytest.raises(TaskLoadError) as raised:
        load_task_file(tasks, Connections())
    assert "task 'filed', key 'callback_secret'" in str(raised.value)
    assert message in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_a_python_task_may_give_its_callback_secret(redis_url, queue_name):
    from flask_idms_webhooks import IdmsWebhooks

    webhooks = IdmsWebhooks()
    webhooks.task("signed", callback_secret=A_SECRET)(lambda parameters, context: None)
    with pytest.raises(TaskLoadError, match="callback_secret"):
        webhooks.task("unsigned", callback_secret="whsec_")(lambda parameters, context: None)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test-secret",
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        IDMS_WEBHOOKS_ADMIN_TOKEN="admin-token",
    )
    webhooks.init_app(app)
    assert secret_of(app, "signed") == A_SECRET
