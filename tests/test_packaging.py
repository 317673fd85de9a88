"""What a deployment relies on outside the app: the gunicorn config ships in the package
(``gunicorn -c python:flask_idms_webhooks.gunicorn_conf``, used by ``make run`` and by
``tests/test_gunicorn.py``), the build requires the setuptools its metadata needs, and
``make run`` fails at once, with a clear message and a non-zero exit, when its port is
taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gunicorn_config_is_a_module_of_the_package():
    from flask_idms_webhooks import gunicorn_conf

    assert gunicorn_conf.logger_class == "flask_idms_webhooks.accesslog.RedactingLogger"
    assert gunicorn_conf.worker_class == "gthread"
    assert not (ROOT / "example_app" / "gunicorn.conf.py").exists()  # one copy only


def test_the_build_requires_the_setuptools_its_license_field_needs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # an SPDX expression: setuptools 77+
    assert "setuptools>=77" in project["build-system"]["requires"]


def test_make_run_fails_fast_on_a_port_that_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PORT": str(port), "IDMS_WEBHOOKS_REDIS_URL": "redis://127.0.0.1:1/0"}
        finished = subprocess.run(
            [sys.executable, "-m", "example_app.run"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert finished.returncode == 1
    assert f"127.0.0.1:{port} is taken" in finished.stderr
    assert "Admin token" not in finished.stdout  # no banner pointing at the other server


def test_the_client_and_its_command_import_no_flask_rq_or_redis():
    """A caller's machine needs only httpx (and click and rich for the command): importing
    them loads none of the server's side, which is what makes `idms-webhooks` start fast."""
    probe = (
        "import sys, flask_idms_webhooks.call, flask_idms_webhooks.client; "
        "print(sorted(m for m in ('flask', 'rq', 'redis', 'flask_smorest', 'sqlalchemy') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"
    from flask_idms_webhooks import IdmsWebhooks, JobContext  # the root still exports them

    assert IdmsWebhooks.__name__ == "IdmsWebhooks" and JobContext.__name__ == "JobContext"
