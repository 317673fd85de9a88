"""The ``flask idms-webhooks`` commands."""

from __future__ import annotations

import json

from flask import Flask

from flask_idms_webhooks import IdmsWebhooks
from tests.helpers import abandon_job, poll_path


def test_trigger_starts_a_job_and_prints_its_polling_url(app, client, run_burst, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    result = app.test_cli_runner().invoke(
        args=["idms-webhooks", "trigger", "count", "-p", "Count=4", "-p", "Delay=0"]
    )
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith("http://127.0.0.1:8000/idms/jobs/") and "token=" in url
    run_burst()
    final = client.get(poll_path(url))
    assert final.status_code == 200
    body = final.get_json()
    assert body["ProcessedCount"] == 4
    assert body["QueryParameters"]["Count"] == {"Value": 4, "Source": "request"}
    assert body["Trigger"] == "cli"


def test_trigger_refuses_bad_parameters_and_unknown_tasks(app, state):
    runner = app.test_cli_runner()
    bad = runner.invoke(args=["idms-webhooks", "trigger", "count", "-p", "Count=many"])
    assert bad.exit_code == 4  # could not start
    assert "Count" in bad.output
    unknown = runner.invoke(args=["idms-webhooks", "trigger", "nope"])
    assert unknown.exit_code == 4 and "no task 'nope'" in unknown.output
    usage = runner.invoke(args=["idms-webhooks", "trigger", "count", "-p", "Count"])
    assert usage.exit_code == 2 and "is not KEY=VALUE" in usage.output
    assert state.queue.count == 0


def test_tasks_lists_each_task_with_working_webhook_urls(app, client, key):
    result = app.test_cli_runner().invoke(args=["idms-webhooks", "tasks"])
    assert result.exit_code == 0
    assert f"/idms/tasks/count/jobs?key={key('count')}" in result.output
    assert "QueryParameters: Count, Delay, FailEvery" in result.output


def test_reap_seals_a_running_job_whose_heartbeat_stopped(app, client, state):
    job_id = abandon_job(client, state, "count", {"Count": 1}).get_json()["ExecuteId"]
    result = app.test_cli_runner().invoke(args=["idms-webhooks", "reap"])
    assert result.exit_code == 0 and "recovered 1 job" in result.output
    sealed = json.loads(state.store.read(job_id)[0])
    assert sealed["Status"] == "failed" and sealed["Error"]["Type"] == "WorkerDied"


def test_import_filters_prints_the_iqa_prompts_as_task_file_toml(redis_url, tmp_path, monkeypatch):
    import tomllib

    from flask import Flask

    from flask_idms_webhooks import IdmsWebhooks
    from flask_idms_webhooks.state import state_of
    from flask_idms_webhooks.testing import ImisDouble
    from flask_idms_webhooks.testing.demo import seed_demo

    double = ImisDouble("manager", "secret")
    seed_demo(double)
    monkeypatch.setenv("DOUBLE_PASSWORD", "secret")
    with double.serve() as base_url:
        task_file = tmp_path / "tasks.toml"
        task_file.write_text(
            f'[connections.imis]\nkind = "imis"\nbase_url = "{base_url}"\n'
            'username = "manager"\npassword = "${DOUBLE_PASSWORD}"\n'
            '[[tasks]]\nid = "dues"\n'
            '[tasks.source]\nconnection = "imis"\nquery = "$/Demo/Contacts"\n'
            '[tasks.target]\nconnection = "imis"\nentity = "CsDues"\nmatch = { ID = "ID" }\n'
        )
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY="s",
            IDMS_WEBHOOKS_REDIS_URL=redis_url,
            IDMS_WEBHOOKS_TASKS_FILE=str(task_file),
        )
        IdmsWebhooks(app)
        state = state_of(app)
        try:
            result = app.test_cli_runner().invoke(
                args=["idms-webhooks", "tasks", "import-filters", "dues"]
            )
        finally:
            state.connections.close()  # the app's iMIS client: no socket left behind
    assert result.exit_code == 0, result.output
    filters = tomllib.loads(result.output)["tasks"]["source"]["filters"]
    assert [(f["column"], f["operator"], f["prompt"]) for f in filters] == [
        ("LastName", "StartsWith", "Optional"),
        ("Status", "Equal", "None"),
        ("MemberType", "In", "Optional"),
        ("JoinDate", "Between", "Optional"),
    ]
    assert all(f["business_object"] == "CsContact" for f in filters)
    assert any(r.path.endswith("QueryDefinition/_execute") for r in double.requests)


def test_import_filters_needs_an_imis_source(app):
    result = app.test_cli_runner().invoke(
        args=["idms-webhooks", "tasks", "import-filters", "count"]
    )
    assert result.exit_code == 2 and "no iMIS source" in result.output


def keyed_app(redis_url: str, queue_name: str, **config: object) -> Flask:
    """An app with one task whose key needs quoting in a URL."""
    app = Flask(__name__)
    app.config.update(
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        IDMS_WEBHOOKS_SECRET_KEY="s3cret",
        IDMS_WEBHOOKS_ADMIN_TOKEN="admin-token",
        **config,
    )
    webhooks = IdmsWebhooks()
    webhooks.task("keyed", key="a+b/c=d&e")(lambda parameters, context: None)
    webhooks.init_app(app)
    return app


def test_the_urls_printed_are_the_ones_the_admin_routes_give(redis_url, queue_name, monkeypatch):
    """The command line builds its URLs where the routes do: a task key that needs
    quoting is quoted, and the base is --base-url, else the public URL, else 127.0.0.1 on
    $PORT."""
    monkeypatch.setenv("PORT", "8123")
    app = keyed_app(redis_url, queue_name)
    listing = app.test_cli_runner().invoke(args=["idms-webhooks", "tasks"]).output
    answer = app.test_client().get(
        "/idms/tasks/keyed",
        headers={"Authorization": "Bearer admin-token", "Host": "127.0.0.1:8123"},
    )
    webhooks = answer.get_json()["Webhooks"]
    assert (
        webhooks["Polling"] == "http://127.0.0.1:8123/idms/tasks/keyed/jobs?key=a%2Bb%2Fc%3Dd%26e"
    )
    assert f"  polling:  {webhooks['Polling']}\n" in listing
    assert f"  standard: {webhooks['Standard']}\n" in listing
    assert "a+b/c=d&e" not in listing
    polled = app.test_client().post(webhooks["Polling"].replace("http://127.0.0.1:8123", ""))
    assert polled.status_code == 202  # the printed URL works as it is
    triggered = app.test_cli_runner().invoke(args=["idms-webhooks", "trigger", "keyed"])
    assert triggered.output.startswith("http://127.0.0.1:8123/idms/jobs/"), triggered.output
    public = keyed_app(redis_url, queue_name, IDMS_WEBHOOKS_PUBLIC_URL="https://hooks.example/x")
    listing = public.test_cli_runner().invoke(args=["idms-webhooks", "tasks"]).output
    assert "  polling:  https://hooks.example/x/idms/tasks/keyed/jobs?key=" in listing
    args = ["idms-webhooks", "tasks", "--base-url", "http://elsewhere/"]
    listing = public.test_cli_runner().invoke(args=args).output  # said on the line: it wins
    assert "  polling:  http://elsewhere/idms/tasks/keyed/jobs?key=" in listing
    assert "hooks.example" not in listing
