"""Loading tasks from a TOML task file (``TASKS.md``), with ``${ENV}`` expansion.

Every error names the file, the task and the key at fault, before the app serves anything.
"""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from .config import parse_duration
from .errors import TaskLoadError
from .iupdate.connections import check_profile
from .iupdate.engine import run_iupdate
from .parameters import QueryParameterSet
from .tasks import (
    TASK_ID,
    Action,
    Chain,
    DataType,
    FilterRow,
    Handler,
    Operator,
    Prompt,
    Source,
    Target,
    Task,
)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
E = TypeVar("E", Prompt, Operator, DataType, Action)

TASK_KEYS = {
    "id", "name", "description", "key", "key_version", "timeout", "retry_after",
    "handler", "source", "target", "chain",
}  # fmt: skip
FILTER_KEYS = {
    "business_object", "column", "operator", "type", "prompt", "default", "query_default", "key",
}  # fmt: skip


def _expand(value: Any, path: str, where: dict[str, str]) -> Any:
    """Replace ``${NAME}`` by the environment variable NAME in every string, recursively."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise TaskLoadError(f"environment variable {name} is not set", key=path, **where)
            return os.environ[name]

        return _ENV.sub(substitute, value)
    if isinstance(value, list):
        return [_expand(item, f"{path}[{i}]", where) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else k, where) for k, v in value.items()}
    return value


class _TaskReader:
    """Reads one ``[[tasks]]`` table; ``fail`` raises with file, task and key."""

    def __init__(self, source: str, table: Mapping[str, Any], index: int) -> None:
        self.source = source
        self.table = table
        self.task_id = str(table.get("id") or f"#{index + 1}")

    def fail(self, message: str, key: str) -> TaskLoadError:
        return TaskLoadError(message, source=self.source, task=self.task_id, key=key)

    def enum(self, cls: type[E], value: Any, key: str, default: E) -> E:
        if value is None:
            return default
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(member.value for member in cls)
            raise self.fail(f"{value!r} is not one of {valid}", key) from None

    def unknown(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for name in table:
            if name not in allowed:
                raise self.fail(f"unknown key (valid: {', '.join(sorted(allowed))})", prefix + name)

    def filter_row(self, raw: Any, index: int) -> FilterRow:
        prefix = f"source.filters[{index}]."
        if not isinstance(raw, dict):
            raise self.fail("must be a table", prefix.rstrip("."))
        self.unknown(raw, FILTER_KEYS, prefix)
        for required in ("business_object", "column"):
            if not isinstance(raw.get(required), str) or not raw[required]:
                raise self.fail("is required (a non-empty string)", prefix + required)
        return FilterRow(
            business_object=raw["business_object"],
            column=raw["column"],
            operator=self.enum(Operator, raw.get("operator"), prefix + "operator", Operator.EQUAL),
            type=self.enum(DataType, raw.get("type"), prefix + "type", DataType.STRING),
            prompt=self.enum(Prompt, raw.get("prompt"), prefix + "prompt", Prompt.OPTIONAL),
            default=raw.get("default"),
            query_default=raw.get("query_default"),
            key=raw.get("key"),
        )

    def handler(self) -> Handler | None:
        path = self.table.get("handler")
        if path is None:
            return None
        module_name, _, attr = str(path).partition(":")
        try:
            handler = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as error:
            raise self.fail(
                f"cannot import {path!r} ('module:function'): {error}", "handler"
            ) from None
        if not callable(handler):
            raise self.fail(f"{path!r} is not callable", "handler")
        return handler  # type: ignore[no-any-return]

    def task(self, connections: Mapping[str, Mapping[str, Any]]) -> Task:
        table = self.table
        self.unknown(table, TASK_KEYS, "")
        if not isinstance(table.get("id"), str) or not TASK_ID.match(table["id"]):
            raise self.fail("is required: letters, digits, '.', '_' or '-' (URL-safe)", "id")
        source_table = table.get("source") or {}
        filters = tuple(
            self.filter_row(raw, i) for i, raw in enumerate(source_table.get("filters") or [])
        )
        source = None
        if "query" in source_table:
            source = Source(
                connection=source_table.get("connection"),
                query=str(source_table["query"]),
                page_size=int(source_table.get("page_size", 100)),
            )
        target = None
        if target_table := table.get("target"):
            target = Target(
                connection=target_table.get("connection"),
                entity=str(target_table.get("entity", "")),
                action=self.enum(
                    Action, target_table.get("action"), "target.action", Action.UPDATE
                ),
                match=dict(target_table.get("match") or {}),
                mapping=dict(target_table.get("mapping") or {}),
                skip_if_multiple_matches=bool(target_table.get("skip_if_multiple_matches", False)),
                skip_blank_match=bool(target_table.get("skip_blank_match", False)),
                insert_only_when_no_match=bool(
                    target_table.get("insert_only_when_no_match", False)
                ),
            )
        for part in (source, target):
            if part and part.connection and part.connection not in connections:
                raise self.fail(f"no [connections.{part.connection}] in the file", "connection")
        chain_table = table.get("chain") or {}
        handler = self.handler()
        if handler is None:
            if source is None or target is None:
                raise self.fail(
                    "a task needs a [tasks.source] query and a [tasks.target] (run by the "
                    'iUpdate engine), or a `handler = "module:function"`',
                    "source" if source is None else "target",
                )
            for part, key in ((source, "source.connection"), (target, "target.connection")):
                if not part.connection:
                    raise self.fail("is required: the name of a [connections.NAME]", key)
            if not target.entity:
                raise self.fail("is required: the business object or table", "target.entity")
            handler = run_iupdate
        try:
            task = Task(
                id=table["id"],
                handler=handler,
                name=str(table.get("name", table["id"])),
                description=str(table.get("description", "")),
                filters=filters,
                timeout=self.duration("timeout"),
                retry_after=self.duration("retry_after"),
                key=table.get("key") or None,
                key_version=int(table.get("key_version", 1)),
                source=source,
                target=target,
                chain=Chain(
                    on_success=tuple(chain_table.get("on_success") or ()),
                    on_failure=tuple(chain_table.get("on_failure") or ()),
                ),
                connections=connections,
            )
            QueryParameterSet(filters)
        except TaskLoadError as error:
            raise self.fail(error.detail, error.key or "source.filters") from None
        except (TypeError, ValueError) as error:
            raise self.fail(str(error), "") from None
        return task

    def duration(self, key: str) -> int | None:
        if key not in self.table:
            return None
        try:
            return parse_duration(self.table[key])
        except ValueError as error:
            raise self.fail(str(error), key) from None


def load_task_file(path: str | os.PathLike[str]) -> list[Task]:
    """Read every task of a TOML task file."""
    source = str(path)
    try:
        with Path(path).open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise TaskLoadError(f"cannot read: {error.strerror}", source=source) from None
    except tomllib.TOMLDecodeError as error:
        raise TaskLoadError(f"not valid TOML: {error}", source=source) from None
    connections = _expand(document.get("connections") or {}, "connections", {"source": source})
    base = Path(path).resolve().parent
    if not isinstance(connections, dict):
        raise TaskLoadError("`connections` must be a table", source=source, key="connections")
    for name, profile in connections.items():
        try:
            check_profile(name, profile)
        except TaskLoadError as error:
            raise TaskLoadError(error.detail, source=source, key=error.key) from None
        url = profile.get("url", "")
        if (
            isinstance(url, str)
            and url.startswith("sqlite:///")
            and not url.startswith("sqlite:////")
        ):
            profile["url"] = "sqlite:///" + str(base / url.removeprefix("sqlite:///"))
    tasks: list[Task] = []
    seen: set[str] = set()
    raw_tasks = document.get("tasks") or []
    if not isinstance(raw_tasks, list):
        raise TaskLoadError("`tasks` must be an array of tables ([[tasks]])", source=source)
    for index, raw in enumerate(raw_tasks):
        reader = _TaskReader(source, raw, index)
        expanded = _expand(raw, "", {"source": source, "task": reader.task_id})
        task = _TaskReader(source, expanded, index).task(connections)
        if task.id in seen:
            raise reader.fail("duplicate task id", "id")
        seen.add(task.id)
        tasks.append(task)
    return tasks
