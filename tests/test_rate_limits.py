"""Rate limits: a task's triggers, an address's failed credentials and its polls, each hit
(429 with an integer Retry-After, nothing started) and released once the window has
moved on; off by default but for failed credentials; failing open when Redis is away."""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from urllib.parse import urlsplit

import pytest
import redis
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_idms_webhooks import ConfigurationError, IdmsWebhooks, TaskLoadError
from flask_idms_webhooks.jobs import rate_limits
from flask_idms_webhooks.state import state_of
from tests.helpers import ADMIN, poll_path

COUNT = {"QueryParameters": {"Count": 1}}
ELSEWHERE = {"REMOTE_ADDR": "198.51.100.9"}


def key_of(app, task_id):
    state = state_of(app)
    return state.credentials.task_key(state.tasks[task_id])


def start(client, key, task_id="count", route="jobs", **kwargs):
    if "data" not in kwargs:
        kwargs.setdefault("json", COUNT if task_id == "count" else {})
    return client.post(f"/idms/tasks/{task_id}/{route}?key={key}", **kwargs)


def retry_after(answer):
    """The 429's Retry-After, checked to be whole seconds, and its body the error shape."""
    assert answer.status_code == 429
    assert re.fullmatch(r"[1-9][0-9]*", answer.headers["Retry-After"])
    body = answer.get_json()
    assert body["code"] == 429
    assert body["status"] == "Too Many Requests"
    return int(answer.headers["Retry-After"])


def limit_keys(redis_url):
    return sorted(key.decode() for key in redis.Redis.from_url(redis_url).keys("idms:limits:*"))


# -- per task ----------------------------------------------------------------------------


def test_a_task_past_its_limit_gets_429_and_starts_nothing_until_the_window_moves(make_app):
    app = make_app(IDMS_WEBHOOKS_RATE_LIMIT="2 per 3 seconds")
    state, client, key = state_of(app), app.test_client(), key_of(app, "count")
    assert start(client, key).status_code == 202
    assert start(client, key, route="execute").status_code == 200  # both webhooks count
    refused = start(client, key)
    wait = retry_after(refused)
    assert wait <= 3
    message = refused.get_json()["message"]
    assert "'count' was triggered too often: at most 2 per 3 second" in message
    assert retry_after(start(client, key, route="execute")) <= 3
    assert state.store.history("count", 0, 10)[0] == 2  # no record for the refused ones
    assert state.queue.count == 2
    other = key_of(app, "rescue")
    assert start(client, other, task_id="rescue").status_code == 202  # its own budget
    time.sleep(wait)
    assert start(client, key).status_code == 202  # released
    assert state.store.history("count", 0, 10)[0] == 3


def test_an_idempotency_key_repeat_replays_past_the_limit_and_is_not_counted(make_app):
    app = make_app(IDMS_WEBHOOKS_RATE_LIMIT="2/minute")
    state, client, key = state_of(app), app.test_client(), key_of(app, "count")
    first = start(client, key, headers={"Idempotency-Key": "run-1"})
    assert first.status_code == 202
    for _ in range(3):  # replays: not counted, so the budget keeps its second slot
        again = start(client, key, headers={"Idempotency-Key": "run-1"})
        assert again.status_code == 202
        assert again.get_json()["ExecuteId"] == first.get_json()["ExecuteId"]
    assert start(client, key, headers={"Idempotency-Key": "run-2"}).status_code == 202
    retry_after(start(client, key, headers={"Idempotency-Key": "run-3"}))  # a new key counts
    replay = start(client, key, headers={"Idempotency-Key": "run-1"})  # past the limit
    assert replay.status_code == 202
    assert replay.get_json()["ExecuteId"] == first.get_json()["ExecuteId"]
    assert state.store.history("count", 0, 10)[0] == 2


