"""The task model: a task, its source query's filter rows, target, mapping and chain."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .reporting import Handler
from .schedules import Schedule

TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Prompt(StrEnum):
    REQUIRED = "Required"
    OPTIONAL = "Optional"
    NONE = "None"  # a fixed filter: callers cannot set it


class Operator(StrEnum):
    EQUAL = "Equal"
    NOT_EQUAL = "NotEqual"
    CONTAINS = "Contains"
    STARTS_WITH = "StartsWith"
    ENDS_WITH = "EndsWith"
    GREATER_THAN = "GreaterThan"
    GREATER_THAN_OR_EQUAL = "GreaterThanOrEqual"
    LESS_THAN = "LessThan"
    LESS_THAN_OR_EQUAL = "LessThanOrEqual"
    BETWEEN = "Between"  # two values
    IN = "In"  # a non-empty list


class DataType(StrEnum):
    STRING = "String"
    BYTE = "Byte"
    INT32 = "Int32"
    INT64 = "Int64"
    DECIMAL = "Decimal"
    DOUBLE = "Double"
    DATETIME = "DateTime"
    BOOLEAN = "Boolean"
    GUID = "Guid"


class Concurrency(StrEnum):
    """What a trigger does while a job of its task is queued or running."""

    PARALLEL = "parallel"  # start another
    REJECT = "reject"  # start nothing: 409, with the running job's Location
    JOIN = "join"  # follow the running job when it has the same parameters, else reject


class Action(StrEnum):
    INSERT = "Insert"
    INSERT_WITH_MATCHING = "InsertWithMatching"
    UPDATE = "Update"
    INSERT_OR_UPDATE = "InsertOrUpdate"
    DELETE = "Delete"


@dataclass(frozen=True)
class FilterRow:
    """One prompt filter of the source query, in query order."""

    business_object: str
    column: str
    operator: Operator = Operator.EQUAL
    type: DataType = DataType.STRING
    prompt: Prompt = Prompt.OPTIONAL
    default: Any = None  # the task's default ("" or None: none)
    query_default: Any = None  # the query's own default
    key: str | None = None  # explicit QueryParameters key, where column names collide

    @property
    def qualified_name(self) -> str:
        return f"{self.business_object}.{self.column}"

    @property
    def settable(self) -> bool:
        return self.prompt is not Prompt.NONE


@dataclass(frozen=True)
class Source:
    connection: str | None
    query: str
    page_size: int = 100


@dataclass(frozen=True)
class Target:
    connection: str | None
    entity: str
    action: Action
    match: Mapping[str, str] = field(default_factory=dict)
    mapping: Mapping[str, Any] = field(default_factory=dict)
    skip_if_multiple_matches: bool = False
    skip_blank_match: bool = False
    insert_only_when_no_match: bool = False


@dataclass(frozen=True)
class Passed:
    """What chained tasks receive for one of their QueryParameters keys: the parent's
    resolved value of its key ``parent``, or the constant ``value``."""

    parent: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Chain:
    on_success: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()
    #: What the children receive, by their keys; None: the parent's values for the keys
    #: they share.
    parameters: Mapping[str, Passed] | None = None


def passed_values(raw: Any) -> dict[str, Passed]:
    """``[tasks.chain] parameters`` read: ``ChildKey = "ParentKey"`` or ``ChildKey = {
    value = X }``; ``ValueError(message, key)`` names the entry at fault (no key: the
    whole table)."""
    if not isinstance(raw, Mapping):
        raise ValueError('must be a table: ChildKey = "ParentKey", or ChildKey = { value = X }')
    passed: dict[str, Passed] = {}
    for key, source in raw.items():
        if isinstance(source, str) and source:
            passed[key] = Passed(parent=source)
        elif isinstance(source, Mapping) and set(source) == {"value"}:
            passed[key] = Passed(value=source["value"])
        else:
            raise ValueError(
                f"must be the parent's key (a string) or {{ value = <constant> }}, got {source!r}",
                key,
            )
    return passed


#: Seconds before each retry of a task with ``retries`` and no ``retry_delays``.
DEFAULT_RETRY_DELAYS = (30, 300)


@dataclass(frozen=True)
class Task:
    """A task callers can start by webhook."""

    id: str
    handler: Handler
    name: str = ""
    description: str = ""
    filters: tuple[FilterRow, ...] = ()
    timeout: int | None = None  # seconds; None: IDMS_WEBHOOKS_JOB_TIMEOUT
    retry_after: int | None = None  # seconds; None: IDMS_WEBHOOKS_RETRY_AFTER
    key: str | None = None  # the webhook key as given; None: derived from the secret
    key_version: int = 1  # bump to rotate a derived key
    #: Triggers allowed, e.g. "10/minute" ("off": none); None: IDMS_WEBHOOKS_RATE_LIMIT.
    rate_limit: str | None = None
    source: Source | None = None
    target: Target | None = None
    chain: Chain = field(default_factory=Chain)
    connections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Runs after the first that a job may get when its worker died mid-run or its source
    #: or target was unreachable; only for work that is safe to repeat.
    retries: int = 0
    retry_delays: tuple[int, ...] = DEFAULT_RETRY_DELAYS  # seconds before retry 1, 2, ...
    idempotent: bool = False  # a Python task says its work is safe to repeat
    schedule: Schedule | None = None  # when it runs on its own; None: by webhook only
    concurrency: Concurrency = Concurrency.PARALLEL
    #: Its webhooks accept only requests signed per Standard Webhooks with one of these
    #: ``whsec_`` secrets (several: a rotation), on top of the task key.
    require_signature: bool = False
    signing_secrets: tuple[str, ...] = ()
    #: The secret its completion callbacks are signed with (``whsec_`` + base64); None:
    #: derived from the app's secret.
    callback_secret: str | None = None

    @property
    def one_at_a_time(self) -> bool:
        return self.concurrency is not Concurrency.PARALLEL

    def retry_delay(self, retry: int) -> int:
        """Seconds before the ``retry``-th retry (from 1): the last delay repeats."""
        delays = self.retry_delays or DEFAULT_RETRY_DELAYS
        return delays[min(retry, len(delays)) - 1]

    def signing_problem(self) -> tuple[str, str] | None:
        """(key, message) of what is wrong with the task's signing settings, if anything."""
        if not self.signing_secrets:
            if self.require_signature:
                return "signing_secrets", 'required with require_signature: ["${A_SECRET}"]'
            return None
        if not self.require_signature:
            return "signing_secrets", "given without require_signature = true"
        for index, secret in enumerate(self.signing_secrets):
            problem = webhook_secret_problem(secret)
            if problem is not None:
                return f"signing_secrets[{index}]", problem
        return None

    def retry_problem(self) -> str | None:
        """Why this task may not have ``retries``, if it may not."""
        if self.retries < 0:
            return f"must be a whole number from 0, got {self.retries!r}"
        if not self.retries:
            return None
        if self.source is not None and self.target is not None:
            if self.target.action == Action.INSERT:
                return (
                    "a plain Insert is not safe to repeat (a retry would insert the rows "
                    "again): use InsertWithMatching or InsertOrUpdate, or retries = 0"
                )
            return None
        if not self.idempotent:
            return (
                "a Python task is retried only if it says its work is safe to repeat: "
                "idempotent = true"
            )
        return None


