"""Hostile request bodies (RELIABILITY.md, "Attacks and bad input") against both webhooks
and validate: always a JSON 4xx in flask-smorest's shape, never a 500, nothing enqueued."""

from __future__ import annotations

import http.client
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.web.bodies import MAX_DEPTH
from tests.helpers import ADMIN as ADMIN_HEADERS

ROUTES = ["execute", "jobs", "validate"]
JSON = "application/json"


def good(padding: int = 0) -> bytes:
    """A valid body for task "params", padded with whitespace to a chosen size."""
    return b'{"QueryParameters": {"ImisId": 1}}' + b" " * padding


def sized(total: int) -> bytes:
    body = good()
    return good(total - len(body))


def assert_json_error(answer: Any, code: int) -> dict[str, Any]:
    assert answer.status_code == code, (answer.status_code, answer.data[:300])
    assert answer.mimetype == "application/json"
    body = answer.get_json()
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    return body  # type: ignore[no-any-return]


@pytest.fixture
def post(client, key, state):
    """POST to a route of task "params" with its key; checks nothing was enqueued."""

    def send(route: str, data: Any = None, content_type: str | None = JSON, **kwargs: Any) -> Any:
        headers = {"X-Webhook-Key": key("params"), **kwargs.pop("headers", {})}
        if data is not None:
            kwargs["data"] = data
        if content_type is not None:
            kwargs["content_type"] = content_type
        answer = client.post(f"/idms/tasks/params/{route}", headers=headers, **kwargs)
        if answer.status_code >= 400:
            assert state.queue.count == 0
            assert state.store.history("params", 0, 100) == (0, [])
        return answer

    return send


