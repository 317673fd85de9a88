"""The Swagger UI flow: "Authorize" with the admin token (Bearer) and a task's key
(X-Webhook-Key) at once, list the tasks, then start a job with the example body the
document offers. Swagger UI sends every credential it holds on every call: any one valid
for the route opens it, and a 401 names each one that was wrong."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import ADMIN, poll_path
from tests.test_auth import assert_unauthorized

ADMIN_TOKEN = ADMIN["Authorization"].removeprefix("Bearer ")
BODY = {"QueryParameters": {"Count": 3}}


@pytest.fixture
def document(client) -> dict[str, Any]:
    return client.get("/idms/openapi.json").get_json()  # type: ignore[no-any-return]


def body_examples(document: dict[str, Any], route: str) -> dict[str, Any]:
    body = document["paths"][f"/idms/tasks/{{task_id}}/{route}"]["post"]["requestBody"]
    return body["content"]["application/json"]["examples"]  # type: ignore[no-any-return]


def swagger(key: str) -> dict[str, str]:
    """The headers Swagger UI sends once both the admin token and a task key are set."""
    return {**ADMIN, "X-Webhook-Key": key}


def message(answer: Any) -> str:
    assert_unauthorized(answer)
    return answer.get_json()["message"]  # type: ignore[no-any-return]


def test_admin_token_and_task_key_together_list_the_tasks_then_start_a_job(
    client, key, state, document
):
    headers = swagger(key("sleep"))
    tasks = client.get("/idms/tasks", headers=headers)
    assert tasks.status_code == 200
    assert "sleep" in [task["TaskId"] for task in tasks.get_json()]
    example = body_examples(document, "jobs")["sleep"]["value"]
    started = client.post("/idms/tasks/sleep/jobs", json=example, headers=headers)
    assert started.status_code == 202, started.get_json()
    job = started.get_json()
    assert job["Status"] == "queued" and job["TaskId"] == "sleep"
    polled = client.get(f"/idms/jobs/{job['ExecuteId']}", headers=headers)
    assert polled.status_code == 202
    assert client.get(poll_path(started.headers["Location"]), headers=headers).status_code == 202
    cancelled = client.delete(f"/idms/jobs/{job['ExecuteId']}", headers=headers)
    assert cancelled.status_code == 202
    assert state.store.history("sleep", 0, 10)[0] == 1


def test_every_example_body_is_accepted_once_its_required_values_are_filled(client, key, document):
    for route, success in (("jobs", 202), ("execute", 200), ("validate", 200)):
        for task_id, example in body_examples(document, route).items():
            body = example["value"]
            if "Fill in" in example["description"]:
                # What the description says is missing is what a 422 names.
                refused = client.post(
                    f"/idms/tasks/{task_id}/{route}", json=body, headers=swagger(key(task_id))
                )
                assert refused.status_code == 422, (route, task_id)
                continue
            answer = client.post(
                f"/idms/tasks/{task_id}/{route}", json=body, headers=swagger(key(task_id))
            )
            assert answer.status_code == success, (route, task_id, answer.get_json())


def test_the_filled_in_example_of_a_task_with_a_required_value_starts_a_job(client, key, document):
    example = body_examples(document, "jobs")["count"]
    assert "Fill in Count" in example["description"]
    body = {"QueryParameters": {**example["value"]["QueryParameters"], "Count": 2}}
    answer = client.post("/idms/tasks/count/jobs", json=body, headers=swagger(key("count")))
    assert answer.status_code == 202
    assert answer.get_json()["QueryParameters"]["Delay"]["Source"] == "task default"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": {"Authorization": "Bearer wrong", "X-Webhook-Key": "{key}"}},
        {"headers": {"Authorization": "Bearer {key}", "X-Webhook-Key": "wrong"}},
        {"headers": {"Authorization": "Bearer wrong"}, "query_string": {"key": "{key}"}},
        {"headers": {"X-Webhook-Key": "wrong"}, "query_string": {"key": "{key}"}},
    ],
    ids=["header", "bearer", "query-after-bearer", "query-after-header"],
)
def test_any_one_valid_key_among_several_starts_the_job(client, key, kwargs):
    def fill(values: dict[str, str]) -> dict[str, str]:
        return {name: value.replace("{key}", key("count")) for name, value in values.items()}

    filled = {part: fill(values) for part, values in kwargs.items()}
    assert client.post("/idms/tasks/count/jobs", json=BODY, **filled).status_code == 202
    assert client.post("/idms/tasks/count/validate", json=BODY, **filled).status_code == 200


def test_a_401_names_each_wrong_credential(client, key, state):
    assert message(client.post("/idms/tasks/count/jobs", json=BODY, headers=swagger("wrong"))) == (
        "The Bearer token is the admin token, which does not open this route (this task's "
        "key does); the X-Webhook-Key header is not this task's key."
    )
    every_place = client.post(
        "/idms/tasks/count/execute",
        json=BODY,
        headers={"Authorization": f"Bearer {key('boom')}", "X-Webhook-Key": "wrong"},
        query_string={"key": "wrong too"},
    )
    assert message(every_place) == (
        "The Bearer token is not this task's key; the X-Webhook-Key header is not this "
        "task's key; the key query parameter is not this task's key."
    )
    assert message(client.post("/idms/tasks/count/validate", json=BODY)) == (
        "A valid task key is required: Authorization: Bearer <key>, X-Webhook-Key: <key>, "
        "or ?key=<key>."
    )
    assert state.queue.count == 0


def test_a_401_never_repeats_a_key(client, key):
    headers = {"Authorization": f"Bearer {key('boom')}", "X-Webhook-Key": key("sleep")}
    answer = client.post("/idms/tasks/count/jobs", json=BODY, headers=headers)
    assert_unauthorized(answer)
    assert key("boom").encode() not in answer.data and key("sleep").encode() not in answer.data
    assert b"admin-token" not in client.post("/idms/tasks/count/jobs", headers=ADMIN).data


def test_the_admin_routes_say_what_is_wrong(client, key):
    with_a_task_key = {"Authorization": f"Bearer {key('count')}", "X-Webhook-Key": key("count")}
    assert message(client.get("/idms/tasks", headers=with_a_task_key)) == (
        "The Bearer token is not the admin token."
    )
    assert message(client.get("/idms/tasks", headers={"X-Webhook-Key": ADMIN_TOKEN})) == (
        "A valid admin token is required (Authorization: Bearer <token>)."
    )
    basic = client.get("/idms/tasks/count", auth=("anyone", "not the token"))
    assert message(basic) == "The password of HTTP Basic is not the admin token."


def test_cancel_names_each_wrong_credential(client, key):
    started = client.post(
        "/idms/tasks/count/jobs", json=BODY, headers={"X-Webhook-Key": key("count")}
    )
    job_id = started.get_json()["ExecuteId"]
    refused = client.delete(
        f"/idms/jobs/{job_id}",
        headers={"Authorization": "Bearer wrong", "X-Webhook-Key": key("boom")},
    )
    assert message(refused) == (
        "The Bearer token is neither the key of this job's task nor the admin token; "
        "the X-Webhook-Key header is not the key of this job's task."
    )
    token_only = client.delete(poll_path(started.headers["Location"]))
    assert message(token_only) == (
        "The task's key or an admin token is required (a job token only reads its job)."
    )
    either = {"Authorization": "Bearer wrong", "X-Webhook-Key": key("count")}
    assert client.delete(f"/idms/jobs/{job_id}", headers=either).status_code == 202


def test_the_poll_takes_the_task_key_beside_a_wrong_token(client, key):
    started = client.post(
        "/idms/tasks/count/jobs", json=BODY, headers={"X-Webhook-Key": key("count")}
    )
    job_id = started.get_json()["ExecuteId"]
    path = f"/idms/jobs/{job_id}"
    bad_token = {"token": "not-the-token"}
    assert message(client.get(path, query_string=bad_token)) == (
        "The job token is not valid for this job."
    )
    wrong_key = client.get(path, query_string=bad_token, headers={"X-Webhook-Key": "wrong"})
    assert message(wrong_key) == (
        "The job token is not valid for this job; the X-Webhook-Key header is not the key "
        "of this job's task."
    )
    right_key = client.get(path, query_string=bad_token, headers={"X-Webhook-Key": key("count")})
    assert right_key.status_code == 202
    admin_only = client.get(path, headers=ADMIN)
    assert message(admin_only) == (
        "The Bearer token is the admin token, which does not open this route (the key of "
        "this job's task does)."
    )