#: How a Standard Webhooks secret starts; the rest is base64.
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
#: The secret's length the Standard Webhooks specification asks for, in bytes.
WEBHOOK_SECRET_BYTES = (24, 64)


def webhook_secret_problem(value: object) -> str | None:
    """What is wrong with a Standard Webhooks secret (a ``callback_secret``, one of the
    ``signing_secrets``), if anything."""
    if not isinstance(value, str) or not value.startswith(WEBHOOK_SECRET_PREFIX):
        return 'must be a Standard Webhooks secret: "whsec_" followed by base64'
    try:
        raw = base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return 'must be "whsec_" followed by valid base64'
    low, high = WEBHOOK_SECRET_BYTES
    if not low <= len(raw) <= high:
        return f"must hold {low} to {high} bytes (base64 after whsec_), got {len(raw)}"
    return None


def chain_errors(tasks: Mapping[str, Task]) -> tuple[str, str, str] | None:
    """(task id, key, message) of the first bad chain: an unknown task, or a cycle."""
    for task in tasks.values():
        for key, children in (
            ("chain.on_success", task.chain.on_success),
            ("chain.on_failure", task.chain.on_failure),
        ):
            for child in children:
                if child not in tasks:
                    return task.id, key, f"no task {child!r} to chain to"
    done: set[str] = set()

    def visit(task_id: str, path: list[str]) -> list[str] | None:
        if task_id in path:
            return [*path[path.index(task_id) :], task_id]
        if task_id in done:
            return None
        chain = tasks[task_id].chain
        for child in (*chain.on_success, *chain.on_failure):
            cycle = visit(child, [*path, task_id])
            if cycle:
                return cycle
        done.add(task_id)
        return None

    for task_id in tasks:
        cycle = visit(task_id, [])
        if cycle:
            return cycle[0], "chain", "chained tasks form a cycle: " + " -> ".join(cycle)
    return None
