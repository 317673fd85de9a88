"""Credentials: task keys on the webhooks, the admin token on the admin routes, the
read-only job token, and who may cancel a job. Every refusal starts and changes nothing."""

from __future__ import annotations

import base64
import hmac
import logging
import re
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from flask_idms_webhooks import security
from flask_idms_webhooks.jobs import documents
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.web import auth
from tests.helpers import ADMIN, poll_path

WEBHOOKS = ["execute", "jobs", "validate"]
BODY = {"QueryParameters": {"Count": 3}}
URL_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{22,}$")


def assert_error(answer: Any, code: int) -> dict[str, Any]:
    """A JSON error in flask-smorest's shape, with the expected code."""
    assert answer.status_code == code, answer.data
    assert answer.mimetype == "application/json"
    body = answer.get_json()
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    return body  # type: ignore[no-any-return]


def assert_unauthorized(answer: Any) -> None:
    assert assert_error(answer, 401)["status"] == "Unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.fixture
def nothing_started(state):
    """Call at the end of a test: no job was queued and no history was written."""

    def check(*task_ids: str) -> None:
        assert state.queue.count == 0
        for task_id in task_ids or ("count",):
            assert state.store.history(task_id, 0, 100) == (0, [])

    return check


@pytest.fixture
def start(client, key):
    """Start a job of a task through the polling webhook; answers (job id, Location)."""

    def run(task_id: str = "count", body: Any = BODY) -> tuple[str, str]:
        answer = client.post(
            f"/idms/tasks/{task_id}/jobs", json=body, headers={"X-Webhook-Key": key(task_id)}
        )
        assert answer.status_code == 202
        return answer.get_json()["ExecuteId"], answer.headers["Location"]

    return run


def token_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["token"][0]


#: The three ways a caller may present a task key.
KEY_WAYS = pytest.mark.parametrize(
    "how",
    [
        lambda k: {"headers": {"Authorization": f"Bearer {k}"}},
        lambda k: {"headers": {"X-Webhook-Key": k}},
        lambda k: {"query_string": {"key": k}},
    ],
    ids=["bearer", "header", "query"],
)


# -- task keys on the webhooks ------------------------------------------------------------


@pytest.mark.parametrize("route", WEBHOOKS)
def test_no_key_is_401(client, nothing_started, route):
    assert_unauthorized(client.post(f"/idms/tasks/count/{route}", json=BODY))
    nothing_started()


@pytest.mark.parametrize("route", WEBHOOKS)
@KEY_WAYS
def test_a_wrong_key_is_401_however_it_is_sent(client, key, nothing_started, route, how):
    for wrong in ("wrong", key("count") + "x", key("count")[:-1], key("boom"), " "):
        answer = client.post(f"/idms/tasks/count/{route}", json=BODY, **how(wrong))
        assert_unauthorized(answer)
        if wrong.strip():
            assert wrong.encode() not in answer.data  # a key is never echoed
    nothing_started("count", "boom")


@pytest.mark.parametrize("route", WEBHOOKS)
def test_other_authorization_schemes_are_not_keys(client, key, nothing_started, route):
    for header in (f"Basic {key('count')}", key("count"), f"Token {key('count')}"):
        answer = client.post(
            f"/idms/tasks/count/{route}", json=BODY, headers={"Authorization": header}
        )
        assert_unauthorized(answer)
    nothing_started()


def test_a_mangled_query_key_is_401_not_500(client, nothing_started):
    for raw in ("key=%FF%FE", "key=%00", "key=" + "k" * 5000, "key="):
        assert_unauthorized(client.post(f"/idms/tasks/count/jobs?{raw}", json=BODY))
    nothing_started()


@KEY_WAYS
def test_the_key_is_accepted_as_bearer_header_or_query(client, key, state, how):
    assert (
        client.post("/idms/tasks/count/validate", json=BODY, **how(key("count"))).status_code == 200
    )
    assert (
        client.post("/idms/tasks/count/execute", json=BODY, **how(key("count"))).status_code == 200
    )
    assert client.post("/idms/tasks/count/jobs", json=BODY, **how(key("count"))).status_code == 202
    assert state.queue.count == 2
    assert state.store.history("count", 0, 100)[0] == 2


