"""Where a callback may not go: the CallbackUrls refused with a 422 when the job is
triggered (nothing created), the addresses refused when it is delivered (no connection
made), the connection made to the address that was checked (TLS still checks the real
name), and a CallbackUrl's query never in a log line."""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any

import pytest
from flask import Flask

from flask_idms_webhooks import ConfigurationError
from flask_idms_webhooks.jobs import delivery
from flask_idms_webhooks.state import state_of
from tests.callback_support import (
    CALLBACKS,
    FLOW_QUERY,
    Answer,
    callback_path,
    receiving,
    self_signed,
    start,
    verified,
    work,
    work_until,
)
from tests.helpers import ADMIN

# -- refused when triggered ---------------------------------------------------------------


def nothing_created(app: Flask) -> bool:
    state = state_of(app)
    jobs = app.test_client().get("/idms/tasks/count/jobs", headers=ADMIN).get_json()
    return jobs["Total"] == 0 and state.queue.count == 0


def refused(app: Flask, url: Any, route: str = "jobs") -> str:
    state = state_of(app)
    key = state.credentials.task_key(state.tasks["count"])
    answer = app.test_client().post(
        f"/idms/tasks/count/{route}?key={key}",
        json={"QueryParameters": {"Count": 1}, "CallbackUrl": url},
    )
    assert answer.status_code == 422, answer.get_json()
    body = answer.get_json()
    assert list(body["errors"]["json"]) == ["CallbackUrl"]
    message: str = body["message"]
    assert "CallbackUrl" in message
    assert nothing_created(app)
    return message


def test_callbacks_are_refused_when_no_host_is_allowed(make_app):
    app = make_app()  # IDMS_WEBHOOKS_CALLBACK_HOSTS is empty by default
    message = refused(app, "https://prod-00.westeurope.logic.azure.com/workflows/x/run?sig=y")
    assert "not enabled" in message and "IDMS_WEBHOOKS_CALLBACK_HOSTS" in message
    assert "sig=y" not in message


@pytest.mark.parametrize("route", ["jobs", "execute", "validate"])
def test_a_host_that_matches_no_glob_is_refused(make_app, route):
    app = make_app(IDMS_WEBHOOKS_CALLBACK_HOSTS="*.logic.azure.com, hooks.example.org")
    message = refused(app, "https://evil.example.com/hook", route)
    assert "'evil.example.com'" in message and "IDMS_WEBHOOKS_CALLBACK_HOSTS" in message
    for near_miss in ("https://logic.azure.com/x", "https://a.logic.azure.com.evil.net/x"):
        refused(app, near_miss, route)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.org/hook", "http only with IDMS_WEBHOOKS_CALLBACK_ALLOW_HTTP"),
        ("ftp://hooks.example.org/hook", "https URL"),
        ("https://user:pass@hooks.example.org/hook", "user name or password"),
        ("https://hooks.example.org:99999/hook", "not a valid URL"),
        ("https://hooks.example.org/a b", "spaces or control characters"),
        ("https:///no-host", "no host"),
        ("https://hooks.example.org/" + "a" * 2100, "at most 2048 characters"),
        ("", "non-empty string"),
        ("https://10.0.0.5/hook", "private"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
    ],
)
def test_a_callback_url_of_the_wrong_form_is_refused(make_app, url, says):
    app = make_app(
        IDMS_WEBHOOKS_CALLBACK_HOSTS=["hooks.example.org", "10.0.0.5", "127.0.0.1", "::1"]
    )
    assert says in refused(app, url)


def test_a_callback_url_that_is_not_a_string_is_refused(make_app):
    app = make_app(IDMS_WEBHOOKS_CALLBACK_HOSTS=["hooks.example.org"])
    state = state_of(app)
    key = state.credentials.task_key(state.tasks["count"])
    answer = app.test_client().post(
        f"/idms/tasks/count/jobs?key={key}",
        json={"QueryParameters": {"Count": 1}, "CallbackUrl": ["https://hooks.example.org"]},
    )
    assert answer.status_code == 422
    assert "CallbackUrl" in answer.get_json()["errors"]["json"]
    assert nothing_created(app)


def test_the_metadata_address_is_refused_even_where_private_ones_are_allowed(make_app):
    app = make_app(IDMS_WEBHOOKS_CALLBACK_HOSTS=["*"], IDMS_WEBHOOKS_CALLBACK_ALLOW_PRIVATE=True)
    assert "metadata" in refused(app, "https://169.254.169.254/latest/meta-data")


def test_other_keys_of_the_body_are_still_refused(make_app):
    app = make_app(**CALLBACKS)
    state = state_of(app)
    key = state.credentials.task_key(state.tasks["count"])
    answer = app.test_client().post(
        f"/idms/tasks/count/jobs?key={key}",
        json={"QueryParameters": {"Count": 1}, "CallbackUrl": None, "Callback": "x"},
    )
    assert answer.status_code == 422
    assert "Callback" in answer.get_json()["errors"]["json"]


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CALLBACK_HOSTS", 42, "list of host globs"),
        ("CALLBACK_HOSTS", ["https://hooks.example.org/"], "not a host glob"),
        ("CALLBACK_TIMEOUT", "2m", "at most 60 s"),
        ("CALLBACK_RETRY_FOR", 0, "positive"),
        ("CALLBACK_ALLOW_PRIVATE", "perhaps", "true or false"),
    ],
)
def test_bad_callback_settings_are_configuration_errors(make_app, name, value, says):
    with pytest.raises(ConfigurationError, match=f"IDMS_WEBHOOKS_{name}") as raised:
        make_app(**{f"IDMS_WEBHOOKS_{name}": value})
    assert says in str(raised.value)


