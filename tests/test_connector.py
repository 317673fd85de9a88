"""The Power Automate custom connector of a task: ``GET /idms/connector/{task_id}.json``
and ``flask idms-webhooks connector TASK``, a Swagger 2.0 document that validates, types
each QueryParameter, and describes a start action that waits for its job."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
from flask import Flask
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from flask_idms_webhooks import DataType, FilterRow, IdmsWebhooks, Operator, Prompt
from tests.helpers import ADMIN, poll_path


def connector(client, task_id: str) -> dict:
    answer = client.get(f"/idms/connector/{task_id}.json", headers=ADMIN)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "application/json"
    document = answer.get_json()
    validate(document, cls=OpenAPIV2SpecValidator)
    return document


def start_operation(document: dict) -> tuple[str, dict]:
    """(path, operation) of the connector's one visible action."""
    [(path, item)] = [(path, item) for path, item in document["paths"].items() if "post" in item]
    return path, item["post"]


def status_operation(document: dict) -> tuple[str, dict]:
    [(path, item)] = [
        (path, item)
        for path, item in document["paths"].items()
        if item.get("get", {}).get("operationId") == "GetJobStatus"
    ]
    return path, item["get"]


def body_schema(operation: dict) -> dict:
    [body] = [parameter for parameter in operation["parameters"] if parameter["in"] == "body"]
    return body["schema"]["properties"]["QueryParameters"]


def test_the_connector_is_for_admins_and_known_tasks(client, key):
    path = "/idms/connector/params.json"
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    # A task key starts the task; it does not read the admin routes.
    assert client.get(path, headers={"X-Webhook-Key": key("params")}).status_code == 401
    unknown = client.get("/idms/connector/nope.json", headers=ADMIN)
    assert unknown.status_code == 404
    assert unknown.get_json()["message"] == "No task 'nope'."


def test_each_query_parameter_is_typed_labelled_and_shown_by_its_prompt(client, key):
    document = connector(client, "params")
    assert document["swagger"] == "2.0"
    assert (document["host"], document["basePath"], document["schemes"]) == (
        "localhost",
        "/idms",
        ["http"],
    )
    assert document["info"]["title"] == "Every kind of parameter"
    path, start = start_operation(document)
    assert path == "/tasks/params/jobs"
    assert start["operationId"] == "StartEveryKindOfParameter"
    assert start["summary"] == "Every kind of parameter"
    assert start["x-ms-visibility"] == "important"

    query = body_schema(start)
    fields = query["properties"]
    # The task document's QueryParameters, in query order: the fixed filter (Status) is not one.
    listed = client.get("/idms/tasks/params", headers=ADMIN).get_json()["QueryParameters"]
    assert list(fields) == [parameter["Key"] for parameter in listed]
    assert "Status" not in fields
    assert query["required"] == ["ImisId"]  # the one Required filter without a default
    assert fields["ImisId"] | {"description": ""} == {
        "type": "integer",
        "format": "int32",
        "x-ms-summary": "ImisId",
        "x-ms-visibility": "important",
        "description": "",
    }
    assert {key: fields[key]["x-ms-visibility"] for key in fields} == {
        key: "important" if key == "ImisId" else "advanced" for key in fields
    }
    assert fields["LastName"]["type"] == "string"
    assert "StartsWith" in fields["LastName"]["description"]
    assert '"A"' in fields["LastName"]["description"]  # the query's default
    assert '"Ann"' in fields["FirstName"]["description"]  # the task's default
    assert fields["Dues"]["type"] == "number"
    assert (fields["JoinDate"]["type"], fields["JoinDate"]["format"]) == ("string", "date-time")
    assert fields["IsMember"]["type"] == "boolean"
    assert (fields["Guid"]["type"], fields["Guid"]["format"]) == ("string", "uuid")
    assert fields["Paid"]["type"] == "array"
    assert (fields["Paid"]["minItems"], fields["Paid"]["maxItems"]) == (2, 2)
    assert fields["Paid"]["items"]["type"] == "number"
    assert fields["Chapter"]["type"] == "array" and fields["Chapter"]["minItems"] == 1
    assert fields["Chapter"]["items"]["type"] == "string"
    assert fields["Since"]["format"] == fields["Until"]["format"] == "date-time"

    # The connection holds the key: the document does not.
    assert document["securityDefinitions"]["TaskKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Webhook-Key",
        "description": "The webhook key of task params (from an admin).",
    }
    assert key("params") not in json.dumps(document)

    for operation in (start, status_operation(document)[1]):
        waiting = operation["responses"]["202"]
        assert waiting["headers"]["Location"]["type"] == "string"
        assert waiting["headers"]["Retry-After"]["type"] == "integer"
        assert operation["responses"]["200"]["schema"] == {"$ref": "#/definitions/Job"}
    assert status_operation(document)[1]["x-ms-visibility"] == "internal"
    assert {"401", "404", "422", "503"} <= set(start["responses"])
    job = document["definitions"]["Job"]["properties"]
    assert job["InsertedCount"]["x-ms-summary"] == "Inserted count"
    assert job["Success"]["x-nullable"] is True
    assert job["QueryParameters"]["properties"]["Paid"]["properties"]["Value"]["type"] == "array"


