"""Engine task files: every mistake is a load error naming file, task and key."""

from __future__ import annotations

import pytest

from flask_idms_webhooks import TaskLoadError
from flask_idms_webhooks.iupdate.connections import Connections, resolve_sqlite_path
from flask_idms_webhooks.iupdate.engine import IUpdate
from flask_idms_webhooks.taskfile import load_task_file

GOOD = """
[connections.db]
kind = "sql"
url = "sqlite:///members.db"

[[tasks]]
id = "t"
[tasks.source]
connection = "db"
query = "SELECT id, email FROM member"
{source}
[tasks.target]
connection = "db"
entity = "member"
action = "Update"
match = {{ id = "id" }}
{target}
[tasks.target.mapping]
email = "email"
{mapping}
[tasks.chain]
{chain}
"""


def load(tmp_path, source="", target="", mapping="", chain="", connection=""):
    path = tmp_path / "tasks.toml"
    text = GOOD.format(source=source, target=target, mapping=mapping, chain=chain)
    path.write_text(
        text.replace('url = "sqlite:///members.db"', 'url = "sqlite:///members.db"\n' + connection)
    )
    return path, load_task_file(path, Connections())


def test_a_good_engine_task_loads_and_resolves_its_sqlite_path(tmp_path):
    _, (task,) = load(tmp_path)
    assert task.target.match == {"id": "id"}
    assert task.connections["db"]["url"] == f"sqlite:///{tmp_path / 'members.db'}"


def test_an_engine_task_runs_over_the_connections_it_was_loaded_with(tmp_path):
    path, _ = load(tmp_path)
    connections = Connections()
    (task,) = load_task_file(path, connections)
    assert isinstance(task.handler, IUpdate)
    assert task.handler.connections is connections
    (again,) = load_task_file(path, Connections())  # another app's load: its own
    assert again.handler.connections is not connections


@pytest.mark.parametrize(
    ("part", "text", "key"),
    [
        ("source", "pagesize = 10", "source.pagesize"),
        ("source", 'page_size = "abc"', "source.page_size"),
        ("source", "page_size = 0", "source.page_size"),
        ("target", 'skip_blank_match = "false"', "target.skip_blank_match"),
        ("target", "skip_if_multiple = true", "target.skip_if_multiple"),
        ("mapping", "Dues = 0", "target.mapping.Dues"),
        ("mapping", 'Dues = { column = "x" }', "target.mapping.Dues"),
        ("chain", 'on_success = "x"', "chain.on_success"),
        ("chain", 'on_succes = ["x"]', "chain.on_succes"),
        ("connection", "timeout = -1", "connections.db.timeout"),
        ("connection", 'password = "x"', "connections.db.password"),
    ],
)
def test_a_mistake_names_its_key(tmp_path, part, text, key):
    with pytest.raises(TaskLoadError) as raised:
        load(tmp_path, **{part: text})
    assert raised.value.key == key
    assert raised.value.task in ("t", "")
    assert str(tmp_path / "tasks.toml") in str(raised.value)


def test_an_action_other_than_insert_needs_a_match(tmp_path):
    path = tmp_path / "tasks.toml"
    path.write_text(
        GOOD.format(source="", target="", mapping="", chain="").replace('match = { id = "id" }', "")
    )
    with pytest.raises(TaskLoadError) as raised:
        load_task_file(path, Connections())
    assert raised.value.key == "target.match" and "Update needs a match rule" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite://", "sqlite://"),
        ("sqlite:////abs/m.db", "sqlite:////abs/m.db"),
        ("sqlite+pysqlite:///rel/m.db", "sqlite+pysqlite:////base/rel/m.db"),
        ("sqlite:///rel.db", "sqlite:////base/rel.db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ],
)
def test_relative_sqlite_paths_resolve_against_the_task_file(url, expected):
    from pathlib import Path

    assert resolve_sqlite_path(url, Path("/base")) == expected


@pytest.mark.parametrize(
    ("profile", "key"),
    [
        ('kind = "imis"\nbase_url = "http://x"\nusername = "u"\npassword = "hunter2"', "password"),
        ('kind = "sql"\nurl = "postgresql://u:hunter2@db/x"', "url"),
    ],
)
def test_credentials_written_in_the_file_are_refused(tmp_path, monkeypatch, profile, key):
    path = tmp_path / "tasks.toml"
    path.write_text(f"[connections.c]\n{profile}\n")
    with pytest.raises(TaskLoadError) as raised:
        load_task_file(path, Connections())
    assert raised.value.key == f"connections.c.{key}"
    assert "hunter2" not in str(raised.value)
    monkeypatch.setenv("SECRET", "hunter2")
    path.write_text(f"[connections.c]\n{profile.replace('hunter2', '${SECRET}')}\n")
    assert load_task_file(path, Connections()) == []
