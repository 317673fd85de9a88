import dataclasses

from tests.helpers import ADMIN, poll_path


def test_polling_flow_in_process(client, key, run_burst):
    answer = client.post(
        "/idms/tasks/count/jobs",
        json={"QueryParameters": {"Count": 30}},
        headers={"X-Webhook-Key": key("count")},
    )
    assert answer.status_code == 202
    location = answer.headers["Location"]
    assert location.startswith("http://localhost/idms/jobs/")
    assert answer.headers["Retry-After"] == "7"
    first = client.get(poll_path(location))
    assert first.status_code == 202
    run_burst()
    done = client.get(poll_path(location))
    assert done.status_code == 200
    body = done.get_json()
    assert body["Success"] is True
    assert body["ProcessedCount"] == 30 == body["RowCount"]
    assert (
        body["InsertedCount"] + body["UpdatedCount"] + body["SkippedCount"] + body["ErrorCount"]
        == 30
    )
    assert client.get(poll_path(location)).data == done.data


def test_fixed_filters_reach_the_task_but_not_the_document(
    app, client, key, run_burst, monkeypatch
):
    seen = {}
    state = app.extensions["idms_webhooks"]
    task = state.tasks["params"]
    monkeypatch.setitem(
        state.tasks, "params", dataclasses.replace(task, handler=lambda p, c: seen.update(p))
    )
    answer = client.post(
        "/idms/tasks/params/jobs",
        json={"QueryParameters": {"ImisId": 3}},
        headers={"X-Webhook-Key": key("params")},
    )
    assert "Status" not in answer.get_json()["QueryParameters"]
    run_burst()
    assert seen["Status"] == "A" and seen["ImisId"] == 3 and seen["FirstName"] == "Ann"


def test_credentials_are_checked_before_the_body_is_read(client, key):
    hostile = {"data": "{not json", "content_type": "application/json"}
    assert client.post("/idms/tasks/count/jobs", **hostile).status_code == 401
    assert client.post("/idms/tasks/nope/jobs", **hostile).status_code == 404
    assert client.post(f"/idms/tasks/count/jobs?key={key('count')}", **hostile).status_code == 400


def test_admin_routes_check_the_token_then_the_task_then_the_query(client):
    assert client.get("/idms/tasks/nope/jobs?page=0").status_code == 401
    assert client.get("/idms/tasks/nope/jobs?page=0", headers=ADMIN).status_code == 404
    assert client.get("/idms/tasks/count/jobs?page=0", headers=ADMIN).status_code == 422
