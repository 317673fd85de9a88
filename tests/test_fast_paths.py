"""The hot paths' shortcuts give exactly what the general code they stand in for gives:
body checks, the job token, the request root, the history trim and the poll headers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from werkzeug.exceptions import SecurityError
from werkzeug.test import EnvironBuilder
from werkzeug.urls import iri_to_uri

from flask_idms_webhooks.bodies import MAX_DEPTH, _check_value, _Refused, plainly_shallow
from flask_idms_webhooks.extension import WebhooksState, state_of
from flask_idms_webhooks.parameters import MAX_STRING_LENGTH, filter_field, plain_value_check
from flask_idms_webhooks.schemas import TriggerBodySchema, plainly_valid_trigger_body
from flask_idms_webhooks.security import Credentials, _mac, presented_task_key
from flask_idms_webhooks.store import HISTORY_TRIM_EVERY, dumps, loads
from flask_idms_webhooks.tasks import DataType, FilterRow, Operator
from flask_idms_webhooks.views import base_url, given_job_token
from tests.conftest import poll_path

JSON = "application/json"
PROPERTY = settings(max_examples=300, deadline=None)
WITH_FIXTURES = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# -- webhook bodies: plainly_valid_trigger_body ---------------------------------------------

KEYS = st.sampled_from(["QueryParameters", "ImisId", "LastName", "", "queryparameters", "é"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=6), inner),
    max_leaves=15,
)
#: Also what a JSON decoder never gives (non-string keys, tuples): the shortcut must not pass them.
ODD_KEYS = st.one_of(st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
PARAMETERS = st.dictionaries(KEYS | st.text(max_size=8), JSON_VALUES, max_size=5) | st.dictionaries(
    KEYS | ODD_KEYS, JSON_VALUES, max_size=3
)
TRIGGER_BODIES = st.one_of(
    JSON_VALUES,
    st.builds(lambda parameters: {"QueryParameters": parameters}, PARAMETERS | JSON_VALUES),
    st.builds(lambda extra: {"QueryParameters": {}, **extra}, st.dictionaries(KEYS, JSON_VALUES)),
    st.dictionaries(KEYS | ODD_KEYS, JSON_VALUES, max_size=3),
    st.tuples(JSON_VALUES),
)


@PROPERTY
@given(body=TRIGGER_BODIES)
def test_a_plainly_valid_trigger_body_is_what_the_schema_loads(body: Any) -> None:
    """A webhook body the hot path accepts unchecked is one the documented schema accepts, as is."""
    if not plainly_valid_trigger_body(body):
        event("left to the schema")
        return
    event("plainly valid")
    assert TriggerBodySchema().load(body) == body


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"QueryParameters": None},
        {"QueryParameters": {}},
        {"QueryParameters": {"ImisId": 1, "LastName": None, "Paid": [1, 2.5], "x": {"y": []}}},
        {"QueryParameters": {"": "", "é": True}},
    ],
)
def test_the_plainly_valid_branch_is_taken_and_agrees(body: dict[str, Any]) -> None:
    """The shortcut really answers the usual bodies, with what the schema answers."""
    assert plainly_valid_trigger_body(body)
    assert TriggerBodySchema().load(body) == body


# -- body depth and strings: plainly_shallow ------------------------------------------------

ENCODINGS = ["utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
#: Strings JSON escapes (lone surrogates, quotes, controls, non-ASCII), and any others.
AWKWARD_TEXT = st.lists(
    st.sampled_from(["a", "\ud800", "\udfff", "\udc00\ud800", "\\", '"', "u", "é", "\x00", "[{"]),
    max_size=4,
).map("".join) | st.text(alphabet=st.characters(exclude_categories=()), max_size=6)


@st.composite
def nested(draw: st.DrawFn) -> Any:
    """A value nested about MAX_DEPTH levels deep, in lists and objects."""
    value: Any = draw(st.sampled_from(["x", 0, None, [], {}, "é", "\\", "[{"]))
    # Mostly at the limit, where a count of brackets and a walk could disagree.
    levels = draw(st.sampled_from(range(MAX_DEPTH - 2, MAX_DEPTH + 3)) | st.integers(0, MAX_DEPTH))
    for _ in range(levels):
        value = [value] if draw(st.booleans()) else {draw(st.sampled_from(["a", ""])): value}
    return value


#: Shallow values whose strings (keys too) may hold lone surrogates.
SURROGATE_BEARING = st.recursive(
    st.none() | st.booleans() | st.integers() | AWKWARD_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(AWKWARD_TEXT, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def json_bytes(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> bytes:
    """A JSON text of a value, escaped or not, in any encoding ``json.loads`` detects."""
    text = json.dumps(draw(values), ensure_ascii=draw(st.booleans()))
    text = draw(st.sampled_from(["{}", " {} ", "\n{}\t"])).replace("{}", text)
    return text.encode(draw(st.sampled_from(ENCODINGS)), "surrogatepass")


def assert_passes_the_full_check(data: bytes) -> None:
    if not plainly_shallow(data):
        event("walked")
        return
    event("plainly shallow")
    note(f"plainly_shallow({data!r}) is True")
    _check_value(json.loads(data))


@PROPERTY
@given(data=json_bytes(nested()))
def test_a_plainly_shallow_body_is_not_nested_too_deep(data: bytes) -> None:
    """A body whose depth is not walked is no deeper than a walk would allow."""
    assert_passes_the_full_check(data)


@PROPERTY
@given(data=json_bytes(SURROGATE_BEARING))
def test_a_plainly_shallow_body_holds_no_lone_surrogate(data: bytes) -> None:
    """A body whose strings are not walked holds none a walk would refuse, in any encoding."""
    assert_passes_the_full_check(data)


def deep(levels: int, leaf: str = '"x"') -> str:
    return "[" * levels + leaf + "]" * levels


SHALLOW_EXAMPLES = {
    "empty-containers-at-max-depth": deep(MAX_DEPTH, ""),
    "leaf-inside-max-depth-containers": deep(MAX_DEPTH),
    "object-leaf-inside-max-depth-containers": '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH,
    "max-depth-plus-one-containers": deep(MAX_DEPTH + 1),
    "lone-surrogate-utf-8": '["\\ud800"]',
    "escaped-backslash-then-u": '["\\\\ud800"]',
}
ENCODED_EXAMPLES = {
    f"lone-surrogate-{encoding}": '{"QueryParameters": {"LastName": "\\ud800"}}'.encode(encoding)
    for encoding in ENCODINGS
}
BOUNDARY_BODIES = {
    **{name: text.encode() for name, text in SHALLOW_EXAMPLES.items()},
    **ENCODED_EXAMPLES,
}


@pytest.mark.parametrize("data", BOUNDARY_BODIES.values(), ids=BOUNDARY_BODIES.keys())
def test_plainly_shallow_at_the_boundaries(data: bytes) -> None:
    """At the depth limit and in every JSON encoding, no body the walk refuses skips it."""
    if plainly_shallow(data):
        _check_value(json.loads(data))


def parameters_body(chapter: str) -> str:
    return '{"QueryParameters": {"ImisId": 1, "Chapter": ' + chapter + "}}"


#: Bodies the general check refuses (the top object is level 1, "QueryParameters" level 2).
REFUSED_BODIES = {
    "lone-surrogate": b'{"QueryParameters": {"ImisId": 1, "LastName": "\\ud800"}}',
    "lone-surrogate-utf-16-le": '{"QueryParameters": {"ImisId": 1, "LastName": "\\ud800"}}'.encode(
        "utf-16-le"
    ),
    "max-depth-plus-one-containers": parameters_body(deep(MAX_DEPTH + 1 - 2)).encode(),
    "leaf-at-max-depth-plus-one": parameters_body(deep(MAX_DEPTH - 2)).encode(),
}


@pytest.mark.parametrize("route", ["execute", "jobs", "validate"])
@pytest.mark.parametrize("body", REFUSED_BODIES.values(), ids=REFUSED_BODIES.keys())
def test_bodies_the_full_check_refuses_are_400_over_http(
    client: FlaskClient,
    key: Callable[[str], str],
    state: WebhooksState,
    route: str,
    body: bytes,
) -> None:
    """A lone surrogate or nesting past MAX_DEPTH is a 400 on every body route, nothing queued."""
    with pytest.raises(_Refused):
        _check_value(json.loads(body))
    answer = client.post(
        f"/idms/tasks/params/{route}",
        data=body,
        content_type=JSON,
        headers={"X-Webhook-Key": key("params")},
    )
    assert answer.status_code == 400, answer.data[:300]
    assert answer.get_json()["code"] == 400
    assert "Malformed JSON" in answer.get_json()["message"]
    assert state.queue.count == 0


# -- the poll's ?token=: given_job_token ----------------------------------------------------

QUERY_ALPHABET = st.sampled_from(
    [*"abcKTZ019", *"-_=&%+;#", "token", "key", "%41", "%2", "é", "€", " ", "\x00"]
)
TOKEN_TEXT = st.text(alphabet=st.sampled_from([*"AZaz09_-"]), max_size=12)
QUERIES = st.one_of(
    st.lists(QUERY_ALPHABET, max_size=12).map("".join),
    st.builds(lambda token: f"token={token}", TOKEN_TEXT),
    st.builds(
        lambda head, token, tail: f"{head}token={token}{tail}",
        st.sampled_from(["", "&", "key=k&", "token=a&", "Token=", " "]),
        TOKEN_TEXT,
        st.lists(QUERY_ALPHABET, max_size=4).map("".join),
    ),
)


@WITH_FIXTURES
@given(query=QUERIES, client_encoding=st.sampled_from(["utf-8", "latin-1"]))
def test_the_plain_token_query_reads_as_request_args(
    app: Flask, query: str, client_encoding: str
) -> None:
    """A poll's ?token= is the one Werkzeug parses, whatever else the query holds."""
    # A WSGI server gives the query's bytes as latin-1 text (PEP 3333).
    raw = query.encode(client_encoding, "replace").decode("latin-1")
    with app.test_request_context("/", environ_overrides={"QUERY_STRING": raw}):
        assert request.environ["QUERY_STRING"] == raw
        shortcut = outcome(given_job_token)
        expected = outcome(lambda: request.args.get("token"))
        event(f"{expected[0]}: {expected[1] is not None}")
        assert shortcut == expected


