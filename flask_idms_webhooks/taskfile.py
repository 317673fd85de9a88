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

from .config import parse_duration, parse_rate_limit
from .errors import TaskLoadError
from .iupdate.connections import (
    ENV_REFERENCE,
    Connections,
    check_profile,
    refuse_literal_secrets,
    resolve_sqlite_path,
)
from .iupdate.engine import IUpdate
from .model.parameters import QueryParameterSet, schedule_problem
from .model.reporting import Handler
from .model.schedules import CatchUp, Schedule, parse_utc
from .model.tasks import (
    DEFAULT_RETRY_DELAYS,
    TASK_ID,
    Action,
    Chain,
    DataType,
    FilterRow,
    Operator,
    Prompt,
    Source,
    Target,
    Task,
)

SCHEDULE_KEYS = (
    "schedule", "run_at", "schedule_parameters", "enabled", "max_failures", "catch_up",
)  # fmt: skip
_ENV = ENV_REFERENCE
E = TypeVar("E", Prompt, Operator, DataType, Action, CatchUp)

TASK_KEYS = {
    "id", "name", "description", "key", "key_version", "timeout", "retry_after",
    "rate_limit",
    "handler", "source", "target", "chain", "retries", "retry_delays", "idempotent",
    *SCHEDULE_KEYS,
}  # fmt: skip
SOURCE_KEYS = {"connection", "query", "page_size", "filters"}
TARGET_KEYS = {
    "connection", "entity", "action", "match", "mapping",
    "skip_if_multiple_matches", "skip_blank_match", "insert_only_when_no_match",
}  # fmt: skip
CHAIN_KEYS = {"on_success", "on_failure"}
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

    def __init__(
        self, source: str, table: Mapping[str, Any], index: int, *, seconds: bool = False
    ) -> None:
        self.source = source
        self.table = table
        self.task_id = str(table.get("id") or f"#{index + 1}")
        self.seconds = seconds

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
        task_handler: Handler = handler
        return task_handler

    def table_at(self, key: str, allowed: set[str]) -> dict[str, Any]:
        value = self.table.get(key) or {}
        if not isinstance(value, dict):
            raise self.fail("must be a table", key)
        self.unknown(value, allowed, key + ".")
        return value

    def flag(self, table: Mapping[str, Any], name: str, key: str) -> bool:
        value = table.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(f"must be true or false, got {value!r}", key)
        return value

    def names(self, table: Mapping[str, Any], name: str, key: str) -> tuple[str, ...]:
        value = table.get(name) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail("must be an array of task ids", key)
        return tuple(value)

    def read_source(
        self, connections: Mapping[str, Any]
    ) -> tuple[Source | None, tuple[FilterRow, ...]]:
        table = self.table_at("source", SOURCE_KEYS)
        filters = tuple(self.filter_row(raw, i) for i, raw in enumerate(table.get("filters") or []))
        if "query" not in table:
            return None, filters
        page_size = table.get("page_size", 100)
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 0 < page_size <= 10_000
        ):
            raise self.fail(
                f"must be a whole number from 1 to 10000, got {page_size!r}", "source.page_size"
            )
        source = Source(
            connection=table.get("connection"), query=str(table["query"]), page_size=page_size
        )
        self.known_connection(source.connection, connections, "source.connection")
        return source, filters

    def read_target(self, connections: Mapping[str, Any]) -> Target | None:
        table = self.table_at("target", TARGET_KEYS)
        if not table:
            return None
        match = table.get("match") or {}
        if not isinstance(match, dict) or not all(isinstance(v, str) for v in match.values()):
            raise self.fail("must be a table of target field = source column", "target.match")
        mapping = table.get("mapping") or {}
        if not isinstance(mapping, dict):
            raise self.fail("must be a table", "target.mapping")
        for field, source in mapping.items():
            constant = isinstance(source, dict) and set(source) == {"value"}
            if not (isinstance(source, str) or constant):
                raise self.fail(
                    "must be a source column name, or { value = <constant> }",
                    f"target.mapping.{field}",
                )
        action = self.enum(Action, table.get("action"), "target.action", Action.UPDATE)
        if action is not Action.INSERT and not match:
            raise self.fail(
                f"{action} needs a match rule: target field = source column", "target.match"
            )
        target = Target(
            connection=table.get("connection"),
            entity=str(table.get("entity", "")),
            action=action,
            match=match,
            mapping=mapping,
            skip_if_multiple_matches=self.flag(
                table, "skip_if_multiple_matches", "target.skip_if_multiple_matches"
            ),
            skip_blank_match=self.flag(table, "skip_blank_match", "target.skip_blank_match"),
            insert_only_when_no_match=self.flag(
                table, "insert_only_when_no_match", "target.insert_only_when_no_match"
            ),
        )
        self.known_connection(target.connection, connections, "target.connection")
        return target

    def known_connection(self, name: str | None, connections: Mapping[str, Any], key: str) -> None:
        if name is not None and name not in connections:
            raise self.fail(f"no [connections.{name}] in the file", key)

    def task(self, connections: Mapping[str, Mapping[str, Any]], made: Connections) -> Task:
        table = self.table
        self.unknown(table, TASK_KEYS, "")
        if not isinstance(table.get("id"), str) or not TASK_ID.match(table["id"]):
            raise self.fail("is required: letters, digits, '.', '_' or '-' (URL-safe)", "id")
        source, filters = self.read_source(connections)
        target = self.read_target(connections)
        chain_table = self.table_at("chain", CHAIN_KEYS)
        chain = Chain(
            on_success=self.names(chain_table, "on_success", "chain.on_success"),
            on_failure=self.names(chain_table, "on_failure", "chain.on_failure"),
        )
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
            handler = IUpdate(source, target, filters, connections, made)
        key_version = table.get("key_version", 1)
        if isinstance(key_version, bool) or not isinstance(key_version, int) or key_version < 1:
            raise self.fail(f"must be a whole number from 1, got {key_version!r}", "key_version")
        try:
            QueryParameterSet(filters)
        except TaskLoadError as error:
            raise self.fail(error.detail, error.key or "source.filters") from None
        retries = table.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise self.fail(f"must be a whole number from 0, got {retries!r}", "retries")
        task = Task(
            id=table["id"],
            handler=handler,
            name=str(table.get("name", table["id"])),
            description=str(table.get("description", "")),
            filters=filters,
            timeout=self.duration("timeout"),
            retry_after=self.duration("retry_after"),
            key=table.get("key") or None,
            key_version=key_version,
            rate_limit=self.rate_limit(),
            source=source,
            target=target,
            chain=chain,
            connections=connections,
            retries=retries,
            retry_delays=self.durations("retry_delays") or DEFAULT_RETRY_DELAYS,
            idempotent=self.flag(table, "idempotent", "idempotent"),
            schedule=self.schedule(),
        )
        problem = task.retry_problem()
        if problem is not None:
            raise self.fail(problem, "retries")
        bad = schedule_problem(task, seconds=self.seconds)
        if bad is not None:
            raise self.fail(bad[1], bad[0])
        return task

    def schedule(self) -> Schedule | None:
        """The task's schedule, if it has one (``schedule`` or ``run_at``)."""
        table = self.table
        given = [key for key in SCHEDULE_KEYS if key in table]
        if "schedule" not in table and "run_at" not in table:
            if given:
                raise self.fail("needs a `schedule` (cron) or a `run_at` to apply to", given[0])
            return None
        cron = table.get("schedule", [])
        cron = [cron] if isinstance(cron, str) else cron
        if not isinstance(cron, list) or ("schedule" in table and not cron):
            raise self.fail('must be a cron expression or a list of them, e.g. "0 2 * * *"',
                            "schedule")  # fmt: skip
        run_at = None
        if "run_at" in table:
            try:
                run_at = parse_utc(table["run_at"])
            except ValueError as error:
                raise self.fail(f"{error} (e.g. 2026-12-24T02:00:00Z)", "run_at") from None
        parameters = table.get("schedule_parameters", {})
        if not isinstance(parameters, dict):
            raise self.fail("must be a table of QueryParameters", "schedule_parameters")
        max_failures = table.get("max_failures", 0)
        if isinstance(max_failures, bool) or not isinstance(max_failures, int):
            raise self.fail(f"must be a whole number from 0, got {max_failures!r}", "max_failures")
        return Schedule(
            cron=tuple(cron),
            run_at=run_at,
            parameters=parameters,
            enabled=self.flag_or(table, "enabled", True),
            max_failures=max_failures,
            catch_up=self.enum(CatchUp, table.get("catch_up"), "catch_up", CatchUp.LATEST),
        )

    def flag_or(self, table: Mapping[str, Any], name: str, default: bool) -> bool:
        return self.flag(table, name, name) if name in table else default

    def durations(self, key: str) -> tuple[int, ...]:
        raw = self.table.get(key, [])
        if not isinstance(raw, list) or (not raw and key in self.table):
            raise self.fail('must be a list of durations, e.g. ["30s", "5m"]', key)
        try:
            return tuple(parse_duration(item) for item in raw)
        except ValueError as error:
            raise self.fail(str(error), key) from None

    def rate_limit(self) -> str | None:
        """The task's own ``rate_limit`` (flask-limiter's notation), checked here."""
        if "rate_limit" not in self.table:
            return None
        value = self.table["rate_limit"]
        try:
            parse_rate_limit(value)
        except ValueError as error:
            raise self.fail(str(error), "rate_limit") from None
        return str(value)

    def duration(self, key: str) -> int | None:
        if key not in self.table:
            return None
        try:
            return parse_duration(self.table[key])
        except ValueError as error:
            raise self.fail(str(error), key) from None


