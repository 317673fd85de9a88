"""Served by gunicorn with the shipped config: the access log never shows keys or tokens."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys

from flask_idms_webhooks.redis_server import free_port
from tests.helpers import ROOT, wait_for


def test_gunicorn_with_the_shipped_config_redacts_secrets(
    redis_url, queue_name, tmp_path, app, key
):
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = dict(
        os.environ,
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=queue_name,
        GUNICORN_WORKERS="1",
    )
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "example_app" / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{port}", "tests.sample_app:create_app()"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:

            def request(method: str, path: str, headers: dict[str, str] | None = None):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    connection.request(method, path, headers=headers or {})
                    response = connection.getresponse()
                    return response.status, dict(response.getheaders()), response.read()
                finally:
                    connection.close()

            def serving():
                try:
                    return request("GET", "/idms/openapi.json")[0] == 200
                except OSError:
                    return False

            wait_for(serving, timeout=30, interval=0.2)
            status, headers, body = request("POST", f"/idms/tasks/boom/jobs?key={key('boom')}")
            assert status == 202
            location = headers["Location"]
            assert location.startswith(f"http://127.0.0.1:{port}/idms/jobs/")
            token = location.rsplit("token=", 1)[1]
            assert request("GET", location.split(str(port), 1)[1])[0] == 202
            execute = "/idms/tasks/boom/execute"
            assert request("POST", execute, {"Authorization": f"Bearer {key('boom')}"})[0] == 200
            assert json.loads(body)["ExecuteId"]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(20)
    text = log.read_text()
    assert "POST /idms/tasks/boom/jobs?key=[redacted]" in text
    assert "?token=[redacted]" in text
    assert key("boom") not in text
    assert token not in text