def outcome(read: Callable[[], str | None]) -> tuple[str, object]:
    """("token", what ``read`` answers), or ("raised", the name of what it raised)."""
    try:
        return "token", read()
    except Exception as error:  # the shortcut must fail as Werkzeug fails, too
        return "raised", type(error).__name__


@pytest.mark.parametrize(
    ("query", "token"),
    [
        ("token=abc_DEF-123", "abc_DEF-123"),
        ("token=", ""),
        ("token=a%41", "aA"),
        ("token=a+b", "a b"),
        ("token=a&token=b", "a"),
        ("key=k&token=t", "t"),
        ("", None),
        ("token", ""),
    ],
)
def test_given_job_token_examples(app: Flask, query: str, token: str | None) -> None:
    """The token a poller sends, plain or percent-encoded, is the one checked."""
    with app.test_request_context("/", query_string=query):
        assert request.environ["QUERY_STRING"] == query
        assert given_job_token() == token


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


# -- the request root: base_url -------------------------------------------------------------

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


def request_root(app: Flask, origin: tuple[str, str | None, str, str, str]) -> tuple[str, str]:
    """(the cached root, the root Werkzeug builds) of one request; "refused" when refused."""
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
        return base_url(state_of(app))

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
    """Whatever requests came before, a URL handed out is on the request's own root."""
    app = make_app(TRUSTED_HOSTS=trusted)

    @PROPERTY
    @given(origins=st.lists(ORIGINS, min_size=1, max_size=8))
    def check(origins: list[tuple[str, str | None, str, str, str]]) -> None:
        for origin in origins:
            cached, built = request_root(app, origin)
            assert cached == built, origin

    check()


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