DEEP = 10_000
MALFORMED = {
    "truncated": b'{"QueryParameters": {"ImisId": 1}',
    "trailing-garbage": good() + b"}",
    "two-documents": good() + good(),
    "single-quotes": b"{'QueryParameters': {}}",
    "bare-word": b"hello",
    "trailing-comma": b'{"QueryParameters": {"ImisId": 1,}}',
    "comment": b'{"QueryParameters": {"ImisId": 1}} // hi',
    "missing-value": b'{"QueryParameters": }',
    "nan": b'{"QueryParameters": {"ImisId": 1, "Score": NaN}}',
    "infinity": b'{"QueryParameters": {"ImisId": 1, "Score": Infinity}}',
    "-infinity": b'{"QueryParameters": {"ImisId": 1, "Score": -Infinity}}',
    "nan-top": b"NaN",
    "deep-arrays": b"[" * DEEP + b"]" * DEEP,
    "deep-objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep-in-value": b'{"QueryParameters": {"ImisId": 1, "Chapter": '
    + b"[" * DEEP
    + b'"x"'
    + b"]" * DEEP
    + b"}}",
    "moderately-deep": b'{"QueryParameters": {"ImisId": 1, "Chapter": '
    + b"[" * 100
    + b'"x"'
    + b"]" * 100
    + b"}}",
    "deep-unclosed": b"[" * DEEP,
    "5000-digits": b'{"QueryParameters": {"ImisId": ' + b"9" * 5000 + b"}}",
    "-5000-digits": b'{"QueryParameters": {"ImisId": -' + b"9" * 5000 + b"}}",
    "5000-digit-fraction": b'{"QueryParameters": {"ImisId": 1, "Score": 0.' + b"1" * 5000 + b"}}",
    "1e999": b'{"QueryParameters": {"ImisId": 1, "Score": 1e999}}',
    "-1e999": b'{"QueryParameters": {"ImisId": 1, "Score": -1e999}}',
    "1e999-in-list": b'{"QueryParameters": {"ImisId": 1, "Paid": [1, 1e999]}}',
    "duplicate-parameter": b'{"QueryParameters": {"ImisId": 1, "ImisId": 2}}',
    "duplicate-top-level": b'{"QueryParameters": {"ImisId": 1}, "QueryParameters": {}}',
    "nul-in-string": b'{"QueryParameters": {"ImisId": 1, "LastName": "a\x00b"}}',
    "newline-in-string": b'{"QueryParameters": {"ImisId": 1, "LastName": "a\nb"}}',
    "escape-char-in-string": b'{"QueryParameters": {"ImisId": 1, "LastName": "a\x1bb"}}',
    "control-in-key": b'{"QueryParameters": {"Imis\x01Id": 1}}',
    "bad-escape": b'{"QueryParameters": {"ImisId": 1, "LastName": "a\\qb"}}',
    "invalid-utf8": b'{"QueryParameters": {"ImisId": 1, "LastName": "\xff\xfe"}}',
    "overlong-utf8": b'{"QueryParameters": {"ImisId": 1, "LastName": "\xc0\xaf"}}',
    "truncated-utf8": b'{"QueryParameters": {"ImisId": 1, "LastName": "\xe2\x82"}}',
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_json_is_400(post, route, body):
    body_json = assert_json_error(post(route, body), 400)
    assert body_json["status"] == "Bad Request"
    assert "Malformed JSON" in body_json["message"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "literal", ['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"'], ids=["high", "low", "reversed"]
)
def test_a_lone_surrogate_escape_is_refused_not_500(post, route, literal, state):
    """Valid JSON syntax, but not a Unicode string: it cannot be stored as UTF-8."""
    body = b'{"QueryParameters": {"ImisId": 1, "LastName": ' + literal.encode() + b"}}"
    answer = assert_json_error(post(route, body), 400)
    assert (
        answer["message"] == "Malformed JSON: a string holds a lone surrogate (not valid Unicode)."
    )
    assert state.queue.count == 0


ENCODINGS = ["utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_lone_surrogate_is_refused_in_every_json_encoding(post, route, encoding, state):
    """JSON may come in UTF-8, -16 or -32, with or without a BOM: the check sees them all."""
    body = '{"QueryParameters": {"ImisId": 1, "LastName": "\\ud800"}}'.encode(encoding)
    assert "lone surrogate" in assert_json_error(post(route, body), 400)["message"]
    assert state.queue.count == 0


def chapter_nested(levels: int) -> bytes:
    """A body whose Chapter value is ``levels`` lists deep: the body object is level 1,
    QueryParameters level 2, the lists 3 to ``levels + 2``, their string one more."""
    return (
        b'{"QueryParameters": {"ImisId": 1, "Chapter": '
        + b"[" * levels
        + b'"x"'
        + b"]" * levels
        + b"}}"
    )


@pytest.mark.parametrize("route", ROUTES)
def test_nesting_is_refused_one_level_past_max_depth_and_not_before(post, route, state):
    """A value MAX_DEPTH levels deep is read (and then judged as QueryParameters: 422,
    Chapter takes a string); one level more is a 400, whatever the route."""
    at_limit = post(route, chapter_nested(MAX_DEPTH - 3))
    assert_json_error(at_limit, 422)
    assert "Chapter" in json.dumps(at_limit.get_json()["errors"])
    past = assert_json_error(post(route, chapter_nested(MAX_DEPTH - 2)), 400)
    assert past["message"] == f"Malformed JSON: nested deeper than {MAX_DEPTH} levels."
    assert state.queue.count == 0


NON_JSON = {
    "text": lambda: {"data": good(), "content_type": "text/plain"},
    "text-json": lambda: {"data": good(), "content_type": "text/json"},
    "xml": lambda: {"data": good(), "content_type": "application/xml"},
    "form": lambda: {
        "data": b"QueryParameters=1",
        "content_type": "application/x-www-form-urlencoded",
    },
    "multipart": lambda: {
        "data": {"QueryParameters": '{"ImisId": 1}'},
        "content_type": "multipart/form-data",
    },
    "multipart-file": lambda: {
        "data": {"f": (io.BytesIO(good()), "body.json")},
        "content_type": None,
    },
    "none": lambda: {"data": good(), "content_type": None},  # no Content-Type at all
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("make", NON_JSON.values(), ids=NON_JSON.keys())
def test_a_non_json_body_is_415(post, route, make):
    answer = post(route, **make())
    assert_json_error(answer, 415)
    assert answer.request.content_length


@pytest.mark.parametrize("route", ROUTES)
def test_an_oversize_body_is_413(post, route):
    assert_json_error(post(route, sized(64 * 1024 + 1)), 413)
    assert_json_error(post(route, sized(5 * 1024 * 1024)), 413)
    # the limit itself is fine
    assert post(route, sized(64 * 1024)).status_code < 300


@pytest.mark.parametrize("route", ROUTES)
def test_an_oversize_body_of_another_type_is_413(post, route, state):
    """The size is checked as the body is read, before its type: too large is 413."""
    answer = post(route, b"x" * (64 * 1024 + 1), content_type="text/plain")
    assert_json_error(answer, 413)
    assert state.queue.count == 0


@pytest.mark.parametrize("route", ROUTES)
def test_the_body_size_limit_is_configurable(make_app, route):
    app = make_app(IDMS_WEBHOOKS_MAX_BODY_SIZE=1024)
    current = state_of(app)
    client = app.test_client()
    headers = {"X-Webhook-Key": current.credentials.task_key(current.tasks["params"])}
    answer = client.post(
        f"/idms/tasks/params/{route}", data=sized(1025), content_type=JSON, headers=headers
    )
    assert_json_error(answer, 413)
    assert current.queue.count == 0
    ok = client.post(
        f"/idms/tasks/params/{route}", data=sized(1024), content_type=JSON, headers=headers
    )
    assert ok.status_code < 300


def chunked(body: bytes) -> dict[str, Any]:
    """Test-client arguments for a body sent chunked, without Content-Length (as a WSGI
    server that terminates the input stream, e.g. gunicorn or Werkzeug's, presents it)."""
    return {
        "input_stream": io.BytesIO(body),
        "environ_overrides": {"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    }


@pytest.mark.parametrize("route", ROUTES)
def test_a_chunked_body_within_the_limit_is_read(post, route):
    answer = post(route, **chunked(b'{"QueryParameters": {"ImisId": 5}}'))
    assert answer.status_code < 300
    if route == "validate":
        assert answer.get_json()["QueryParameters"]["ImisId"] == {"Value": 5, "Source": "request"}


@pytest.mark.parametrize("route", ROUTES)
def test_an_oversize_chunked_body_is_413(post, route):
    # whitespace-padded: cut at the limit it would still be valid JSON
    assert_json_error(post(route, **chunked(sized(64 * 1024 + 100))), 413)
    # padded inside a string: cut at the limit it would be malformed
    padded = b'{"QueryParameters": {"ImisId": 1, "LastName": "' + b"x" * 70_000 + b'"}}'
    assert_json_error(post(route, **chunked(padded)), 413)


def test_an_oversize_chunked_body_over_real_http_is_413(live_server, key, state):
    host, port = live_server
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        body = sized(64 * 1024 + 100)
        chunks = iter([body[i : i + 8192] for i in range(0, len(body), 8192)])
        connection.request(
            "POST",
            "/idms/tasks/params/execute",
            body=chunks,
            headers={"Content-Type": JSON, "X-Webhook-Key": key("params")},
            encode_chunked=True,
        )
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert response.status == 413, payload[:300]
    assert json.loads(payload)["code"] == 413
    assert state.queue.count == 0


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "body", [b"[]", b'[{"QueryParameters": {}}]', b'"QueryParameters"', b"42", b"true", b"null"]
)
def test_a_body_that_is_not_an_object_is_422(post, route, body):
    assert_json_error(post(route, body), 422)


@pytest.mark.parametrize("route", ["execute", "jobs"])
def test_an_overlong_idempotency_key_is_400(post, route):
    for idempotency_key in ("k" * 256, "k" * 10_000, " ", ""):
        answer = post(route, good(), headers={"Idempotency-Key": idempotency_key})
        assert_json_error(answer, 400)
        assert "Idempotency-Key" in answer.get_json()["message"]


@pytest.mark.parametrize("route", ["execute", "jobs"])
def test_an_idempotency_key_of_255_characters_is_fine(post, state, route):
    answer = post(route, good(), headers={"Idempotency-Key": "k" * 255})
    assert answer.status_code in (200, 202)
    assert state.queue.count == 1


def test_unknown_paths_and_wrong_methods_are_json_errors(client):
    wrong = [
        ("GET", "/idms/nowhere"),
        ("PUT", "/idms/tasks/params/jobs"),
        ("GET", "/idms/tasks/params/execute"),
        ("PATCH", "/idms/jobs/x"),
    ]
    for method, path in wrong:
        answer = client.open(path, method=method)
        assert_json_error(answer, 404 if path == "/idms/nowhere" else 405)


def test_a_wrong_method_is_405_with_allow(client):
    """RFC 9110: a 405 lists the methods the resource does support (TRAPS.md: the
    flask-smorest error handler drops it unless added back)."""
    answer = client.get("/idms/tasks/params/execute")
    assert_json_error(answer, 405)
    assert "POST" in answer.headers.get("Allow", "")
    answer = client.put("/idms/jobs/x")
    assert_json_error(answer, 405)
    assert {"GET", "DELETE"} <= {m.strip() for m in answer.headers.get("Allow", "").split(",")}


# -- fuzz ---------------------------------------------------------------------------------

JSONISH = st.text(
    alphabet=st.sampled_from([*'{}[]":,.-+eE0123456789 \t\n\\/tfnulraIiNy', "\x00", "é", "\x7f"]),
    max_size=120,
).map(str.encode)
KEYS = st.sampled_from(
    ["ImisId", "LastName", "Paid", "Chapter", "Score", "Dues", "JoinDate", "Guid", "IsMember",
     "Since", "Status", "UpdatedOn", "QueryParameters", ""]
)  # fmt: skip
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
SHAPED = st.one_of(
    st.dictionaries(KEYS, VALUES, max_size=4).map(lambda p: {"QueryParameters": p}),
    st.dictionaries(KEYS | st.text(max_size=8), VALUES, max_size=3),
    VALUES,
).map(lambda value: json.dumps(value, allow_nan=True).encode())


def mutated(data: bytes, cut: int, insert: bytes) -> bytes:
    cut = cut % (len(data) + 1)
    return data[:cut] + insert + data[cut:]


FUZZ = st.one_of(
    st.binary(max_size=200),
    JSONISH,
    SHAPED,
    st.builds(mutated, SHAPED, st.integers(0, 500), st.binary(min_size=1, max_size=3)),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=FUZZ, content_type=st.sampled_from([JSON, "application/json; charset=utf-8", "text/plain"])
)
def test_fuzzed_bodies_never_give_a_5xx(client, key, state, body, content_type):
    answer = client.post(
        "/idms/tasks/params/validate",
        data=body,
        content_type=content_type,
        headers={"X-Webhook-Key": key("params")},
    )
    assert answer.status_code < 500, (body, answer.data[:300])
    assert answer.mimetype == "application/json"
    if answer.status_code >= 400:
        assert answer.get_json()["code"] == answer.status_code
    assert state.queue.count == 0


UNDECODABLE = "\xe9"  # a raw byte 0xE9 as a WSGI server passes it (latin-1), not UTF-8


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        ("POST", "/idms/tasks/params/jobs", "key=K" + UNDECODABLE, {}),
        ("POST", "/idms/tasks/params/execute", "x=1&key=" + UNDECODABLE, {}),
        ("POST", "/idms/tasks/params/validate", "key=" + UNDECODABLE, {}),
        ("GET", "/idms/jobs/some-job", "token=" + UNDECODABLE, {}),
        ("GET", "/idms/jobs/some-job", "token=abc&x=" + UNDECODABLE, {}),
        ("GET", "/idms/tasks/params/jobs", "page=" + UNDECODABLE, ADMIN_HEADERS),
    ],
)
def test_a_query_string_that_is_not_utf8_is_400(client, state, method, path, query, headers):
    """A raw non-UTF-8 byte in a query string that must be read is the caller's error
    (400), not a 500; nothing is queued."""
    answer = client.open(
        path,
        method=method,
        json={"QueryParameters": {"ImisId": 1}} if method == "POST" else None,
        headers=headers,
        environ_overrides={"QUERY_STRING": query},
    )
    body = assert_json_error(answer, 400)
    assert body["message"] == "The query string is not UTF-8."
    assert state.queue.count == 0
