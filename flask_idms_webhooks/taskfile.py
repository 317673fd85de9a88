"""Loading tasks from a TOML task file (``TASKS.md``), with ``${ENV}`` expansion.

Every error names the file, the task and the key at fault, before the app serves anything.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from .config import parse_duration, parse_rate_limit
from .errors import TaskLoadError
from .iupdate.connections import (
    FROM_THE_ENVIRONMENT,
    Connections,
    check_profile,
    expand_environment,
    literal_secret,
    refuse_literal_secrets,
    resolve_sqlite_path,
)
from .iupdate.engine import IUpdate
from .model.parameters import QueryParameterSet, schedule_problem
from .model.reporting import Handler
from .model.schedules import SCHEDULE_KEYS, Schedule, read_schedule
from .model.tasks import (
    DEFAULT_RETRY_DELAYS,
    TASK_ID,
    Action,
    Chain,
    Concurrency,
    DataType,
    FilterRow,
    Operator,
    Passed,
    Prompt,
    Source,
    Target,
    Task,
    passed_values,
    webhook_secret_problem,
)

E = TypeVar("E", Prompt, Operator, DataType, Action, Concurrency)

TASK_KEYS = {
    "id", "name", "description", "key", "key_version", "timeout", "retry_after",
    "rate_limit",
    "handler", "source", "target", "chain", "retries", "retry_delays", "idempotent",
    "concurrency", "require_signature", "signing_secrets", "callback_secret", *SCHEDULE_KEYS,
}  # fmt: skip
SOURCE_KEYS = {"connection", "query", "page_size", "filters"}
TARGET_KEYS = {
    "connection", "entity", "action", "match", "mapping",
    "skip_if_multiple_matches", "skip_blank_match", "insert_only_when_no_match",
}  # fmt: skip
CHAIN_KEYS = {"on_success", "on_failure", "parameters"}
FILTER_KEYS = {
    "business_object", "column", "operator", "type", "prompt", "default", "query_default", "key",
}  # fmt: skip


class _TaskReader:
    """Reads one ``[[tasks]]`` table; ``fail`` raises with file, task and key."""

    def __init__(
        self,
        source: str,
        table: Mapping[str, Any],
        index: int,
        *,
        seconds: bool = False,
        expanded: bool = False,
    ) -> None:
        self.source = source
        self.table = table
        self.task_id = str(table.get("id") or f"#{index + 1}")
        self.seconds = seconds
        self.expanded = expanded

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

    def passed(self, chain: Mapping[str, Any]) -> dict[str, Passed] | None:
        """``[tasks.chain] parameters``: what the chained tasks receive (None: not given)."""
        if "parameters" not in chain:
            return None
        try:
            return passed_values(chain["parameters"])
        except ValueError as error:
            raise self.fail(
                error.args[0], ".".join(("chain.parameters", *error.args[1:]))
            ) from None

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
            parameters=self.passed(chain_table),
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
            concurrency=self.enum(
                Concurrency, table.get("concurrency"), "concurrency", Concurrency.PARALLEL
            ),
            require_signature=self.flag(table, "require_signature", "require_signature"),
            signing_secrets=self.secrets("signing_secrets"),
            callback_secret=self.callback_secret(),
        )
        problem = task.retry_problem()
        if problem is not None:
            raise self.fail(problem, "retries")
        for bad in (schedule_problem(task, seconds=self.seconds), task.signing_problem()):
            if bad is not None:
                raise self.fail(bad[1], bad[0])
        return task

    def secrets(self, key: str) -> tuple[str, ...]:
        """Secrets given as ``${ENV}`` references (checked before they are expanded)."""
        raw = self.table.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise self.fail('must be a list of "${ENVIRONMENT_VARIABLE}" strings', key)
        for index, item in enumerate(raw):
            if not self.expanded and literal_secret(item):
                raise self.fail(FROM_THE_ENVIRONMENT, f"{key}[{index}]")
        return tuple(raw)

    def schedule(self) -> Schedule | None:
        """The task's schedule, if it has one (``schedule`` or ``run_at``)."""
        try:
            return read_schedule(self.table)
        except ValueError as error:
            raise self.fail(*error.args) from None

    def callback_secret(self) -> str | None:
        value = self.table.get("callback_secret")
        if value is not None and (problem := webhook_secret_problem(value)):
            raise self.fail(problem, "callback_secret")
        return None if value is None else str(value)

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
    profiles = expand_environment(raw_profiles, "connections", {"source": source})
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
        if isinstance(raw, dict) and "signing_secrets" in raw:
            reader.secrets("signing_secrets")  # as written: references, not secrets
        if literal_secret(raw.get("callback_secret")):  # a signing secret, as a password
            raise reader.fail(FROM_THE_ENVIRONMENT, "callback_secret")
        expanded = expand_environment(raw, "", {"source": source, "task": reader.task_id})
        reader = _TaskReader(source, expanded, index, seconds=schedule_seconds, expanded=True)
        task = reader.task(profiles, connections)
        if task.id in seen:
            raise reader.fail("duplicate task id", "id")
        seen.add(task.id)
        tasks.append(task)
    return tasks
