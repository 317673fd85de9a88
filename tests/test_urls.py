"""The URLs a caller is handed: each on the host the caller used (or the public URL), a
valid URI, with one Location and one Retry-After on every 202, and job tokens that open
one job of one app only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import SecurityError
from werkzeug.test import EnvironBuilder
from werkzeug.urls import iri_to_uri

from flask_idms_webhooks.security import Credentials, _mac
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.web.answers import request_root
from tests.helpers import poll_path

PROPERTY = settings(max_examples=300, deadline=None)


# -- job tokens: Credentials.job_token ------------------------------------------------------

JOB_IDS = st.text(max_size=40) | st.text(alphabet="AZaz09_-", min_size=22, max_size=22)


@PROPERTY
@given(secret=st.binary(max_size=100), job_ids=st.lists(JOB_IDS, min_size=1, max_size=6))
def test_the_job_token_is_the_hmac_of_the_job(secret: bytes, job_ids: list[str]) -> None:
    """A PollingUrl's token is the documented HMAC, the same on every call, one per job."""
    credentials = Credentials(secret, None, None)
    tokens = [credentials.job_token(job_id) for job_id in job_ids + job_ids]
    assert tokens == [_mac(secret, "job-token", job_id) for job_id in job_ids + job_ids]
    assert len(set(tokens)) == len(set(job_ids))
    assert all(
        credentials.check_job_token(job_id, _mac(secret, "job-token", job_id)) for job_id in job_ids
    )


def test_another_secret_gives_another_job_token() -> None:
    """A token minted under one app's secret does not open another app's jobs."""
    first, second = Credentials(b"one", None, None), Credentials(b"two", None, None)
    assert first.job_token("job") != second.job_token("job")
    assert not second.check_job_token("job", first.job_token("job"))


# -- PollingUrls on the caller's host --------------------------------------------------


def trigger(client: FlaskClient, key: str, **kwargs: Any) -> Any:
    return client.post(
        "/idms/tasks/count/jobs",
        json={"QueryParameters": {"Count": 1}},
        headers={"X-Webhook-Key": key, **kwargs.pop("headers", {})},
        **kwargs,
    )


