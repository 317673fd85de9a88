"""The OpenAPI document against the contract (a list written from HTTP-CONTRACT.md, not
read back from the app), and the offline docs page."""

from __future__ import annotations

import re

from tests.helpers import ADMIN

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
    ("/idms/jobs/{job_id}/callback", "get"): {"200", "401", "404"},
}
JOB_FIELDS = {
    "ExecuteId", "TaskId", "Status", "StatusDescription", "Success", "PercentComplete",
    "RowCount", "ProcessedCount", "InsertedCount", "UpdatedCount", "SkippedCount",
    "ErrorCount", "DeletedCount", "Errors", "QueryParameters", "CreatedOn", "StartedOn",
    "UpdatedOn", "CompletedOn", "PollingUrl", "RetryAfter", "Chain", "Error", "Attempt",
    "Attempts", "Trigger", "DueOn", "EstimatedCompletionOn", "CallbackUrl",
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


def test_callbacks_are_documented_where_they_apply(client):
    """CallbackUrl in the webhooks' body (a nullable string, with an example) and in the
    job document; CallbackSecret in the task document; the delivery state's four fixed
    fields."""
    document = spec(client)
    schemas = document["components"]["schemas"]
    for path in ("/idms/tasks/{task_id}/jobs", "/idms/tasks/{task_id}/execute"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        ref = body["schema"]["$ref"].rsplit("/", 1)[1]
        field = schemas[ref]["properties"]["CallbackUrl"]
        assert field["type"] == "string" and field["nullable"] is True
        assert field["example"].startswith("https://")
        assert "IDMS_WEBHOOKS_CALLBACK_HOSTS" in field["description"]
    assert schemas["IdmsJob"]["properties"]["CallbackUrl"]["nullable"] is True
    assert "query" in schemas["IdmsJob"]["properties"]["CallbackUrl"]["description"]
    assert schemas["IdmsTask"]["properties"]["CallbackSecret"]["type"] == "string"
    answer = document["paths"]["/idms/jobs/{job_id}/callback"]["get"]["responses"]["200"]
    ref = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"Url", "Attempts", "LastStatus", "DeliveredOn"} <= set(schemas[ref]["properties"])


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
        if path.startswith("/idms/jobs/") and method == "get":  # poll, errors.csv, callback
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


# -- operation ids, names, tags, examples ---------------------------------------------------

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
#: operationIds a client generator turns into method names: fixed once published.
OPERATION_IDS = {
    ("/idms/tasks", "get"): "listTasks",
    ("/idms/tasks/{task_id}", "get"): "getTask",
    ("/idms/tasks/{task_id}/jobs", "get"): "listTaskJobs",
    ("/idms/tasks/{task_id}/execute", "post"): "executeTask",
    ("/idms/tasks/{task_id}/jobs", "post"): "startJob",
    ("/idms/tasks/{task_id}/validate", "post"): "validateParameters",
    ("/idms/tasks/{task_id}/schedule", "get"): "getTaskSchedule",
    ("/idms/tasks/{task_id}/schedule", "put"): "setTaskSchedule",
    ("/idms/jobs", "get"): "listJobs",
    ("/idms/jobs/{job_id}", "get"): "pollJob",
    ("/idms/jobs/{job_id}", "delete"): "cancelJob",
    ("/idms/jobs/{job_id}/errors.csv", "get"): "getJobErrorsCsv",
    ("/idms/jobs/{job_id}/callback", "get"): "getJobCallback",
    ("/idms/health", "get"): "getHealth",
    ("/idms/ready", "get"): "getReadiness",
    ("/idms/metrics", "get"): "getMetrics",
    ("/idms/dashboard", "get"): "getDashboard",
}
TASK_BODY_ROUTES = ("execute", "jobs", "validate")


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_every_operation_has_a_unique_camel_case_operation_id(client):
    document = spec(client)
    ids = [operation.get("operationId") for _, _, operation in operations(document)]
    assert all(ids), [(p, m) for p, m, o in operations(document) if not o.get("operationId")]
    assert len(ids) == len(set(ids)), sorted(ids)
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name) for name in ids), ids
    found = {(path, method): op["operationId"] for path, method, op in operations(document)}
    assert found.items() >= OPERATION_IDS.items()


def test_every_operation_is_under_one_human_tag(client):
    document = spec(client)
    assert document["tags"] == [
        {"name": "iDMS webhooks", "description": document["tags"][0]["description"]}
    ]
    assert document["tags"][0]["description"]
    assert {tuple(op["tags"]) for _, _, op in operations(document)} == {("iDMS webhooks",)}


def test_the_standalone_document_describes_itself(client):
    info = spec(client)["info"]
    assert info["title"] == "iDMS webhooks"
    assert "X-Webhook-Key" in info["description"] and "202" in info["description"]


def test_schema_names_are_prefixed(client):
    names = set(spec(client)["components"]["schemas"])
    ours = names - {"Error", "PaginationMetadata"}  # flask-smorest's own
    assert {"IdmsTask", "IdmsJob", "IdmsError", "IdmsTriggerBody"} <= ours
    assert all(name.startswith("Idms") for name in ours), sorted(ours)
    assert not names & {"Task", "Job", "Task1", "Job1", "Error1"}


