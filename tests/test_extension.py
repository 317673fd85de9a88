"""The extension itself: settings, two apps in one process, embedding in a host Api."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_smorest import Api

from flask_idms_webhooks import ConfigurationError, IdmsWebhooks, TaskLoadError
from flask_idms_webhooks.state import state_of
from tests.helpers import poll_path
from tests.sample_app import create_app


def test_no_redis_url_is_a_configuration_error():
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "s"
    with pytest.raises(ConfigurationError, match="IDMS_WEBHOOKS_REDIS_URL"):
        IdmsWebhooks(app)


def test_no_secret_is_a_configuration_error(redis_url):
    app = Flask(__name__)
    app.config["IDMS_WEBHOOKS_REDIS_URL"] = redis_url
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        IdmsWebhooks(app)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IDMS_WEBHOOKS_RETRY_AFTER", "soon"),
        ("IDMS_WEBHOOKS_RETRY_AFTER", 0),
        ("IDMS_WEBHOOKS_RESULT_TTL", "7 weeks"),
        ("IDMS_WEBHOOKS_JOB_TIMEOUT", -5),
        ("IDMS_WEBHOOKS_URL_PREFIX", "idms"),
        ("IDMS_WEBHOOKS_PUBLIC_URL", "example.org"),
        ("IDMS_WEBHOOKS_MAX_BODY_SIZE", "big"),
    ],
)
def test_a_bad_setting_names_its_full_key(redis_url, name, value):
    with pytest.raises(ConfigurationError, match=name):
        create_app(IDMS_WEBHOOKS_REDIS_URL=redis_url, **{name: value})


def test_a_second_init_app_on_the_same_app_is_an_error(app):
    with pytest.raises(ConfigurationError, match="already"):
        IdmsWebhooks().init_app(app)


def test_a_bad_task_file_stops_the_app_before_it_serves(redis_url, tmp_path):
    task_file = tmp_path / "tasks.toml"
    task_file.write_text(
        '[[tasks]]\nid = "x"\nhandler = "tests.sample_app:count"\ntimeout = "soon"\n'
    )
    with pytest.raises(TaskLoadError) as caught:
        create_app(IDMS_WEBHOOKS_REDIS_URL=redis_url, IDMS_WEBHOOKS_TASKS_FILE=str(task_file))
    message = str(caught.value)
    assert str(task_file) in message and "'x'" in message and "timeout" in message


def test_two_apps_in_one_process_keep_their_own_state(make_app):
    first = make_app(SECRET_KEY="one")
    second = make_app(
        SECRET_KEY="two", IDMS_WEBHOOKS_URL_PREFIX="/hooks", IDMS_WEBHOOKS_RETRY_AFTER=11
    )
    one, two = state_of(first), state_of(second)
    assert one is not two
    key_one = one.credentials.task_key(one.tasks["count"])
    key_two = two.credentials.task_key(two.tasks["count"])
    assert key_one != key_two
    body = {"QueryParameters": {"Count": 1}}
    a = first.test_client().post(f"/idms/tasks/count/jobs?key={key_one}", json=body)
    b = second.test_client().post(f"/hooks/tasks/count/jobs?key={key_two}", json=body)
    assert a.status_code == b.status_code == 202
    assert "/idms/jobs/" in a.headers["Location"] and "/hooks/jobs/" in b.headers["Location"]
    boom_one = one.credentials.task_key(one.tasks["boom"])
    boom_two = two.credentials.task_key(two.tasks["boom"])
    assert (
        first.test_client().post(f"/idms/tasks/boom/jobs?key={boom_one}").headers["Retry-After"]
        == "30"
    )
    assert (
        second.test_client().post(f"/hooks/tasks/boom/jobs?key={boom_two}").headers["Retry-After"]
        == "11"
    )
    # each app's key and token are its own
    assert (
        second.test_client().post(f"/hooks/tasks/count/jobs?key={key_one}", json=body).status_code
        == 401
    )
    wrong_app = poll_path(a.headers["Location"]).replace("/idms/", "/hooks/")
    assert second.test_client().get(wrong_app).status_code == 401
    assert first.test_client().get("/idms/openapi.json").status_code == 200
    assert second.test_client().get("/hooks/openapi.json").status_code == 200


def test_embedded_in_a_host_api_joins_the_host_document(redis_url):
    host = Flask(__name__)
    host.config.update(
        API_TITLE="Host",
        API_VERSION="2",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api-docs",
        SECRET_KEY="host-secret",
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
    )
    api = Api(host)
    webhooks = IdmsWebhooks()

    @webhooks.task("hello")
    def hello(parameters, context):
        context.count(updated=1)

    webhooks.init_app(host, api=api)
    client = host.test_client()
    document = client.get("/api-docs/openapi.json").get_json()
    assert document["info"]["title"] == "Host"
    assert "/idms/tasks/{task_id}/jobs" in document["paths"]
    assert (
        client.get("/idms/openapi.json").status_code == 404
    )  # no second Api behind the host's back
    key = state_of(host).credentials.task_key(state_of(host).tasks["hello"])
    assert client.post(f"/idms/tasks/hello/jobs?key={key}").status_code == 202


def test_python_task_registration_errors():
    webhooks = IdmsWebhooks()
    with pytest.raises(TaskLoadError, match="URL-safe"):
        webhooks.task("not a url id")(lambda parameters, context: None)
    webhooks.task("ok")(lambda parameters, context: None)
    with pytest.raises(TaskLoadError, match="twice"):
        webhooks.task("ok")(lambda parameters, context: None)


def test_a_wrong_method_is_a_json_405_with_allow(client):
    answer = client.get("/idms/tasks/count/execute")
    assert answer.status_code == 405
    assert answer.get_json()["code"] == 405
    assert answer.headers["Allow"].split(", ").count("POST") == 1


def test_an_app_without_the_extension_says_so():
    """The one accessor of the state, and the RQ job function, name what is missing."""
    from flask import Flask

    from flask_idms_webhooks import ConfigurationError
    from flask_idms_webhooks.jobs import run_job
    from flask_idms_webhooks.state import state_of

    bare = Flask(__name__)
    with pytest.raises(ConfigurationError, match="IdmsWebhooks is not initialised on this app"):
        state_of(bare)
    with bare.app_context(), pytest.raises(ConfigurationError, match="idms-webhooks worker"):
        run_job("some-job")
