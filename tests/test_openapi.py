"""The OpenAPI document against the contract (a list written from HTTP-CONTRACT.md, not
read back from the app), and the offline docs page."""

from __future__ import annotations

import re

#: what any route that reads a body may answer besides its success
BODY_ERRORS = {"400", "401", "404", "413", "415", "422"}
#: (path, method) -> status codes the contract says the route answers
CONTRACT = {
    ("/idms/tasks", "get"): {"200", "401"},
    ("/idms/tasks/{task_id}", "get"): {"200", "401", "404"},
    ("/idms/tasks/{task_id}/jobs", "get"): {"200", "401", "404"},
    ("/idms/tasks/{task_id}/execute", "post"): {"200", "503", *BODY_ERRORS},
    ("/idms/tasks/{task_id}/jobs", "post"): {"202", "503", *BODY_ERRORS},
    ("/idms/tasks/{task_id}/validate", "post"): {"200", *BODY_ERRORS},
    ("/idms/jobs/{job_id}", "get"): {"200", "202", "401", "404"},
    ("/idms/jobs/{job_id}", "delete"): {"202", "401", "404", "409"},
    ("/idms/jobs/{job_id}/errors.csv", "get"): {"200", "401", "404"},
}
JOB_FIELDS = {
    "ExecuteId", "TaskId", "Status", "StatusDescription", "Success", "PercentComplete",
    "RowCount", "ProcessedCount", "InsertedCount", "UpdatedCount", "SkippedCount",
    "ErrorCount", "DeletedCount", "Errors", "QueryParameters", "CreatedOn", "StartedOn",
    "UpdatedOn", "CompletedOn", "PollingUrl", "RetryAfter", "Chain", "Error", "Attempt",
    "Attempts", "Trigger", "DueOn",
}  # fmt: skip


def spec(client):
    answer = client.get("/idms/openapi.json")
    assert answer.status_code == 200
    return answer.get_json()


def test_every_contract_route_is_documented_with_its_codes(client):
    paths = spec(client)["paths"]
    for (path, method), codes in CONTRACT.items():
        assert path in paths, path
        assert method in paths[path], (path, method)
        documented = set(paths[path][method]["responses"])
        assert codes <= documented, (path, method, codes - documented)


def test_202_answers_document_location_and_retry_after(client):
    paths = spec(client)["paths"]
    for path, method in (("/idms/tasks/{task_id}/jobs", "post"), ("/idms/jobs/{job_id}", "get")):
        headers = paths[path][method]["responses"]["202"]["headers"]
        assert {"Location", "Retry-After"} <= set(headers)
        assert headers["Retry-After"]["schema"]["type"] == "integer"
    for path, method in (
        ("/idms/tasks/{task_id}/jobs", "post"),
        ("/idms/tasks/{task_id}/execute", "post"),
    ):
        assert "Retry-After" in paths[path][method]["responses"]["503"]["headers"]


def test_job_document_schema_has_every_contract_field(client):
    document = spec(client)
    schemas = document["components"]["schemas"]
    poll = document["paths"]["/idms/jobs/{job_id}"]["get"]["responses"]["200"]
    ref = poll["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schemas[ref]["properties"]) == JOB_FIELDS


def test_webhook_bodies_are_optional_and_document_idempotency_key(client):
    paths = spec(client)["paths"]
    for path in ("/idms/tasks/{task_id}/jobs", "/idms/tasks/{task_id}/execute"):
        operation = paths[path]["post"]
        assert operation["requestBody"]["required"] is False
        assert any(
            p["name"] == "Idempotency-Key" and p["in"] == "header" for p in operation["parameters"]
        )


def test_swagger_ui_works_offline(client):
    page = client.get("/idms/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/idms/") for source in sources), sources
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200 and len(asset.data) > 1000, source
        asset.close()


def test_every_operation_says_which_credentials_open_it(client):
    document = spec(client)
    schemes = document["components"]["securitySchemes"]
    assert schemes["IdmsWebhookKey"] == {"type": "apiKey", "in": "header", "name": "X-Webhook-Key"}
    assert schemes["IdmsJobToken"]["in"] == "query" and schemes["IdmsJobToken"]["name"] == "token"
    for path, method in CONTRACT:
        names = {
            name
            for requirement in document["paths"][path][method]["security"]
            for name in requirement
        }
        if path.startswith("/idms/jobs/") and method == "get":  # poll, errors.csv
            assert {"IdmsJobToken", "IdmsWebhookKey", "IdmsKeyQuery", "IdmsBearer"} == names
        elif method == "get":  # the admin routes
            assert names == {"IdmsBearer"}, path
        else:
            assert {"IdmsWebhookKey", "IdmsKeyQuery", "IdmsBearer"} == names, (path, method)


def test_documented_keeps_flask_smorest_docs_without_its_run_time_wrappers():
    """``web.docs.documented`` reads what flask-smorest's decorators leave on a view
    (``_apidoc``) and keeps it on the bare view. If flask-smorest stops documenting a
    route that way, this breaks: the hot routes would vanish from the OpenAPI document."""
    from flask import Flask
    from flask_smorest import Api, Blueprint
    from marshmallow import Schema, fields

    from flask_idms_webhooks.web.docs import documented

    class Answer(Schema):
        Id = fields.String()

    blp = Blueprint("probe", __name__)

    def view():
        return {"Id": "x"}

    bare = documented(
        blp.response(202, Answer, headers={"Retry-After": {"schema": {"type": "integer"}}}),
        blp.alt_response(404, description="gone"),
    )(view)
    assert bare is view  # nothing wraps it at run time
    assert set(view._apidoc) >= {"response"}
    blp.route("/probe")(bare)
    app = Flask(__name__)
    app.config.update(API_TITLE="probe", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    api = Api(app)
    api.register_blueprint(blp)
    operation = api.spec.to_dict()["paths"]["/probe"]["get"]
    assert set(operation["responses"]) == {"202", "404", "default"}
    assert "Retry-After" in operation["responses"]["202"]["headers"]
    assert app.test_client().get("/probe").get_json() == {"Id": "x"}
