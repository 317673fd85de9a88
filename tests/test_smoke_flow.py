from tests.conftest import poll_path


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
