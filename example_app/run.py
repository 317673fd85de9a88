"""``make run``: a private Redis (when IDMS_WEBHOOKS_REDIS_URL is unset), one RQ worker and
gunicorn serving the example app; everything stops on Ctrl-C or SIGTERM.

What its processes use (the Redis URL, the secret, the admin token, the public URL, the
iMIS) is written to ``instance/idms.env`` while it runs, so that ``flask idms-webhooks ...``
in another terminal talks to the same Redis and prints the same URLs."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from flask_idms_webhooks.redis_server import PrivateRedis, free_port

from . import BUNDLED_DOUBLE, create_app, instance_path
from .banner import banner
from .database import ensure_database

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = instance_path()
#: Read by ``flask idms-webhooks ...`` (the environment wins); removed when make run stops.
ENV_FILE = INSTANCE / "idms.env"
#: What the processes use, written to ENV_FILE: the extension's settings (its Redis, queue,
#: secret, admin token, public URL...), the iMIS the task file names, the example's own.
SHARED = ("IDMS_WEBHOOKS_", "IMIS_", "EXAMPLE_")
#: The bundled iMIS double's delay per call (s): a distant iMIS, so that a sync of its
#: 270 active contacts lasts long enough to be watched (EXAMPLE_IMIS_LATENCY to change).
DOUBLE_LATENCY = "0.06"


def secret_key() -> str:
    """Created once, before gunicorn forks, so every process signs with the same secret."""
    path = INSTANCE / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: only this launcher decides when and how a child stops.
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)


def stop(process: subprocess.Popen[bytes], name: str, grace: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
        return
    except subprocess.TimeoutExpired:
        print(f"{name} still busy after {grace:.0f} s: stopping it harder", flush=True)
    process.send_signal(signal.SIGTERM)  # a second SIGTERM: RQ's cold shutdown
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_double(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """The bundled iMIS double with its demo data, on a free loopback port."""
    port = free_port()
    latency = env.get("EXAMPLE_IMIS_LATENCY", DOUBLE_LATENCY)
    process = start([sys.executable, "-m", "flask_idms_webhooks.testing", "--demo",
                     "--port", str(port), "--latency", latency], env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, url
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    stop(process, "iMIS double", 5)
    raise RuntimeError("the bundled iMIS double did not start")


def port_taken(port: str) -> str | None:
    """Why 127.0.0.1:``port`` cannot be served (taken, or not a port), else None: checked
    before anything starts, so a busy port never prints a banner for another server."""
    try:
        number = int(port)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", number))
    except (ValueError, OverflowError):
        return f"PORT={port!r} is not a port number"
    except OSError as error:
        return f"127.0.0.1:{port} is taken ({error.strerror}): stop what serves there, or set PORT"
    return None


def write_env_file(env: dict[str, str]) -> None:
    """What the processes use, for the command line (owner-only: it holds secrets)."""
    lines = [
        "# Written by `make run` while it runs: what its processes use. The `flask",
        "# idms-webhooks` commands read it for what the environment leaves unset.",
    ]
    lines += [
        f"{name}={shlex.quote(value)}"
        for name, value in sorted(env.items())
        if name.startswith(SHARED) and name != "IDMS_WEBHOOKS_ENV_FILE" and value
    ]
    ENV_FILE.unlink(missing_ok=True)
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.write_text("\n".join(lines) + "\n")


def main() -> int:
    problem = port_taken(os.environ.get("PORT", "8000"))
    if problem is not None:
        print(f"make run: {problem}", file=sys.stderr)
        return 1
    INSTANCE.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("IDMS_WEBHOOKS_SECRET_KEY", secret_key())
    if not env.get("IDMS_WEBHOOKS_ADMIN_TOKEN"):
        env["IDMS_WEBHOOKS_ADMIN_TOKEN"] = secrets.token_urlsafe(24)
    port = env.get("PORT", "8000")
    env.setdefault("IDMS_WEBHOOKS_PUBLIC_URL", f"http://127.0.0.1:{port}")
    redis_server = None
    if not env.get("IDMS_WEBHOOKS_REDIS_URL"):
        redis_server = PrivateRedis(INSTANCE / "redis", unix_socket=True, persistent=True).start()
        env["IDMS_WEBHOOKS_REDIS_URL"] = redis_server.url
    double = None
    if not env.get("IMIS_BASE_URL"):
        double, env["IMIS_BASE_URL"] = start_double(env)
        env.setdefault("IMIS_USERNAME", BUNDLED_DOUBLE["IMIS_USERNAME"])
        env.setdefault("IMIS_PASSWORD", BUNDLED_DOUBLE["IMIS_PASSWORD"])
    os.environ.update(env)
    ensure_database(INSTANCE / "members.db")

    app = create_app()
    write_env_file(env)
    print(banner(app, ROOT, ENV_FILE, bundled_double=double is not None), flush=True)

    python = sys.executable
    worker = start(
        [python, "-m", "flask", "--app", "example_app:create_app", "idms-webhooks", "worker"], env
    )
    # gunicorn's processes count their per-process metrics in files here, so that a scrape
    # of any of them answers all of them (prometheus-client's multiprocess mode).
    metrics_dir = INSTANCE / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    server = start(
        [python, "-m", "gunicorn", "-c", "python:flask_idms_webhooks.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", "example_app:create_app()"],
        {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )  # fmt: skip

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not done.wait(0.5):
            if server.poll() is not None or worker.poll() is not None:
                print("a child process ended: stopping everything", flush=True)
                break
    finally:
        print("stopping gunicorn, the worker and Redis ...", flush=True)
        stop(server, "gunicorn", 10)
        stop(worker, "worker", 10)
        if double is not None:
            stop(double, "iMIS double", 5)
        if redis_server is not None:
            redis_server.stop()
        ENV_FILE.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