# -- refused when delivered ---------------------------------------------------------------


@pytest.fixture
def names(monkeypatch) -> dict[str, list[str]]:
    """A resolver of this test's own: a name it holds resolves to its addresses, an
    address to itself (no other name is looked up by a callback)."""
    table: dict[str, list[str]] = {"127.0.0.1": ["127.0.0.1"]}

    def resolve(host: str, port: int) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "not known")
        return [ipaddress.ip_address(address) for address in table[host]]

    monkeypatch.setattr(delivery, "resolve", resolve)
    return table


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["10.1.2.3"], ["169.254.169.254"], ["93.184.216.34", "127.0.0.1"]],
    ids=["loopback", "private", "metadata", "one-of-two"],
)
def test_a_name_resolving_to_a_refused_address_gets_no_connection(make_app, names, addresses):
    app = make_app(
        IDMS_WEBHOOKS_CALLBACK_HOSTS=["callback.test"],
        IDMS_WEBHOOKS_CALLBACK_ALLOW_HTTP=True,
        IDMS_WEBHOOKS_CALLBACK_BACKOFF=1,
    )
    names["callback.test"] = addresses
    with receiving(Answer(200)) as receiver:
        answer = start(app, receiver.url(host="callback.test"))
        assert answer.status_code == 202  # a name: checked when delivered
        done = work_until(app, answer, "failed")
        work(app)
    # (Had a connection been tried, 10.1.2.3 would have ended as a Timeout or a
    # ConnectError, and been retried.)
    assert (done["Attempts"], done["LastStatus"]) == (1, "AddressRefused")
    assert len(receiver.received) == 0


def test_the_post_goes_to_the_address_that_was_checked(make_app, names):
    """``callback.test`` resolves (once, by the check) to the receiver: the request
    reaches it with its real name as Host, though no resolver but the check's knows it."""
    app = make_app(**{**CALLBACKS, "IDMS_WEBHOOKS_CALLBACK_HOSTS": ["callback.test"]})
    names["callback.test"] = ["127.0.0.1"]
    with receiving(Answer(200)) as receiver:
        answer = start(app, receiver.url(host="callback.test"))
        work_until(app, answer, "delivered")
    (request,) = receiver.received
    assert request.headers["Host"] == f"callback.test:{receiver.port}"
    assert verified(app, receiver)["ExecuteId"] == answer.get_json()["ExecuteId"]


def test_a_name_that_does_not_resolve_is_retried(make_app, names):
    app = make_app(**{**CALLBACKS, "IDMS_WEBHOOKS_CALLBACK_HOSTS": ["callback.test"]})
    answer = start(app, "http://callback.test/hook")
    work(app)
    found = app.test_client().get(callback_path(answer)).get_json()
    assert (found["State"], found["LastStatus"]) == ("retrying", "ResolveError")


@pytest.mark.parametrize(
    ("certified", "delivered"), [("callback.test", True), ("other.test", False)]
)
def test_https_checks_the_real_names_certificate(make_app, names, tmp_path, monkeypatch,
                                                 certified, delivered):  # fmt: skip
    """Connected to 127.0.0.1, TLS still asks for (SNI) and checks callback.test: a
    certificate for it is accepted, one for another name is not."""
    cert, tls = self_signed(tmp_path, certified)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    app = make_app(**{**CALLBACKS, "IDMS_WEBHOOKS_CALLBACK_HOSTS": ["callback.test"]})
    names["callback.test"] = ["127.0.0.1"]
    with receiving(Answer(200), tls=tls) as receiver:
        answer = start(app, receiver.url(host="callback.test", scheme="https"))
        work(app)
    found = app.test_client().get(callback_path(answer)).get_json()
    if delivered:
        assert (found["State"], found["LastStatus"]) == ("delivered", "200")
        assert len(receiver.received) == 1
    else:
        assert (found["State"], found["LastStatus"]) == ("retrying", "ConnectError")
        assert len(receiver.received) == 0


# -- the query in logs --------------------------------------------------------------------


def test_a_callback_urls_query_is_never_logged(make_app, names, caplog):
    """Every line of every logger, down to DEBUG (httpx logs each request's URL at
    INFO): the host and the path, never the query's credential."""
    caplog.set_level(logging.DEBUG)
    app = make_app(**{**CALLBACKS, "IDMS_WEBHOOKS_CALLBACK_HOSTS": ["127.0.0.1", "refused.test"]})
    names["refused.test"] = ["169.254.169.254"]
    with receiving(Answer(500), Answer(200)) as receiver:
        answer = start(app, receiver.url() + FLOW_QUERY)
        work_until(app, answer, "delivered")
        other = start(app, "http://refused.test/hook" + FLOW_QUERY)
        work_until(app, other, "failed")
    assert receiver.received[-1].path == "/hook" + FLOW_QUERY
    text = caplog.text
    assert "s3cr3t" not in text and "sig=" not in text and "api-version" not in text
    assert f"callback to {receiver.url()} delivered (200)" in text
    assert f"callback to {receiver.url()} failed (500)" in text
    assert f'HTTP Request: POST {receiver.url()} "HTTP/1.0 200 OK"' in text
    assert "callback to http://refused.test/hook refused" in text