# -- the history index: JobStore.create's trim ----------------------------------------------


def test_stale_history_entries_are_trimmed_and_fresh_ones_kept(
    client: FlaskClient, key: Callable[[str], str], state: WebhooksState
) -> None:
    """A task's job list never grows without bound: entries past expiry go, live ones stay."""
    config = state.settings
    live_ttl = (state.tasks["count"].timeout or config.job_timeout) + config.result_ttl
    history = state.store.history_key("count")
    now = time.time()
    horizon = now - live_ttl - config.result_ttl
    state.redis.zadd(history, {"stale-1": horizon - 3600, "stale-2": horizon - 10})
    state.redis.zadd(history, {"fresh-1": horizon + 60, "fresh-2": now - 60})
    other = state.store.history_key("boom")
    state.redis.zadd(other, {"stale-of-another-task": horizon - 3600})
    created = []
    for _ in range(HISTORY_TRIM_EVERY):
        answer = trigger(client, key("count"))
        assert answer.status_code == 202, answer.data[:300]
        created.append(answer.get_json()["ExecuteId"])
    members = {raw.decode() for raw in cast(list[bytes], state.redis.zrange(history, 0, -1))}
    assert members == {"fresh-1", "fresh-2", *created}
    assert state.redis.zrange(other, 0, -1) == [b"stale-of-another-task"]