@pytest.mark.parametrize("route", WEBHOOKS)
def test_an_unknown_task_is_404_with_or_without_a_key(client, key, state, route):
    for headers in ({}, {"X-Webhook-Key": "whatever"}, {"X-Webhook-Key": key("count")}):
        body = assert_error(
            client.post(f"/idms/tasks/nope/{route}", json=BODY, headers=headers), 404
        )
        assert "nope" in body["message"]
    assert state.queue.count == 0


def test_each_task_has_its_own_key(key):
    assert len({key(task_id) for task_id in ("count", "boom", "sleep", "params", "pair")}) == 5


# -- admin routes -------------------------------------------------------------------------

ADMIN_ROUTES = ["/idms/tasks", "/idms/tasks/count", "/idms/tasks/count/jobs"]


@pytest.mark.parametrize("path", ADMIN_ROUTES)
def test_admin_routes_want_the_admin_token(client, key, path):
    refused = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer admin-token-and-more"},
        {"Authorization": "Basic admin-token"},
        {"Authorization": "Bearer "},
        {"X-Webhook-Key": "admin-token"},
        {"Authorization": f"Bearer {key('count')}"},  # a task key is not an admin token
    ]
    for headers in refused:
        assert_unauthorized(client.get(path, headers=headers))
    assert_unauthorized(client.get(path, query_string={"key": "admin-token"}))
    answer = client.get(path, headers=ADMIN)
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"


@pytest.mark.parametrize("unset", [None, ""])
@pytest.mark.parametrize("path", ADMIN_ROUTES)
def test_admin_routes_are_closed_without_a_configured_token(make_app, path, unset):
    client = make_app(IDMS_WEBHOOKS_ADMIN_TOKEN=unset).test_client()
    for headers in ({}, ADMIN, {"Authorization": "Bearer None"}, {"Authorization": "Bearer "}):
        answer = client.get(path, headers=headers)
        assert_unauthorized(answer)
        assert answer.get_json()["message"] == (
            "IDMS_WEBHOOKS_ADMIN_TOKEN is not set on this server: the admin routes are closed."
        )


def test_a_missing_admin_token_is_logged_once_when_an_admin_route_is_refused(make_app, caplog):
    """Not at every app creation (every CLI command would print it): once per process,
    when it matters."""
    auth.warn_admin_routes_closed.cache_clear()
    with caplog.at_level(logging.WARNING, logger="flask_idms_webhooks"):
        app = make_app(IDMS_WEBHOOKS_ADMIN_TOKEN=None)
        make_app(IDMS_WEBHOOKS_ADMIN_TOKEN=None)
        assert not [r for r in caplog.records if "ADMIN_TOKEN" in r.getMessage()]
        client = app.test_client()
        for path in ("/idms/tasks", "/idms/tasks/count", "/idms/jobs", "/idms/metrics"):
            assert_unauthorized(client.get(path, headers=ADMIN))
        assert client.get("/idms/dashboard", auth=("admin", "admin-token")).status_code == 401
    warned = [r.getMessage() for r in caplog.records if "ADMIN_TOKEN" in r.getMessage()]
    assert warned == [
        "IDMS_WEBHOOKS_ADMIN_TOKEN is not set on this server: the admin routes are closed. "
        "They answer 401 to everyone."
    ]


def test_without_an_admin_token_a_job_is_cancelled_only_with_its_task_key(make_app):
    app = make_app(IDMS_WEBHOOKS_ADMIN_TOKEN=None)
    client = app.test_client()
    current = state_of(app)
    task_key = current.credentials.task_key(current.tasks["count"])
    started = client.post("/idms/tasks/count/jobs", json=BODY, headers={"X-Webhook-Key": task_key})
    job_id = started.get_json()["ExecuteId"]
    assert_unauthorized(client.delete(f"/idms/jobs/{job_id}", headers=ADMIN))
    assert (
        client.delete(f"/idms/jobs/{job_id}", headers={"X-Webhook-Key": task_key}).status_code
        == 202
    )


def test_an_unknown_task_on_the_admin_routes(client):
    assert_unauthorized(client.get("/idms/tasks/nope"))
    assert_error(client.get("/idms/tasks/nope", headers=ADMIN), 404)
    assert_error(client.get("/idms/tasks/nope/jobs", headers=ADMIN), 404)


def test_the_task_list_holds_every_task(client):
    tasks = client.get("/idms/tasks", headers=ADMIN).get_json()
    assert [task["TaskId"] for task in tasks] == [
        "count", "crawl", "boom", "sleep", "params", "pair", "parent", "marker", "flaky",
        "child", "needy", "rescue",
    ]  # fmt: skip
    assert tasks[2] == client.get("/idms/tasks/boom", headers=ADMIN).get_json()