def test_a_refusal_before_the_limit_uses_none_of_it(make_app):
    """Bad keys, bodies and parameters start nothing: they leave the budget whole."""
    app = make_app(IDMS_WEBHOOKS_RATE_LIMIT="1/minute")
    client, key = app.test_client(), key_of(app, "count")
    assert start(client, "wrong").status_code == 401
    assert start(client, key, json={"QueryParameters": {"Count": "many"}}).status_code == 422
    assert start(client, key, data="{", content_type="application/json").status_code == 400
    refused = {"QueryParameters": {"Count": 1}, "CallbackUrl": "https://elsewhere.example/x"}
    assert start(client, key, json=refused).status_code == 422  # callbacks are not enabled
    assert start(client, key).status_code == 202
    retry_after(start(client, key))


def test_a_task_file_rate_limit_overrides_the_setting(make_app, tmp_path):
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        '[[tasks]]\nid = "slow-lane"\nhandler = "tests.sample_app:rescue"\n'
        'rate_limit = "1/minute"\n'
        '[[tasks]]\nid = "free"\nhandler = "tests.sample_app:rescue"\nrate_limit = "off"\n'
    )
    app = make_app(IDMS_WEBHOOKS_RATE_LIMIT="2/minute", IDMS_WEBHOOKS_TASKS_FILE=str(tasks))
    client = app.test_client()
    slow, free, count = key_of(app, "slow-lane"), key_of(app, "free"), key_of(app, "count")
    assert start(client, slow, task_id="slow-lane").status_code == 202
    refused = start(client, slow, task_id="slow-lane")
    assert "at most 1 per 1 minute" in refused.get_json()["message"]
    assert all(start(client, free, task_id="free").status_code == 202 for _ in range(4))
    assert [start(client, count).status_code for _ in range(3)] == [202, 202, 429]


def test_a_429_of_a_webhook_is_counted_in_the_metrics(make_app):
    app = make_app(IDMS_WEBHOOKS_RATE_LIMIT="1/minute")
    client, key = app.test_client(), key_of(app, "count")
    line = re.compile(
        r'idms_webhooks_triggers_total\{code="429",route="polling",task="count"\} (\S+)'
    )

    def refused() -> float:
        found = line.search(client.get("/idms/metrics", headers=ADMIN).get_data(as_text=True))
        return float(found.group(1)) if found else 0.0

    before = refused()
    assert start(client, key).status_code == 202
    retry_after(start(client, key))
    retry_after(start(client, key))
    assert refused() == before + 2


# -- failed credentials, per client address ----------------------------------------------


def test_the_21st_failed_key_from_an_address_is_429_and_a_valid_key_still_passes(app, client):
    key = key_of(app, "count")
    assert [start(client, "wrong").status_code for _ in range(20)] == [401] * 20
    refused = start(client, "wrong")
    retry_after(refused)
    message = refused.get_json()["message"]
    assert "at most 20 per 1 minute (valid credentials still pass)" in message
    assert "is not this task's key" in message  # what the 401 would have said
    assert start(client, key).status_code == 202  # same address, good key
    assert client.get("/idms/tasks", headers=ADMIN).status_code == 200
    retry_after(client.get("/idms/tasks", headers={"Authorization": "Bearer nope"}))  # any route
    assert start(client, "wrong", environ_base=ELSEWHERE).status_code == 401  # another address


def test_failed_credentials_are_answered_401_again_once_the_window_moves(make_app):
    app = make_app(IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT="3/2second")
    client = app.test_client()
    location = start(client, key_of(app, "count")).headers["Location"]
    bad_poll = poll_path(location).split("?")[0] + "?token=forged"
    assert [client.get(bad_poll).status_code for _ in range(3)] == [401] * 3
    wait = retry_after(client.get(bad_poll))
    assert wait <= 2
    assert client.get(poll_path(location)).status_code == 202  # its real token passes
    retry_after(client.get("/idms/dashboard", headers={"Authorization": "Basic eDp5"}))
    time.sleep(wait)
    assert client.get(bad_poll).status_code == 401  # released


