"""``make run``: a private Redis (when IDMS_WEBHOOKS_REDIS_URL is unset), one RQ worker and
gunicorn serving the example app; everything stops on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import secrets
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
from flask_idms_webhooks.state import state_of

from . import BUNDLED_DOUBLE, create_app
from .database import ensure_database

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"


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
    process = start([sys.executable, "-m", "flask_idms_webhooks.testing", "--demo",
                     "--port", str(port)], env)  # fmt: skip
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
    state = state_of(app)
    base = state.urls.base(f"http://127.0.0.1:{port}")  # already a URI
    prefix = base + state.settings.url_prefix
    print(f"\nRedis:        {'private, ' if redis_server else ''}{state.settings.redis_url}")
    print(f"Docs:         {prefix}/docs   (OpenAPI: {prefix}/openapi.json)")
    print(f"Admin token:  {env['IDMS_WEBHOOKS_ADMIN_TOKEN']}")
    if double is not None:
        print(
            f"iMIS:         the bundled iMIS double at {env['IMIS_BASE_URL']} (demo data), "
            "because IMIS_BASE_URL is unset"
        )
    else:
        print(f"iMIS:         {env['IMIS_BASE_URL']}")
    schedules = state.scheduler.views()
    for task in state.tasks.values():
        webhooks = state.urls.webhooks(base, task)
        print(f"Task {task.id}:")
        print(f"  standard webhook: {webhooks['Standard']}")
        print(f"  polling webhook:  {webhooks['Polling']}")
        if task.id in schedules:
            view = schedules[task.id]
            print(f"  schedule:         {', '.join(view['Cron'])} (UTC), "
                  f"{'enabled' if view['Enabled'] else 'disabled'}; "
                  f"Next run: {view['NextRunOn'] or '-'}")  # fmt: skip
    print(flush=True)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