@pytest.fixture
def edge_app(redis_url: str, queue_name: str) -> Flask:
    """Tasks at the edges: a long name, Required filters with defaults, no filters."""
    app = Flask(__name__)
    app.config.update(
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        IDMS_WEBHOOKS_SECRET_KEY="s3cret",
        IDMS_WEBHOOKS_ADMIN_TOKEN="admin-token",
        IDMS_WEBHOOKS_PUBLIC_URL="https://hooks.example.org/sync",
    )
    webhooks = IdmsWebhooks()
    webhooks.task(
        "members",
        name="Synchronise member e-mail addresses nightly",
        description="Copies e-mails",
        filters=[
            FilterRow("CsContact", "ImisId", type=DataType.INT32, prompt=Prompt.REQUIRED),
            FilterRow("CsContact", "Chapter", prompt=Prompt.REQUIRED, default="North"),
            FilterRow("CsContact", "Since", Operator.GREATER_THAN, DataType.DATETIME,
                      Prompt.REQUIRED, query_default="2024-01-01"),
        ],
    )(lambda parameters, context: None)  # fmt: skip
    webhooks.task("bare")(lambda parameters, context: None)
    webhooks.init_app(app)
    return app


def test_required_filters_with_a_default_may_be_left_blank(edge_app):
    document = connector(edge_app.test_client(), "members")
    assert (document["host"], document["basePath"], document["schemes"]) == (
        "hooks.example.org",
        "/sync/idms",
        ["https"],
    )
    title = document["info"]["title"]
    assert len(title) <= 30 and title == "Synchronise member e-mail…"
    _, start = start_operation(document)
    assert start["operationId"] == "StartSynchroniseMemberEMailAddressesNightly"
    query = body_schema(start)
    assert query["required"] == ["ImisId"]
    assert {key: field["x-ms-visibility"] for key, field in query["properties"].items()} == {
        "ImisId": "important",
        "Chapter": "important",
        "Since": "important",
    }
    assert start["description"].startswith("Copies e-mails. ")


def test_a_task_without_filters_has_an_action_without_a_body(edge_app):
    document = connector(edge_app.test_client(), "bare")
    _, start = start_operation(document)
    assert start["operationId"] == "StartBare"
    assert [parameter["in"] for parameter in start["parameters"]] == ["header"]  # Idempotency-Key


def test_the_command_prints_the_document_the_route_answers(app, client, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    runner = app.test_cli_runner()
    printed = runner.invoke(args=["idms-webhooks", "connector", "params"])
    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.output)
    validate(document, cls=OpenAPIV2SpecValidator)
    assert (document["host"], document["schemes"]) == ("127.0.0.1:8000", ["http"])

    given = runner.invoke(
        args=["idms-webhooks", "connector", "params", "--base-url", "http://localhost"]
    )
    assert json.loads(given.output) == connector(client, "params")

    unknown = runner.invoke(args=["idms-webhooks", "connector", "nope"])
    assert unknown.exit_code == 2 and "no task 'nope'" in unknown.output


def test_the_described_action_starts_a_job_and_polls_it_to_its_end(client, key, run_burst):
    """Called as Power Automate calls it: the start operation's path under basePath, the
    connection's key header, a body with the required fields; then the Location polled
    (with the connection's header) until a 200."""
    document = connector(client, "params")
    path, start = start_operation(document)
    header = document["securityDefinitions"]["TaskKey"]["name"]
    connection = {header: key("params")}
    values = {"integer": 12, "string": "Ann", "number": 1.5, "boolean": True}
    fields = body_schema(start)["properties"]
    body = {name: values[fields[name]["type"]] for name in body_schema(start)["required"]}

    started = client.post(
        document["basePath"] + path, json={"QueryParameters": body}, headers=connection
    )
    assert started.status_code == 202
    assert started.headers["Retry-After"].isdigit()
    location = started.headers["Location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == f"{document['schemes'][0]}://{document['host']}"
    status_path, _ = status_operation(document)
    pattern = re.escape(document["basePath"] + status_path).replace(r"\{job_id\}", "[^/]+")
    assert re.fullmatch(pattern, parts.path)

    waiting = client.get(poll_path(location), headers=connection)
    assert waiting.status_code == 202 and waiting.headers["Location"] == location
    run_burst()
    ended = client.get(poll_path(location), headers=connection)
    assert ended.status_code == 200
    final = ended.get_json()
    assert final["Success"] is True
    assert final["QueryParameters"]["ImisId"] == {"Value": 12, "Source": "request"}
    # Every field of the output is one the designer offers as dynamic content.
    assert set(final) <= set(document["definitions"]["Job"]["properties"])
    assert set(final["QueryParameters"]) == set(
        document["definitions"]["Job"]["properties"]["QueryParameters"]["properties"]
    )


def test_the_route_is_in_the_openapi_document(client):
    paths = client.get("/idms/openapi.json").get_json()["paths"]
    operation = paths["/idms/connector/{task_id}.json"]["get"]
    assert {"200", "401", "404"} <= set(operation["responses"])
    assert "application/json" in operation["responses"]["200"]["content"]
    assert operation["security"] == [{"IdmsBearer": []}]
    assert operation["operationId"] == "getConnectorDefinition"