def test_the_auth_failure_limit_can_be_turned_off(make_app):
    client = make_app(IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT="off").test_client()
    assert {start(client, "wrong").status_code for _ in range(25)} == {401}


# -- polls, per client address -----------------------------------------------------------


def test_polls_past_the_limit_get_429_until_the_window_moves(make_app):
    app = make_app(IDMS_WEBHOOKS_POLL_RATE_LIMIT="2 per 2 seconds")
    client = app.test_client()
    location = urlsplit(start(client, key_of(app, "count")).headers["Location"])
    poll = f"{location.path}?{location.query}"
    assert [client.get(poll).status_code for _ in range(2)] == [202, 202]
    refused = client.get(poll)
    wait = retry_after(refused)
    message = refused.get_json()["message"]
    assert "Too many polls from this address: at most 2 per 2 second" in message
    retry_after(client.get(f"{location.path}/errors.csv?{location.query}"))  # counted alike
    assert client.get(poll, environ_base=ELSEWHERE).status_code == 202  # its own budget
    time.sleep(wait)
    assert client.get(poll).status_code == 202


def test_by_default_only_failed_credentials_are_counted(app, client, redis_url):
    poll = poll_path(start(client, key_of(app, "count")).headers["Location"])
    for _ in range(3):
        assert client.get(poll).status_code == 202
    assert start(client, key_of(app, "count"), route="execute").status_code == 200
    assert limit_keys(redis_url) == []  # nothing written: no triggers nor polls counted
    assert client.get(poll.split("?")[0]).status_code == 401
    (written,) = limit_keys(redis_url)
    assert written.startswith(f"idms:limits:{state_of(app).settings.queue_name}:")
    assert "/auth-failures/127.0.0.1/20/1/minute" in written


# -- Redis away: open ------------------------------------------------------------------


def test_the_limits_fail_open_with_one_warning_while_redis_is_away(
    make_app, stallable_redis, monkeypatch, caplog
):
    monkeypatch.setattr(rate_limits, "STORAGE_RETRY", 0)  # every request tries Redis again
    app = make_app(IDMS_WEBHOOKS_REDIS_URL=stallable_redis.url, IDMS_WEBHOOKS_RATE_LIMIT="5/minute")
    client, key = app.test_client(), key_of(app, "count")
    assert start(client, key).status_code == 202
    caplog.set_level(logging.INFO, logger="flask_idms_webhooks")
    os.kill(stallable_redis.process.pid, signal.SIGSTOP)
    try:
        assert [start(client, "wrong").status_code for _ in range(3)] == [401] * 3
        stalled = start(client, key)
        assert stalled.status_code == 503  # the job store's own answer, not the limiter's
    finally:
        os.kill(stallable_redis.process.pid, signal.SIGCONT)
    warnings = [r.getMessage() for r in caplog.records if "Rate limits not enforced" in r.message]
    assert len(warnings) == 1
    assert "Requests go on unlimited" in warnings[0]
    assert start(client, "wrong").status_code == 401
    assert any("Rate limits enforced again" in r.getMessage() for r in caplog.records)
    assert start(client, key).status_code == 202


# -- one process, two apps; settings -----------------------------------------------------


