"""Served by gunicorn with the shipped config: the access log never shows keys or tokens."""

from __future__ import annotations

import http.client
import json

from tests.helpers import gunicorn


def test_gunicorn_with_the_shipped_config_redacts_secrets(
    redis_url, queue_name, tmp_path, app, key
):
    with gunicorn(tmp_path, redis_url, queue_name) as (port, log):

        def request(method: str, path: str, headers: dict[str, str] | None = None):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request(method, path, headers=headers or {})
                response = connection.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            finally:
                connection.close()

        status, headers, body = request("POST", f"/idms/tasks/boom/jobs?key={key('boom')}")
        assert status == 202
        location = headers["Location"]
        assert location.startswith(f"http://127.0.0.1:{port}/idms/jobs/")
        token = location.rsplit("token=", 1)[1]
        assert request("GET", location.split(str(port), 1)[1])[0] == 202
        execute = "/idms/tasks/boom/execute"
        assert request("POST", execute, {"Authorization": f"Bearer {key('boom')}"})[0] == 200
        assert json.loads(body)["ExecuteId"]
    text = log.read_text()
    assert "POST /idms/tasks/boom/jobs?key=[redacted]" in text
    assert "?token=[redacted]" in text
    assert key("boom") not in text
    assert token not in text
