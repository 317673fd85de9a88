"""Schemathesis against the app's own OpenAPI document, in-process through WSGI.

Every documented operation is generated from ``GET /idms/openapi.json`` (the examples,
coverage and fuzzing phases) and every answer must be: no 5xx, a status code the operation
lists by number, the documented content type, a body valid against the documented schema,
and every header documented for that status present and valid against its schema.

Credentials and identifiers are not in the document, so each generated case is sent as
generated, then in a few variants of its own: the generated path, query, headers and body,
with a known task or job and one given credential (none, a wrong one, the admin token, the
task's key, the job's token). So generation reaches past authentication into body parsing,
parameter resolution, the idempotency claim and the job documents. The job routes run
against jobs made in a fixture: succeeded (with row errors), failed, cancelled, queued, and
one holding every kind of parameter.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import OutputConfig, SanitizationConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flask_idms_webhooks.jobs.liveness import WorkerBeat
from flask_idms_webhooks.state import WebhooksState
from tests.helpers import ADMIN
from tests.sample_app import create_app

ADMIN_ROUTES = {
    ("/idms/tasks", "GET"),
    ("/idms/tasks/{task_id}", "GET"),
    ("/idms/tasks/{task_id}/jobs", "GET"),
}
#: Where a credential can travel; a variant carries only the one it is given.
CREDENTIAL_HEADERS = ("authorization", "x-webhook-key")
CREDENTIAL_QUERY = ("key", "token")

#: Serves the document at collection time and is never sent a request to fuzz (nor reaches
#: Redis); requests go to each test's own ``app``, whose document is the same (first test).
DOCUMENT_APP = create_app(IDMS_WEBHOOKS_REDIS_URL="redis://127.0.0.1:1/0")
#: Reproducers show every header: the credentials are the test app's own, not secrets.
CONFIG = schemathesis.Config(output=OutputConfig(sanitization=SanitizationConfig(enabled=False)))
schema = schemathesis.openapi.from_wsgi("/idms/openapi.json", DOCUMENT_APP, config=CONFIG)


# -- checks ---------------------------------------------------------------------------


def is_probe(case: schemathesis.Case) -> bool:
    """A coverage probe sent with a method the operation does not have (405 expected)."""
    return case.method.upper() != case.operation.method.upper()


def status_code_is_listed(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """The status code is listed by number. flask-smorest adds a ``default`` response to
    every operation, with which the built-in ``status_code_conformance`` accepts any code."""
    if is_probe(case):
        return
    listed = [code for code in case.operation.responses.status_codes if code != "default"]
    if str(response.status_code) not in listed:
        raise AssertionError(
            f"Undocumented status code {response.status_code} for {case.operation.label} "
            f"(documented: {', '.join(listed)})"
        )


def documented_headers_are_sent(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Every header documented for the status is sent (the built-in check only insists on
    headers marked ``required``); a ``format: uri`` one is an absolute URI."""
    if is_probe(case):
        return
    definition = case.operation.responses.find_by_status_code(response.status_code)
    if definition is None:
        return
    for name, header in definition.headers.items():
        values = response.headers.get(name.lower())
        if not values:
            raise AssertionError(
                f"{case.operation.label} answered {response.status_code} without its "
                f"documented {name} header"
            )
        if header.definition.get("schema", {}).get("format") == "uri":
            parts = urlsplit(values[0])
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise AssertionError(f"{name} is not an absolute URI: {values[0]!r}")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    status_code_is_listed,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    documented_headers_are_sent,
]


# -- generation -----------------------------------------------------------------------

#: JSON values of every shape, and strings the typed parameters parse (dates, GUIDs, decimals).
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.datetimes(timezones=st.none() | st.just(dt.UTC)).map(dt.datetime.isoformat)
    | st.dates().map(dt.date.isoformat)
    | st.uuids().map(str)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Fuzzing: most object bodies get QueryParameters full of typed-looking values (the
    document types each value as "anything"), which :func:`renamed_body` puts on the real
    parameters of a task; the rest keep the document's own."""
    if not isinstance(body, dict):
        return st.just(body)
    typed = st.dictionaries(st.text(max_size=3), VALUES, min_size=1, max_size=6).map(
        lambda values: {**body, "QueryParameters": values}
    )
    return st.sampled_from((True, True, True, False)).flatmap(
        lambda use_typed: typed if use_typed else st.just(body)
    )


# -- fixtures -------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: str
    task_id: str
    token: str