# -- the task document ----------------------------------------------------------------------


def test_the_task_document_shows_webhook_urls_with_the_key(client, key):
    document = client.get("/idms/tasks/params", headers=ADMIN).get_json()
    assert document["TaskId"] == "params"
    assert document["Name"] == "Every kind of parameter"
    encoded = quote(key("params"), safe="")
    assert document["Webhooks"] == {
        "Standard": f"http://localhost/idms/tasks/params/execute?key={encoded}",
        "Polling": f"http://localhost/idms/tasks/params/jobs?key={encoded}",
    }


def test_the_webhook_urls_alone_are_enough_to_start_jobs(client, state):
    webhooks = client.get("/idms/tasks/count", headers=ADMIN).get_json()["Webhooks"]
    standard = client.post(poll_path(webhooks["Standard"]), json=BODY)
    assert standard.status_code == 200
    assert standard.get_json()["Status"] == "queued"
    polling = client.post(poll_path(webhooks["Polling"]), json=BODY)
    assert polling.status_code == 202
    assert polling.headers["Location"].startswith("http://localhost/idms/jobs/")
    assert state.queue.count == 2
    total, _ = state.store.history("count", 0, 100)
    assert total == 2


def test_webhook_urls_use_the_public_url_when_set(make_app):
    client = make_app(IDMS_WEBHOOKS_PUBLIC_URL="https://hooks.example.org/base").test_client()
    webhooks = client.get("/idms/tasks/count", headers=ADMIN).get_json()["Webhooks"]
    assert webhooks["Standard"].startswith(
        "https://hooks.example.org/base/idms/tasks/count/execute?key="
    )
    assert webhooks["Polling"].startswith(
        "https://hooks.example.org/base/idms/tasks/count/jobs?key="
    )


def test_the_task_document_lists_only_settable_filters_in_query_order(client):
    document = client.get("/idms/tasks/params", headers=ADMIN).get_json()
    keys = [parameter["Key"] for parameter in document["QueryParameters"]]
    assert keys == [
        "LastName", "FirstName", "ImisId", "Age", "Dues", "Score", "JoinDate", "IsMember",
        "Guid", "Paid", "Chapter", "Since", "Until",
    ]  # fmt: skip
    by_key = {parameter["Key"]: parameter for parameter in document["QueryParameters"]}
    assert by_key["LastName"] == {
        "Key": "LastName", "BusinessObject": "CsContact", "Column": "LastName",
        "Operator": "StartsWith", "Type": "String", "Prompt": "Optional",
        "Default": "", "QueryDefault": "A",
    }  # fmt: skip
    assert (by_key["FirstName"]["Default"], by_key["FirstName"]["QueryDefault"]) == ("Ann", "Bob")
    assert by_key["ImisId"]["Prompt"] == "Required"
    assert by_key["ImisId"]["Type"] == "Int32"
    assert by_key["Paid"]["Operator"] == "Between"
    assert by_key["Chapter"]["Operator"] == "In"
    assert (by_key["Since"]["Column"], by_key["Since"]["Operator"]) == (
        "UpdatedOn",
        "GreaterThanOrEqual",
    )
    assert (by_key["Until"]["BusinessObject"], by_key["Until"]["Operator"]) == (
        "Activity",
        "LessThanOrEqual",
    )
    assert document["BodyTemplate"] == {"QueryParameters": dict.fromkeys(keys, "")}


def test_the_body_template_of_qualified_keys(client):
    document = client.get("/idms/tasks/pair", headers=ADMIN).get_json()
    assert [p["Key"] for p in document["QueryParameters"]] == [
        "CsContact1.ImisId",
        "CsContact2.ImisId",
    ]
    assert document["BodyTemplate"] == {
        "QueryParameters": {"CsContact1.ImisId": "", "CsContact2.ImisId": ""}
    }
    boom = client.get("/idms/tasks/boom", headers=ADMIN).get_json()
    assert boom["QueryParameters"] == []
    assert boom["BodyTemplate"] == {"QueryParameters": {}}


# -- the job token ----------------------------------------------------------------------------


def test_the_location_token_reads_its_job(client, start):
    job_id, location = start()
    answer = client.get(poll_path(location))
    assert answer.status_code == 202
    assert answer.get_json()["ExecuteId"] == job_id
    assert answer.headers["Location"] == location


