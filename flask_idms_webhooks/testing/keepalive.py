"""The double served over kept-alive HTTP/1.1 connections (cheroot's thread-pooled WSGI
server), as a hosted iMIS behind IIS serves them: a client's pool reuses its connections,
so concurrent calls cost latency, not handshakes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cheroot import server as http_server
from cheroot import wsgi

from .state import DoubleState

#: Threads answering at once: more than any test or benchmark keeps in flight.
THREADS = 40


class KeptAliveServer:
    """``running()`` serves until its block ends; ``host`` and ``port`` are the bound
    address (``port=0`` takes a free one)."""

    def __init__(self, host: str, port: int, app: Any, state: DoubleState) -> None:
        self._server = wsgi.Server(
            (host, port),
            app,
            numthreads=THREADS,
            request_queue_size=64,
            timeout=10,
            shutdown_timeout=1,
        )
        self._server.ConnectionClass = counting_connection(state)
        self.host, self.port = host, port

    @contextmanager
    def running(self) -> Iterator[None]:
        self._server.prepare()
        self.host, self.port = self._server.bind_addr[:2]
        thread = threading.Thread(target=self._server.serve, name="imis-double")
        thread.start()
        try:
            yield
        finally:
            self._server.stop()
            thread.join()


def counting_connection(state: DoubleState) -> type[http_server.HTTPConnection]:
    class CountingConnection(http_server.HTTPConnection):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            with state.lock:
                state.traffic.connections_opened += 1

    return CountingConnection
