"""What the callback tests share: a receiver on 127.0.0.1 that answers each request as
its script says (a status, a delay, a redirect) and keeps every request it got; the
settings that allow it; starting a job with a CallbackUrl, reading its delivery state,
and burst workers to run the attempts."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from standardwebhooks import Webhook

from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import ADMIN, poll_path, wait_for


@dataclass
class Received:
    """One request as the receiver got it."""

    path: str  # with its query
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """How the receiver answers one request: ``status`` after ``delay`` seconds, with
    ``headers``."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """The server; ``script`` answers the requests in turn (the last one repeats)."""

    def __init__(self, script: list[Answer], tls: ssl.SSLContext | None = None) -> None:
        self.script = script or [Answer()]
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    index = min(len(receiver.received), len(receiver.script)) - 1
                answer = receiver.script[index]
                time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the caller gave up first (a timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests read ``received``, not stderr

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.daemon = True

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def __len__(self) -> int:
        with self._lock:
            return len(self.received)


@contextmanager
def receiving(*script: Answer, tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A receiver serving while the block runs."""
    receiver = Receiver(list(script), tls)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        receiver.thread.join(5)


def self_signed(folder: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A certificate for ``name`` (its own CA) made by ``openssl``: its path (to trust)
    and a server context that presents it."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


#: Callbacks to a receiver on this machine, retried after 1 s, 2 s, ...
CALLBACKS: dict[str, Any] = {
    "IDMS_WEBHOOKS_CALLBACK_HOSTS": ["127.0.0.1"],
    "IDMS_WEBHOOKS_CALLBACK_ALLOW_HTTP": True,
    "IDMS_WEBHOOKS_CALLBACK_ALLOW_PRIVATE": True,
    "IDMS_WEBHOOKS_CALLBACK_BACKOFF": 1,
    "IDMS_WEBHOOKS_CALLBACK_TIMEOUT": 1,
}
#: What a flow's callback URL carries in its query: a credential.
FLOW_QUERY = "?api-version=2016-06-01&sp=%2Fruns%2Frun&sig=s3cr3t-flow-signature"


def start(app: Flask, url: str | None, task: str = "count", **parameters: Any) -> Any:
    state = state_of(app)
    key = state.credentials.task_key(state.tasks[task])
    body: dict[str, Any] = {"CallbackUrl": url}
    if task == "count":
        body["QueryParameters"] = {"Count": 3, **parameters}
    return app.test_client().post(f"/idms/tasks/{task}/jobs?key={key}", json=body)


def callback_path(answer: Any) -> str:
    path, _, query = poll_path(answer.headers["Location"]).partition("?")
    return f"{path}/callback?{query}"


def delivery(app: Flask, answer: Any) -> dict[str, Any]:
    got = app.test_client().get(callback_path(answer))
    assert got.status_code == 200, got.get_json()
    found: dict[str, Any] = got.get_json()
    return found


def work(app: Flask) -> None:
    """A new burst worker: it runs what is queued, after queueing what RQ's schedule has
    due (a retry), then ends."""
    make_worker(app, simple=True).work(burst=True, with_scheduler=True, logging_level="WARNING")


def work_until(app: Flask, answer: Any, *states: str, timeout: float = 30) -> dict[str, Any]:
    """Burst workers, one after another, until the callback is in one of ``states``."""

    def settled() -> dict[str, Any] | None:
        work(app)
        found = delivery(app, answer)
        return found if found["State"] in states else None

    settled_state: dict[str, Any] = wait_for(settled, timeout=timeout, interval=0.2)
    return settled_state


def secret_of(app: Flask, task: str = "count") -> str:
    document = app.test_client().get(f"/idms/tasks/{task}", headers=ADMIN).get_json()
    secret: str = document["CallbackSecret"]
    return secret


def verified(app: Flask, receiver: Receiver, index: int = 0, task: str = "count") -> Any:
    request = receiver.received[index]
    return Webhook(secret_of(app, task)).verify(request.body, request.headers)


#: The settings of CALLBACKS for a worker process (from its environment).
WORKER_CALLBACKS = {
    "IDMS_WEBHOOKS_CALLBACK_HOSTS": "127.0.0.1",
    "IDMS_WEBHOOKS_CALLBACK_ALLOW_HTTP": "true",
    "IDMS_WEBHOOKS_CALLBACK_ALLOW_PRIVATE": "true",
}


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (a forking worker's work-horse), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(child) for child in (task / "children").read_text().split())
    return found