def load_task_file(
    path: str | os.PathLike[str], connections: Connections, *, schedule_seconds: bool = False
) -> list[Task]:
    """Read every task of a TOML task file; its engine tasks connect through
    ``connections`` (the app's). ``schedule_seconds``: accept 6-field cron expressions."""
    source = str(path)
    try:
        with Path(path).open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise TaskLoadError(f"cannot read: {error.strerror}", source=source) from None
    except tomllib.TOMLDecodeError as error:
        raise TaskLoadError(f"not valid TOML: {error}", source=source) from None
    raw_profiles = document.get("connections") or {}
    for name, profile in raw_profiles.items() if isinstance(raw_profiles, dict) else ():
        refuse_literal_secrets(name, profile, source)
    profiles = _expand(raw_profiles, "connections", {"source": source})
    base = Path(path).resolve().parent
    if not isinstance(profiles, dict):
        raise TaskLoadError("`connections` must be a table", source=source, key="connections")
    for name, profile in profiles.items():
        try:
            check_profile(name, profile)
        except TaskLoadError as error:
            raise TaskLoadError(error.detail, source=source, key=error.key) from None
        if profile["kind"] == "sql":
            profile["url"] = resolve_sqlite_path(profile["url"], base)
    tasks: list[Task] = []
    seen: set[str] = set()
    raw_tasks = document.get("tasks") or []
    if not isinstance(raw_tasks, list):
        raise TaskLoadError("`tasks` must be an array of tables ([[tasks]])", source=source)
    for index, raw in enumerate(raw_tasks):
        reader = _TaskReader(source, raw, index)
        expanded = _expand(raw, "", {"source": source, "task": reader.task_id})
        reader = _TaskReader(source, expanded, index, seconds=schedule_seconds)
        task = reader.task(profiles, connections)
        if task.id in seen:
            raise reader.fail("duplicate task id", "id")
        seen.add(task.id)
        tasks.append(task)
    return tasks