def test_a_job_token_reads_that_job_only(client, start):
    first_id, first_location = start()
    second_id, second_location = start()
    assert first_id != second_id
    assert_unauthorized(
        client.get(f"/idms/jobs/{second_id}", query_string={"token": token_of(first_location)})
    )
    assert_unauthorized(
        client.get(f"/idms/jobs/{first_id}", query_string={"token": token_of(second_location)})
    )


def test_a_bad_or_missing_token_is_401(client, start):
    job_id, location = start()
    token = token_of(location)
    for bad in ("", "x", token[:-1], token + "A", token.upper() if token != token.upper() else "y"):
        answer = client.get(f"/idms/jobs/{job_id}", query_string={"token": bad})
        assert_unauthorized(answer)
    assert_unauthorized(client.get(f"/idms/jobs/{job_id}"))


def test_a_bad_token_is_401_even_for_a_job_that_never_existed(client):
    assert_unauthorized(client.get("/idms/jobs/" + "A" * 22, query_string={"token": "nope"}))


def test_a_good_token_whose_record_is_gone_is_404(client, start, state):
    job_id, location = start()
    state.redis.delete(f"idms:job:{job_id}", f"idms:result:{job_id}")
    assert_error(client.get(poll_path(location)), 404)


def test_a_good_token_whose_sealed_record_is_gone_is_404(client, start, state, run_burst):
    job_id, location = start()
    run_burst()
    assert client.get(poll_path(location)).status_code == 200
    state.redis.delete(f"idms:job:{job_id}", f"idms:result:{job_id}")
    assert_error(client.get(poll_path(location)), 404)


@KEY_WAYS
def test_the_task_key_can_poll_instead_of_a_token(client, key, start, how):
    job_id, _ = start()
    answer = client.get(f"/idms/jobs/{job_id}", **how(key("count")))
    assert answer.status_code == 202
    assert answer.get_json()["ExecuteId"] == job_id
    assert_unauthorized(client.get(f"/idms/jobs/{job_id}", **how(key("boom"))))
    assert_unauthorized(client.get(f"/idms/jobs/{job_id}", **how("wrong")))


def test_the_task_key_on_a_gone_job_is_404(client, key, start, state):
    job_id, _ = start()
    state.redis.delete(f"idms:job:{job_id}")
    assert_error(client.get(f"/idms/jobs/{job_id}", headers={"X-Webhook-Key": key("count")}), 404)


def test_the_job_token_cannot_cancel(client, start, state):
    job_id, location = start()
    token = token_of(location)
    for kwargs in (
        {"query_string": {"token": token}},
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"headers": {"X-Webhook-Key": token}},
        {"query_string": {"key": token}},
    ):
        assert_unauthorized(client.delete(f"/idms/jobs/{job_id}", **kwargs))
    assert client.get(poll_path(location)).get_json()["Status"] == "queued"
    assert state.queue.count == 1


def test_the_job_token_cannot_start_jobs(client, start, state):
    _, location = start()
    token = token_of(location)
    for route in WEBHOOKS:
        for kwargs in (
            {"query_string": {"token": token}},
            {"query_string": {"key": token}},
            {"headers": {"Authorization": f"Bearer {token}"}},
            {"headers": {"X-Webhook-Key": token}},
        ):
            assert_unauthorized(client.post(f"/idms/tasks/count/{route}", json=BODY, **kwargs))
    assert state.queue.count == 1
    assert state.store.history("count", 0, 100)[0] == 1


def test_the_admin_token_is_not_a_job_token_nor_a_task_key(client, start, state):
    job_id, _ = start()
    assert_unauthorized(client.get(f"/idms/jobs/{job_id}", query_string={"token": "admin-token"}))
    assert_unauthorized(client.post("/idms/tasks/count/jobs", json=BODY, headers=ADMIN))
    assert state.queue.count == 1


