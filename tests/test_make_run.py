"""``make run`` as a new user meets it: the banner's walk-through commands work as
printed, against the settings it writes to ``instance/idms.env`` for the command line."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import uuid

import httpx
import pytest
from dotenv import dotenv_values

from flask_idms_webhooks.redis_server import free_port
from tests.helpers import ROOT, wait_for

#: The variables of the product, its iMIS and its example: none in a new user's shell.
OURS = ("IDMS_", "IMIS_", "EXAMPLE_")


@pytest.fixture
def served(tmp_path, redis_url):
    """``python -m example_app.run`` (what ``make run`` runs) in an instance folder of
    its own, on the suite's Redis (a queue of its own), with a fast iMIS double."""
    port = free_port()
    # A new user's shell: no settings (other tests' example apps leave IMIS_* in ours).
    env = {name: value for name, value in os.environ.items() if not name.startswith(OURS)}
    env.update(
        PORT=str(port),
        EXAMPLE_INSTANCE_PATH=str(tmp_path / "instance"),
        EXAMPLE_IMIS_LATENCY="0.005",
        IDMS_WEBHOOKS_REDIS_URL=redis_url,
        IDMS_WEBHOOKS_QUEUE_NAME=f"make-run-{uuid.uuid4().hex[:8]}",
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "run.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "example_app.run"], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    ready = f"http://127.0.0.1:{port}/idms/ready"

    def serving() -> bool:
        try:
            return httpx.get(ready, timeout=1).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    try:
        wait_for(serving, timeout=60, interval=0.2)
        assert process.poll() is None, (tmp_path / "run.log").read_text()
        yield process, (tmp_path / "run.log"), tmp_path / "instance" / "idms.env", env
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def banner_line(log_text: str, part: str) -> str:
    (line,) = [line.strip() for line in log_text.splitlines() if part in line]
    return line


def test_the_printed_commands_work_as_printed(served):
    process, log, env_file, env = served
    text = log.read_text()
    assert f"Settings:     {env_file}" in text
    assert "the bundled iMIS double at http://127.0.0.1:" in text
    settings = dotenv_values(env_file)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # it holds the secrets
    assert settings["IDMS_WEBHOOKS_REDIS_URL"] == env["IDMS_WEBHOOKS_REDIS_URL"]
    assert settings["IDMS_WEBHOOKS_PUBLIC_URL"] == f"http://127.0.0.1:{env['PORT']}"
    assert settings["IDMS_WEBHOOKS_ADMIN_TOKEN"] in text
    shell = {name: value for name, value in env.items() if not name.startswith(OURS)}
    shell.pop("PORT")  # a second terminal: nothing set but what the file says
    trigger = banner_line(text, "idms-webhooks trigger sync-imis-dues --wait")
    assert trigger.startswith(f"IDMS_WEBHOOKS_ENV_FILE={env_file} ")  # not in ./instance
    done = subprocess.run(["bash", "-c", trigger], cwd=ROOT, env=shell, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"http://127.0.0.1:{env['PORT']}/idms/jobs/" in done.stderr
    assert "│ Status    │ succeeded │" in done.stdout and "│ Inserted  │       270 │" in done.stdout
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    assert process.returncode == 0
    assert not env_file.exists()  # its Redis and token are gone with it