def test_two_apps_in_one_process_keep_their_own_limits(make_app):
    strict = make_app(IDMS_WEBHOOKS_RATE_LIMIT="1/minute", IDMS_WEBHOOKS_QUEUE_NAME="strict")
    loose = make_app(IDMS_WEBHOOKS_RATE_LIMIT="3/minute", IDMS_WEBHOOKS_QUEUE_NAME="loose")
    first, second = strict.test_client(), loose.test_client()
    assert [start(first, key_of(strict, "count")).status_code for _ in range(2)] == [202, 429]
    assert [start(second, key_of(loose, "count")).status_code for _ in range(4)] == [
        202, 202, 202, 429,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT", "sixty a minute"),
        ("RATE_LIMIT", "0/minute"),
        ("AUTH_FAILURE_LIMIT", 20),
        ("POLL_RATE_LIMIT", "600/fortnight"),
        ("PROXY_FIX", "x_forwarded=1"),
        ("PROXY_FIX", "-1"),
    ],
)
def test_a_bad_setting_fails_init_app_naming_its_key(make_app, name, value):
    with pytest.raises(ConfigurationError, match=f"IDMS_WEBHOOKS_{name}"):
        make_app(**{f"IDMS_WEBHOOKS_{name}": value})


def test_a_bad_task_rate_limit_names_its_file_task_and_key(make_app, tmp_path):
    tasks = tmp_path / "tasks.toml"
    tasks.write_text('[[tasks]]\nid = "x"\nhandler = "tests.sample_app:rescue"\nrate_limit = 5\n')
    with pytest.raises(TaskLoadError, match=r"tasks.toml, task 'x', key 'rate_limit'"):
        make_app(IDMS_WEBHOOKS_TASKS_FILE=str(tasks))
    webhooks = IdmsWebhooks()
    webhooks.task("y", rate_limit="lots")(lambda parameters, context: None)
    app = Flask(__name__)
    app.config.update(IDMS_WEBHOOKS_REDIS_URL="redis://127.0.0.1:1", SECRET_KEY="s")
    with pytest.raises(TaskLoadError, match=r"task 'y', key 'rate_limit'"):
        webhooks.init_app(app)


# -- the client address behind proxies ---------------------------------------------------


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(make_app):
    proxied = make_app(IDMS_WEBHOOKS_PROXY_FIX="1", IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT="1/minute")
    client = proxied.test_client()

    def wrong_from(address):
        return start(client, "wrong", headers={"X-Forwarded-For": address}).status_code

    assert [wrong_from("203.0.113.7"), wrong_from("203.0.113.7")] == [401, 429]
    assert wrong_from("203.0.113.8") == 401
    direct = make_app(IDMS_WEBHOOKS_AUTH_FAILURE_LIMIT="1/minute").test_client()
    answers = [
        start(direct, "wrong", headers={"X-Forwarded-For": address}).status_code
        for address in ("192.0.2.1", "192.0.2.2")  # not trusted: both are the peer's
    ]
    assert answers == [401, 429]


def test_proxy_fix_twice_is_refused(redis_url):
    app = Flask(__name__)
    app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
    app.config.update(
        IDMS_WEBHOOKS_REDIS_URL=redis_url, SECRET_KEY="s", IDMS_WEBHOOKS_PROXY_FIX="x_for=1"
    )
    with pytest.raises(ConfigurationError, match="trusted twice"):
        IdmsWebhooks(app)


# -- the OpenAPI document ----------------------------------------------------------------


def test_every_route_that_checks_credentials_documents_429_with_retry_after(client):
    paths = client.get("/idms/openapi.json").get_json()["paths"]
    checked = 0
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            if "401" not in responses:
                assert "429" not in responses, (path, method)
                continue
            checked += 1
            assert "429" in responses, (path, method)
            header = responses["429"]["headers"]["Retry-After"]
            assert header["schema"]["type"] == "integer"
    assert checked >= 10
    for path in ("/idms/tasks/{task_id}/jobs", "/idms/tasks/{task_id}/execute"):
        assert "IDMS_WEBHOOKS_RATE_LIMIT" in paths[path]["post"]["responses"]["429"]["description"]
    poll = paths["/idms/jobs/{job_id}"]["get"]["responses"]["429"]["description"]
    assert "IDMS_WEBHOOKS_POLL_RATE_LIMIT" in poll
    assert "AUTH_FAILURE" in paths["/idms/tasks"]["get"]["responses"]["429"]["description"]