# -- cancelling -----------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["task key", "admin"])
def test_cancelling_a_queued_job(client, key, start, state, run_burst, who):
    job_id, location = start()
    assert state.queue.count == 1
    headers = {"X-Webhook-Key": key("count")} if who == "task key" else ADMIN
    answer = client.delete(f"/idms/jobs/{job_id}", headers=headers)
    assert answer.status_code == 202
    assert answer.get_json()["ExecuteId"] == job_id
    assert answer.get_json()["Status"] == "cancelled"
    assert state.queue.count == 0
    polled = client.get(poll_path(location))
    assert polled.status_code == 200
    document = polled.get_json()
    assert document["Status"] == "cancelled"
    assert document["Success"] is False
    assert set(document["Error"]) == {"Type", "Message"}
    assert document["Error"]["Message"]
    assert document["PercentComplete"] < 100
    assert document["CompletedOn"] is not None
    run_burst()  # nothing left to run: the record stays as sealed
    assert client.get(poll_path(location)).data == polled.data


def test_cancelling_a_finished_job_is_409(client, key, start, run_burst):
    job_id, location = start()
    run_burst()
    finished = client.get(poll_path(location))
    assert finished.get_json()["Status"] == "succeeded"
    for headers in ({"X-Webhook-Key": key("count")}, ADMIN):
        body = assert_error(client.delete(f"/idms/jobs/{job_id}", headers=headers), 409)
        assert body["errors"]["Job"]["Status"] == "succeeded"
    assert client.get(poll_path(location)).data == finished.data


def test_cancelling_twice_is_409_the_second_time(client, key, start):
    job_id, location = start()
    headers = {"X-Webhook-Key": key("count")}
    assert client.delete(f"/idms/jobs/{job_id}", headers=headers).status_code == 202
    assert_error(client.delete(f"/idms/jobs/{job_id}", headers=headers), 409)
    assert client.get(poll_path(location)).get_json()["Status"] == "cancelled"


def test_cancelling_needs_the_right_credentials(client, key, start, state):
    job_id, location = start()
    for headers in ({}, {"X-Webhook-Key": key("boom")}, {"Authorization": "Bearer wrong"},
                    {"X-Webhook-Key": "admin-token"}):  # fmt: skip
        assert_unauthorized(client.delete(f"/idms/jobs/{job_id}", headers=headers))
    assert client.get(poll_path(location)).get_json()["Status"] == "queued"
    assert state.queue.count == 1


def test_cancelling_an_unknown_job(client, key):
    assert_error(client.delete("/idms/jobs/" + "B" * 22, headers=ADMIN), 404)
    assert_unauthorized(client.delete("/idms/jobs/" + "B" * 22))


# -- job ids and secrets ------------------------------------------------------------------------


def test_job_ids_are_long_random_and_url_safe(client, key, start):
    ids = {start()[0] for _ in range(20)}
    execute_ids = {
        client.post(
            "/idms/tasks/count/execute", json=BODY, headers={"X-Webhook-Key": key("count")}
        ).get_json()["ExecuteId"]
        for _ in range(5)
    }
    ids |= execute_ids
    assert len(ids) == 25
    for job_id in ids:
        assert URL_SAFE_ID.match(job_id), job_id
        assert len(base64.urlsafe_b64decode(job_id + "=" * (-len(job_id) % 4))) >= 16


def test_new_job_ids_carry_128_bits():
    ids = {documents.new_job_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(URL_SAFE_ID.match(job_id) for job_id in ids)
    # every position varies: no fixed prefix, counter or timestamp
    for position in range(21):
        assert len({job_id[position] for job_id in ids}) > 30
    # none reads as an option on a command line (about 30 of 2000 would, drawn plainly)
    assert not any(job_id.startswith("-") for job_id in ids)


def test_secrets_are_compared_with_compare_digest(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert security.same("s3cret", "s3cret") is True
    assert security.same("s3cret", "s3creT") is False
    assert security.same("", "s3cret") is False
    assert security.same("é", "é") is True
    assert len(calls) == 4
    assert security.same(None, "s3cret") is False
    assert len(calls) == 4  # nothing to compare


def test_task_keys_and_job_tokens_depend_on_the_secret(make_app):
    one = state_of(make_app(IDMS_WEBHOOKS_SECRET_KEY="one"))
    two = state_of(make_app(IDMS_WEBHOOKS_SECRET_KEY="two"))
    task = one.tasks["count"]
    assert one.credentials.task_key(task) != two.credentials.task_key(task)
    assert one.credentials.job_token("job") != two.credentials.job_token("job")
    assert one.credentials.job_token("job") != one.credentials.job_token("job2")
    assert one.credentials.task_key(task) == state_of(
        make_app(IDMS_WEBHOOKS_SECRET_KEY="one")
    ).credentials.task_key(task)