# -- poll headers: JsonAnswer ---------------------------------------------------------------


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


# -- QueryParameters values (QueryParameterSet's plain values) ---------------------------

PLAIN_CHECKED = [
    FilterRow("Bo", "Name", type=DataType.STRING),
    FilterRow("Bo", "Byte", type=DataType.BYTE),
    FilterRow("Bo", "Int32", type=DataType.INT32),
    FilterRow("Bo", "Int64", type=DataType.INT64),
]
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 255, 256, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63]),
    st.floats(allow_nan=True),
    st.text(max_size=50),
    st.just("x" * MAX_STRING_LENGTH),
    st.just("x" * (MAX_STRING_LENGTH + 1)),
    st.lists(st.integers(), max_size=3),
)


@pytest.mark.parametrize("row", PLAIN_CHECKED, ids=lambda row: str(row.type))
@settings(max_examples=400, deadline=None)
@given(value=ANY_VALUE)
def test_a_plain_parameter_value_is_what_its_field_loads(row, value):
    """A value the plain check lets through is one the filter's marshmallow field loads
    unchanged, so a caller gets the same value (and the same errors) either way."""
    plain = plain_value_check(row)
    assert plain is not None
    if plain(value):
        event("plain")
        assert filter_field(row).deserialize(value) == value
        assert type(filter_field(row).deserialize(value)) is type(value)


def test_the_plain_check_is_not_used_for_lists_and_other_types():
    """Between/In lists and the other types always go through marshmallow."""
    assert (
        plain_value_check(FilterRow("Bo", "A", type=DataType.INT32, operator=Operator.IN)) is None
    )
    assert plain_value_check(FilterRow("Bo", "A", type=DataType.DATETIME)) is None
    assert plain_value_check(FilterRow("Bo", "A", type=DataType.DECIMAL)) is None


# -- records (orjson, with the standard library behind it) -------------------------------

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(document=JSON_VALUES)
def test_a_record_reads_back_as_written(document):
    """Whatever a job record holds (an int beyond 64 bits included, which orjson refuses
    and the standard library writes), it reads back equal, and is the JSON the standard
    library would read."""
    record = dumps(document)
    assert loads(record) == document
    assert json.loads(record) == document


def test_a_record_holding_nan_written_by_the_standard_library_still_reads():
    """A record an older writer stored with NaN (orjson refuses it) is still read."""
    record = json.dumps({"Score": float("nan"), "Count": 1}).encode()
    value = loads(record)
    assert value["Count"] == 1 and value["Score"] != value["Score"]


# -- task keys read from the WSGI environ ----------------------------------------------


def key_from_headers() -> str | None:
    """The task key as ``request.headers`` gives it (what presented_task_key stands in for)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-Webhook-Key") or request.args.get("key") or None


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    authorization=st.one_of(st.none(), HEADER_TEXT, HEADER_TEXT.map(lambda t: "Bearer " + t)),
    webhook_key=st.one_of(st.none(), HEADER_TEXT),
    query_key=st.one_of(st.none(), st.text(alphabet="abcXYZ09-_", max_size=8)),
)
def test_the_presented_task_key_is_what_the_headers_say(authorization, webhook_key, query_key):
    """A task key sent as Bearer, X-Webhook-Key or ?key= is read as ``request.headers``
    and ``request.args`` would read it."""
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    if webhook_key is not None:
        headers["X-Webhook-Key"] = webhook_key
    query = {} if query_key is None else {"key": query_key}
    app = Flask(__name__)
    with app.test_request_context("/", headers=headers, query_string=query):
        assert presented_task_key(request) == key_from_headers()


@pytest.mark.parametrize(
    "number", [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)]
)
def test_integers_at_and_beyond_64_bits_read_back_exactly(number):
    """orjson reads an integer beyond 64 bits as a float; a record never does."""
    value = loads(dumps({"n": number, "s": "x"}))["n"]
    assert value == number and type(value) is int