def test_each_host_gets_polling_urls_on_its_own_host(
    client: FlaskClient, key: Callable[[str], str]
) -> None:
    """Callers reaching the app by different names each get PollingUrls they can reach."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"headers": {"Host": "one.example"}}, "http://one.example/idms/jobs/"),
        ({"headers": {"Host": "two.example"}}, "http://two.example/idms/jobs/"),
        ({"headers": {"Host": "one.example:8080"}}, "http://one.example:8080/idms/jobs/"),
        ({"base_url": "https://one.example"}, "https://one.example/idms/jobs/"),
        ({"base_url": "http://one.example/mounted"}, "http://one.example/mounted/idms/jobs/"),
        ({"headers": {"Host": "one.example"}}, "http://one.example/idms/jobs/"),
        ({}, "http://localhost/idms/jobs/"),
        ({"headers": {"Host": "two.example"}}, "http://two.example/idms/jobs/"),
    ]
    for kwargs, prefix in cases:
        answer = trigger(client, key("count"), **kwargs)
        assert answer.status_code == 202, answer.data[:300]
        assert answer.get_json()["PollingUrl"].startswith(prefix), (kwargs, prefix)
        assert answer.headers["Location"] == answer.get_json()["PollingUrl"]
    task = client.get(
        "/idms/tasks/count",
        headers={"Authorization": "Bearer admin-token", "Host": "three.example"},
    )
    assert task.get_json()["Webhooks"]["Polling"].startswith("http://three.example/idms/tasks/")


def test_an_idn_host_gets_an_ascii_polling_url_that_polls(
    client: FlaskClient, key: Callable[[str], str]
) -> None:
    """A PollingUrl on an internationalised host name is a valid URI (punycode) that works."""
    trigger(client, key("count"), headers={"Host": "plain.example"})
    # The test client sends the name as HTTP clients do: IDNA-encoded in the Host header.
    answer = trigger(client, key("count"), base_url="http://bücher.example:8080")
    assert answer.status_code == 202, answer.data[:300]
    url = answer.get_json()["PollingUrl"]
    assert url.isascii()
    assert urlsplit(url).hostname == "xn--bcher-kva.example"
    assert urlsplit(url).port == 8080
    assert url == iri_to_uri(url)
    assert answer.headers["Location"] == url
    poll = client.get(poll_path(url), headers={"Host": urlsplit(url).netloc})
    assert poll.status_code == 202, poll.data[:300]
    assert poll.get_json()["PollingUrl"] == url


def test_an_untrusted_host_is_refused_after_a_trusted_one_was_remembered(
    make_app: Callable[..., Flask],
) -> None:
    """With TRUSTED_HOSTS set, no Host outside it gets a PollingUrl, cached roots or not."""
    app = make_app(TRUSTED_HOSTS=["good.example"])
    client = app.test_client()
    current = state_of(app)
    task_key = current.credentials.task_key(current.tasks["count"])
    for host, status in [
        ("good.example", 202),
        ("evil.example", 400),
        ("good.example", 202),
        ("good.example.evil.example", 400),
        ("bücher.example", 400),
        ("evil.example", 400),
    ]:
        answer = trigger(client, task_key, headers={"Host": host})
        assert answer.status_code == status, (host, answer.data[:300])
        if status == 202:
            assert answer.get_json()["PollingUrl"].startswith("http://good.example/idms/jobs/")
    assert current.queue.count == 2


@pytest.mark.parametrize(
    ("public_url", "prefix"),
    [
        ("https://public.example/base", "https://public.example/base/idms/jobs/"),
        ("https://bücher.example", "https://xn--bcher-kva.example/idms/jobs/"),
    ],
)
def test_the_public_url_wins_over_the_request_host(
    make_app: Callable[..., Flask], public_url: str, prefix: str
) -> None:
    """With IDMS_WEBHOOKS_PUBLIC_URL set, every PollingUrl is on it, whatever Host was used."""
    app = make_app(IDMS_WEBHOOKS_PUBLIC_URL=public_url)
    client = app.test_client()
    current = state_of(app)
    task_key = current.credentials.task_key(current.tasks["count"])
    for host in ["one.example", "two.example", "one.example"]:
        answer = trigger(client, task_key, headers={"Host": host})
        assert answer.status_code == 202, answer.data[:300]
        assert answer.get_json()["PollingUrl"].startswith(prefix)
        assert answer.headers["Location"] == answer.get_json()["PollingUrl"]


# -- poll headers ---------------------------------------------------------------


def assert_poll_headers(answer: Any) -> None:
    assert answer.status_code == 202, answer.data[:300]
    body = answer.get_json()
    assert answer.headers.getlist("Location") == [body["PollingUrl"]]
    assert answer.headers.getlist("Retry-After") == [str(body["RetryAfter"])]


def test_a_202_carries_one_location_and_one_retry_after(
    client: FlaskClient, key: Callable[[str], str], run_burst: Callable[[], None]
) -> None:
    """Pollers get exactly one Location (the PollingUrl) and one Retry-After on every 202."""
    headers = {"X-Webhook-Key": key("count"), "Idempotency-Key": "once"}
    started = client.post(
        "/idms/tasks/count/jobs", json={"QueryParameters": {"Count": 2}}, headers=headers
    )
    assert_poll_headers(started)
    assert started.headers["Retry-After"] == "7"
    replayed = client.post(
        "/idms/tasks/count/jobs", json={"QueryParameters": {"Count": 2}}, headers=headers
    )
    assert_poll_headers(replayed)
    assert replayed.get_json() == started.get_json()
    location = started.headers["Location"]
    queued = client.get(poll_path(location))
    assert_poll_headers(queued)
    assert queued.get_json()["Status"] == "queued"
    assert queued.headers["Location"] == location
    run_burst()
    done = client.get(poll_path(location))
    assert done.status_code == 200
    assert done.headers.getlist("Location") == []
    assert done.headers.getlist("Retry-After") == []
    standard = client.post(
        "/idms/tasks/count/execute",
        json={"QueryParameters": {"Count": 1}},
        headers={"X-Webhook-Key": key("count")},
    )
    assert standard.status_code == 200
    assert standard.headers.getlist("Location") == []


# -- the request's root, converted once per origin (web.answers.request_root) -----------

HOSTS = st.sampled_from(
    [
        None,
        "one.example",
        "One.Example",
        "one.example:8080",
        "one.example:80",
        "two.example",
        "xn--bcher-kva.example",
        "bücher.example",
        "bÃ¼cher.example",
        "127.0.0.1:5000",
        "[::1]:5000",
        "bad host",
        "",
    ]
)
ORIGINS = st.tuples(
    st.sampled_from(["http", "https"]),
    HOSTS,
    st.sampled_from(["localhost", "server.example", "xn--bcher-kva.example"]),
    st.sampled_from(["80", "443", "8080"]),
    st.sampled_from(["", "/app", "/app/", "/Ã¤"]),
)


def roots_of(app: Flask, origin: tuple[str, str | None, str, str, str]) -> tuple[str, str]:
    """(request_root(), the root Werkzeug builds, as a URI) of one request; "refused"
    when refused."""
    scheme, host, server_name, port, script_name = origin
    environ = EnvironBuilder(path="/idms/tasks").get_environ()
    environ.update(
        {
            "wsgi.url_scheme": scheme,
            "SERVER_NAME": server_name,
            "SERVER_PORT": port,
            "SCRIPT_NAME": script_name,
        }
    )
    environ.pop("HTTP_HOST", None)
    if host is not None:
        environ["HTTP_HOST"] = host

    def cached() -> str:
        return request_root()

    def built() -> str:
        return iri_to_uri(request.url_root)

    answers = []
    with app.request_context(environ):
        for root in (cached, built):
            try:
                answers.append(root())
            except SecurityError:
                answers.append("refused")
    return answers[0], answers[1]


@pytest.mark.parametrize("trusted", [None, ["one.example", ".example"]])
def test_the_remembered_request_root_is_the_one_werkzeug_builds(
    make_app: Callable[..., Flask], trusted: list[str] | None
) -> None:
    """Whatever requests came before, a URL handed out is on the request's own root,
    the one Werkzeug builds (``request_root`` converts it once per origin)."""
    app = make_app(TRUSTED_HOSTS=trusted)

    @PROPERTY
    @given(origins=st.lists(ORIGINS, min_size=1, max_size=8))
    def check(origins: list[tuple[str, str | None, str, str, str]]) -> None:
        for origin in origins:
            cached, built = roots_of(app, origin)
            assert cached == built, origin

    check()
