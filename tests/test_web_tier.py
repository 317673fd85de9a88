"""The web tier under real gunicorn with the shipped config: a malformed chunked body is
a 400, slow clients do not stall everyone, and the access log redacts keys however the
query separator is encoded."""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from flask_idms_webhooks.accesslog import RedactingLogger, redact_query
from tests.helpers import get, gunicorn


@pytest.fixture(scope="module")
def served_port(
    tmp_path_factory: pytest.TempPathFactory, redis_server: tuple[str, bool]
) -> Iterator[int]:
    """One gunicorn for the tests that only send it requests (a start costs ~0.8 s), on a
    queue of its own; a test that reads the access log starts its own."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    with gunicorn(tmp_path_factory.mktemp("gunicorn"), redis_server[0], queue) as (port, _):
        yield port


def post(port: int, path: str, timeout: float = 5.0) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library to fix them up); the parsed answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(b"zz\r\n", id="bad-size"),
        pytest.param(b"2\r\n{}XX0\r\n\r\n", id="missing-terminator"),
        pytest.param(b"2;=\r\n{}\r\n0\r\n\r\n", id="bad-extension"),
        pytest.param(b"2\r\n{}\r\n0\r\nBad Trailer\r\n\r\n", id="bad-trailer"),
    ],
)
def test_a_malformed_chunked_body_is_a_400(served_port, key, chunks):
    status, headers, body = raw_request(
        served_port,
        b"POST /idms/tasks/boom/jobs?key=" + key("boom").encode() + b" HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks,
    )
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)
    assert error["code"] == 400
    assert error["message"].startswith("The request body could not be read")


#: Half-sent requests held open at once: one fewer than the threads of one shipped worker.
SLOW_CLIENTS = 3


def test_slow_clients_do_not_stall_the_others(served_port):
    """Slowloris: requests whose headers never end, without a key. A sync worker is held
    by the first of them for its whole timeout; a threaded one answers the next caller."""
    port = served_port
    with ExitStack() as slow_clients:
        for _ in range(SLOW_CLIENTS):
            slow = slow_clients.enter_context(socket.create_connection(("127.0.0.1", port)))
            slow.sendall(b"POST /idms/tasks/boom/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        status, body = get(port, "/idms/openapi.json", timeout=5)
        unauthorized = post(port, "/idms/tasks/boom/jobs", timeout=5)
    assert status == 200
    assert json.loads(body)["openapi"]
    assert unauthorized == 401


#: A key in the URL, its ``?``, ``&``, name or ``=`` sent encoded. Werkzeug reads some of
#: them as the key (``%6Bey=``), others as part of the path; gunicorn logs them all.
ENCODED_KEY_URLS = [
    "/idms/tasks/boom/jobs%3Fkey={key}",
    "/idms/tasks/boom/jobs%3fkey={key}",
    "/idms/tasks/boom/jobs%253Fkey={key}",
    "/idms/tasks/boom/jobs?x=1%26key={key}",
    "/idms/tasks/boom/jobs?x=1%26KEY={key}&y=2",
    "/idms/tasks/boom/jobs?x=1;key={key}",
    "/idms/tasks/boom/jobs?x=1%3Bkey={key}",
    "/idms/tasks/boom/jobs?%6Bey={key}",
    "/idms/tasks/boom/jobs?key%3D{key}",
    "/idms/jobs/nope%3Ftoken={key}",
]


@pytest.mark.parametrize("url", ENCODED_KEY_URLS)
def test_redact_query_finds_keys_however_the_separator_is_encoded(url):
    line = f"POST {url.format(key='S3CRET')} HTTP/1.1"
    redacted = redact_query(line)
    assert "S3CRET" not in redacted
    assert redacted == line.replace("S3CRET", "[redacted]")


def test_redact_query_ends_a_value_at_an_encoded_separator():
    assert (
        redact_query("/t/jobs%3Fkey=S%26x=1%3Bkeyx=2") == "/t/jobs%3Fkey=[redacted]%26x=1%3Bkeyx=2"
    )
    assert redact_query("/t/jobs%3Fmonkey=1%26keys=2") == "/t/jobs%3Fmonkey=1%26keys=2"


def test_the_access_log_redacts_an_encoded_key_in_every_atom():
    environ = {  # as gunicorn presents /t/jobs%3Fkey=...: PATH_INFO decoded, no query
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/idms/tasks/t/jobs%3Fkey=SECRET1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "QUERY_STRING": "",
        "PATH_INFO": "/idms/tasks/t/jobs?key=SECRET1",
        "HTTP_REFERER": "https://h/idms/jobs/j%3Ftoken=SECRET2",
    }
    request = SimpleNamespace(headers=[])
    response = SimpleNamespace(status="404 Not Found", sent=10, headers=[])
    atoms = RedactingLogger(Config()).atoms(response, request, environ, timedelta(seconds=0.01))
    assert not [name for name, value in atoms.items() if "SECRET" in str(value)]
    assert atoms["r"] == "POST /idms/tasks/t/jobs%3Fkey=[redacted] HTTP/1.1"


def test_gunicorn_never_logs_an_encoded_key(tmp_path, redis_url, queue_name, key):
    secret = key("boom")
    with gunicorn(tmp_path, redis_url, queue_name) as (port, log):
        statuses = {url: post(port, url.format(key=secret)) for url in ENCODED_KEY_URLS}
    text = log.read_text()
    assert statuses["/idms/tasks/boom/jobs?%6Bey={key}"] == 202  # Werkzeug read the key
    assert secret not in text
    for url in ENCODED_KEY_URLS:
        assert f'"POST {url.format(key="[redacted]")} HTTP/1.1" {statuses[url]} ' in text