def test_webhook_bodies_have_each_tasks_body_template_as_example(client):
    document = spec(client)
    tasks = client.get("/idms/tasks", headers=ADMIN).get_json()
    templates = {task["TaskId"]: task["BodyTemplate"] for task in tasks}
    for route in TASK_BODY_ROUTES:
        body = document["paths"][f"/idms/tasks/{{task_id}}/{route}"]["post"]["requestBody"]
        examples = body["content"]["application/json"]["examples"]
        assert list(examples) == list(templates), route
        assert {name: e["value"] for name, e in examples.items()} == templates
        assert examples["count"]["summary"] == "Count rows"
        assert "Fill in Count" in examples["count"]["description"]
        assert "Fill in" not in examples["boom"]["description"]  # nothing Required


def test_the_task_id_has_the_task_ids_as_examples_not_an_enum(client):
    document = spec(client)
    task_ids = [task["TaskId"] for task in client.get("/idms/tasks", headers=ADMIN).get_json()]
    paths = [path for path in document["paths"] if "{task_id}" in path]
    assert len(paths) >= 5
    for path in paths:
        [parameter] = [p for p in document["paths"][path]["parameters"] if p["name"] == "task_id"]
        assert parameter["in"] == "path" and "enum" not in parameter["schema"]
        assert [e["value"] for e in parameter["examples"].values()] == task_ids
    assert client.post("/idms/tasks/not-a-task/jobs").status_code == 404  # still not an enum


def test_the_202_answers_show_a_queued_job(client):
    paths = spec(client)["paths"]
    for path, method in (("/idms/tasks/{task_id}/jobs", "post"), ("/idms/jobs/{job_id}", "get")):
        example = paths[path][method]["responses"]["202"]["content"]["application/json"]["example"]
        assert example["Status"] == "queued"
        assert example["Success"] is None and example["PercentComplete"] == 0
        assert set(example) == JOB_FIELDS


def host_app(redis_url, task_id):
    """A host app with its own Api and its own Task and Job schemas (and flask-smorest's
    Error), embedding the extension with one task."""
    from flask import Flask
    from flask_smorest import Api, Blueprint
    from flask_smorest.error_handler import ErrorSchema
    from marshmallow import Schema, fields

    from flask_idms_webhooks import IdmsWebhooks

    class TaskSchema(Schema):
        Title = fields.String()

    class JobSchema(Schema):
        Employer = fields.String()

    host = Flask(__name__)
    host.config.update(
        API_TITLE="Host",
        API_VERSION="2",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api-docs",
        API_SPEC_OPTIONS={"info": {"description": "The host's own API."}},
        SECRET_KEY="host-secret",
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_ADMIN_TOKEN="admin-token",
    )
    api = Api(host)
    own = Blueprint("host", __name__, description="The host's routes.")

    @own.route("/chores")
    @own.response(200, TaskSchema(many=True))
    @own.alt_response(400, schema=ErrorSchema)
    def chores():
        return []

    @own.route("/jobs-board")
    @own.response(200, JobSchema(many=True))
    def jobs_board():
        return []

    api.register_blueprint(own)
    webhooks = IdmsWebhooks()
    webhooks.task(task_id)(lambda parameters, context: None)
    webhooks.init_app(host, api=api)
    return host


def test_a_host_with_its_own_task_job_and_error_schemas_gets_no_clash(redis_url):
    """pytest turns warnings into errors: an apispec name clash ("Task1") fails here."""
    document = host_app(redis_url, "hello").test_client().get("/api-docs/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert {"Task", "Job", "Error", "IdmsTask", "IdmsJob", "IdmsError"} <= set(schemas)
    assert set(schemas["Task"]["properties"]) == {"Title"}
    assert set(schemas["Job"]["properties"]) == {"Employer"}
    assert document["info"] == {
        "title": "Host",
        "version": "2",
        "description": "The host's own API.",
    }
    assert {tag["name"] for tag in document["tags"]} == {"host", "iDMS webhooks"}
    host_operations = [op for path, _, op in operations(document) if not path.startswith("/idms")]
    assert all("operationId" not in op for op in host_operations)  # the host's, untouched
    assert all(op["tags"] == ["host"] for op in host_operations)


def test_two_apps_in_one_process_each_document_their_own_tasks(client, redis_url):
    host = host_app(redis_url, "hello").test_client().get("/api-docs/openapi.json").get_json()
    ours = spec(client)
    path = "/idms/tasks/{task_id}/jobs"
    host_body = host["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    assert list(host_body["examples"]) == ["hello"]
    assert host_body["examples"]["hello"]["value"] == {"QueryParameters": {}}
    our_body = ours["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    assert "hello" not in our_body["examples"] and "count" in our_body["examples"]
    [task_id] = [p for p in host["paths"][path]["parameters"] if p["name"] == "task_id"]
    assert list(task_id["examples"]) == ["hello"]