def start(client: FlaskClient, key: Callable[[str], str], task_id: str, **values: Any) -> Job:
    answer = client.post(
        f"/idms/tasks/{task_id}/jobs",
        json={"QueryParameters": values},
        headers={"X-Webhook-Key": key(task_id)},
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    token = parse_qs(urlsplit(answer.headers["Location"]).query)["token"][0]
    return Job(answer.get_json()["ExecuteId"], task_id, token)


@pytest.fixture
def jobs(
    client: FlaskClient, key: Callable[[str], str], run_burst: Callable[[], None]
) -> list[Job]:
    """A job in each state a document reaches without a worker running."""
    finished = [
        start(client, key, "count", Count=5, FailEvery=2),  # succeeded, with row errors
        start(client, key, "boom"),  # failed: Error is set
        start(
            client,
            key,
            "params",
            ImisId=7,
            Age=2**40,
            Dues="12.50",
            Score=1.5,
            JoinDate="2024-02-29T10:00:00Z",
            IsMember=True,
            Guid="12345678-1234-5678-1234-567812345678",
            Paid=["1", "2.5"],
            Chapter=["a", "b"],
            Since="2024-01-01",
        ),
    ]
    run_burst()
    cancelled = start(client, key, "pair", **{"CsContact1.ImisId": 1})
    answer = client.delete(f"/idms/jobs/{cancelled.id}", headers=ADMIN)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    queued = [start(client, key, "count", Count=3), start(client, key, "sleep", Seconds=1)]
    return [*finished, cancelled, *queued]


# -- variants of a generated case -----------------------------------------------------

KEEP = object()


def pick(options: Sequence[Any], seed: object) -> Any:
    """One of ``options``, chosen by a stable hash of generated data (so reproducible)."""
    return options[zlib.crc32(repr(seed).encode()) % len(options)]


def variant(
    case: schemathesis.Case,
    *,
    path: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: Any = KEEP,
) -> schemathesis.Case:
    """The generated request with only the given credentials. A new case, without the
    generated one's metadata: a "missing Authorization" probe would drop the admin token."""
    kept_headers = {k: v for k, v in case.headers.items() if k.lower() not in CREDENTIAL_HEADERS}
    kept_query = {k: v for k, v in case.query.items() if k not in CREDENTIAL_QUERY}
    return case.operation.Case(
        method=case.method,
        path_parameters={**case.path_parameters, **(path or {})},
        headers={**kept_headers, **(headers or {})},
        cookies=case.cookies,
        query={**kept_query, **(query or {})},
        body=case.body if body is KEEP else body,
        media_type=case.media_type,
        multipart_content_types=case.multipart_content_types,
    )


def renamed_body(case: schemathesis.Case, keys: list[str]) -> Any:
    """The generated body with its QueryParameters' values moved onto the task's own
    parameter keys, so arbitrary JSON reaches each parameter's type check; else KEEP."""
    body = case.body
    supplied = body.get("QueryParameters") if isinstance(body, dict) else None
    if not keys or not isinstance(supplied, dict) or not supplied:
        return KEEP
    renamed = {keys[index % len(keys)]: value for index, value in enumerate(supplied.values())}
    return {**body, "QueryParameters": renamed}


def job_variants(
    case: schemathesis.Case, state: WebhooksState, key: Callable[[str], str], jobs: list[Job]
) -> Iterator[schemathesis.Case]:
    job = pick(jobs, case.path_parameters)
    known = {"job_id": job.id}
    own_key = {"X-Webhook-Key": key(job.task_id)}
    others = [task_id for task_id in state.tasks if task_id != job.task_id]
    other_key = {"X-Webhook-Key": key(pick(others, job.id))}
    yield variant(case, path=known)  # no credential: 401
    yield variant(case, path=known, headers=own_key)
    yield variant(case, path=known, headers=other_key)  # 401
    yield variant(case, headers=own_key)  # the generated (unknown) job: 404
    if case.operation.method.upper() == "GET":
        yield variant(case, path=known, query={"token": job.token})
        yield variant(case, path=known, query={"token": state.credentials.job_token("other")})
        generated = str(case.path_parameters.get("job_id", ""))
        # the generated job with its own valid token: 404 through the token branch
        yield variant(case, query={"token": state.credentials.job_token(generated)})
    else:
        yield variant(case, path=known, headers=ADMIN)
        yield variant(case, headers=ADMIN)


def task_variants(
    case: schemathesis.Case, state: WebhooksState, key: Callable[[str], str]
) -> Iterator[schemathesis.Case]:
    route = (case.operation.path, case.operation.method.upper())
    has_task = "task_id" in case.path_parameters
    task_id = pick(list(state.tasks), case.path_parameters)
    known = {"task_id": task_id} if has_task else {}
    if route in ADMIN_ROUTES:
        yield variant(case, path=known)  # no credential: 401
        yield variant(case, path=known, headers={"Authorization": "Bearer not-the-admin-token"})
        yield variant(case, path=known, headers=ADMIN)
        if has_task:
            yield variant(case, headers=ADMIN)  # the generated task: 404 unless it exists
        return
    own_key = {"X-Webhook-Key": key(task_id)}
    yield variant(case, path=known)  # no key: 401
    other = pick([t for t in state.tasks if t != task_id], case.path_parameters)
    yield variant(case, path=known, headers={"X-Webhook-Key": key(other)})  # 401
    yield variant(case, headers=own_key)  # the generated task: 404 unless it exists
    yield variant(case, path=known, headers=own_key)
    body = renamed_body(case, state.parameters[task_id].keys)
    if body is not KEEP:
        yield variant(case, path=known, headers=own_key, body=body)


def requests_for(
    case: schemathesis.Case, state: WebhooksState, key: Callable[[str], str], jobs: list[Job]
) -> Iterator[schemathesis.Case]:
    yield case  # as generated, with whatever schemathesis put in it
    if is_probe(case):
        return  # an undocumented method: 405 whatever the credentials
    if case.operation.path.startswith("/idms/jobs/"):
        yield from job_variants(case, state, key, jobs)
    else:
        yield from task_variants(case, state, key)


# -- the tests ------------------------------------------------------------------------


def test_the_fuzzed_document_is_the_apps(client: FlaskClient) -> None:
    answer = client.get("/idms/openapi.json")
    assert answer.status_code == 200
    assert answer.get_json() == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    # The app, its Redis and the jobs are shared by an operation's examples, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_every_operation_conforms_to_the_document(
    case: schemathesis.Case,
    app: Flask,
    state: WebhooksState,
    key: Callable[[str], str],
    jobs: list[Job],
) -> None:
    if case.operation.path == "/idms/ready":
        # A worker beats, so the route answers 200; its 503 is test_health's.
        WorkerBeat(state.redis, "fuzzing-worker").beat()
    for sent in requests_for(case, state, key, jobs):
        response = sent.call(app=app)
        # transport_kwargs: a check that re-sends must reach this app, not DOCUMENT_APP
        sent.validate_response(response, checks=CHECKS, transport_kwargs={"app": app})
