"""The command line before any configuration: every ``--help`` works, a command that needs
the app says in one line what is missing, and ``instance/idms.env`` (what ``make run``
writes) supplies what the environment leaves unset."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner
from flask.cli import cli as flask_cli

from flask_idms_webhooks.cli import cli
from tests.helpers import ROOT

EXAMPLE = ["--app", "example_app:create_app"]


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))


@pytest.fixture
def unconfigured(monkeypatch, tmp_path):
    """No IDMS_WEBHOOKS_* variable, no settings file, no secret: a new user's shell."""
    for name in list(os.environ):
        if name.startswith(("IDMS_WEBHOOKS_", "FLASK_")) or name == "SECRET_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("IDMS_WEBHOOKS_ENV_FILE", str(tmp_path / "idms.env"))
    return tmp_path / "idms.env"


@pytest.fixture
def kept_environ(monkeypatch):
    """The settings file writes into os.environ: give it a copy to write into."""
    monkeypatch.setattr(os, "environ", os.environ.copy())


def test_every_command_has_help_without_any_configuration(unconfigured):
    paths = list(command_paths(cli))
    assert ("trigger",) in paths and ("jobs", "show") in paths and ("schedules", "enable") in paths
    for path in [(), *paths]:
        result = CliRunner().invoke(flask_cli, [*EXAMPLE, "idms-webhooks", *path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith("Usage: "), (path, result.output)
        assert "ADMIN_TOKEN" not in result.output and "Traceback" not in result.output


def test_the_group_lists_its_commands_in_a_fresh_process(unconfigured):
    env = {name: value for name, value in os.environ.items() if not name.startswith("IDMS_")}
    result = subprocess.run(
        [sys.executable, "-m", "flask", *EXAMPLE, "idms-webhooks", "--help"],
        cwd=unconfigured.parent, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("worker", "trigger", "jobs", "tasks", "schedules"):
        assert f"  {name} " in result.stdout
    assert result.stderr == ""


def test_a_command_without_settings_says_what_is_missing_in_one_line(unconfigured, kept_environ,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(flask_cli, [*EXAMPLE, "idms-webhooks", "tasks"])
    assert result.exit_code == 1
    assert "IDMS_WEBHOOKS_REDIS_URL is not set" in result.output
    assert "run `make run` from the project, or set the variable" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_the_settings_file_fills_in_what_the_environment_leaves_unset(
    unconfigured, kept_environ, redis_url, monkeypatch
):
    unconfigured.write_text(
        "# written by make run\n"
        f"IDMS_WEBHOOKS_REDIS_URL={redis_url}\n"
        "IDMS_WEBHOOKS_SECRET_KEY='a secret'\n"
        "IDMS_WEBHOOKS_PUBLIC_URL=http://127.0.0.1:8321\n"
    )
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(flask_cli, [*EXAMPLE, "idms-webhooks", "tasks"])
    assert result.exit_code == 0, result.output
    assert "  polling:  http://127.0.0.1:8321/idms/tasks/renew-memberships/jobs?key=" in (
        result.output
    )
    os.environ["IDMS_WEBHOOKS_PUBLIC_URL"] = "https://hooks.example"  # the environment wins
    result = CliRunner().invoke(flask_cli, [*EXAMPLE, "idms-webhooks", "tasks"])
    assert "  polling:  https://hooks.example/idms/tasks/renew-memberships/jobs?key=" in (
        result.output
    )
