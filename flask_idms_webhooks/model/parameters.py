"""QueryParameters: the per-task marshmallow schema, keys, and the default fallback chain.

A caller's value wins; ``null`` or ``""`` falls back to the task's default, then to the
query's own default. Each resolved value carries where it came from (its provenance).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple, TypedDict

from marshmallow import ValidationError, fields, validate

from ..errors import ParameterError, TaskLoadError
from .tasks import DataType, FilterRow, Operator, Prompt, Task

MAX_LIST_LENGTH = 1000
MAX_STRING_LENGTH = 4000

REQUEST = "request"
TASK_DEFAULT = "task default"
QUERY_DEFAULT = "query default"
SCHEDULE = "schedule"  # a scheduled run's schedule_parameters
CHAIN = "chain"  # a value passed on by the job a chained one follows


class _DateTime(fields.Field[str]):
    """An ISO 8601 date or date-time, kept as its ISO string (JSON-safe for RQ)."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 date or date-time."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or len(value) > 64:
            raise self.make_error("invalid")
        try:
            if len(value) == 10:
                return dt.date.fromisoformat(value).isoformat()
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
        except ValueError:
            raise self.make_error("invalid") from None


def _scalar_field(data_type: DataType) -> fields.Field[Any]:
    match data_type:
        case DataType.STRING:
            return fields.String(validate=validate.Length(max=MAX_STRING_LENGTH))
        case DataType.BYTE | DataType.INT32 | DataType.INT64:
            return fields.Integer(strict=True, validate=validate.Range(*INTEGER_RANGES[data_type]))
        case DataType.DECIMAL:
            return fields.Decimal(allow_nan=False)
        case DataType.DOUBLE:
            return fields.Float(allow_nan=False)
        case DataType.DATETIME:
            return _DateTime()
        case DataType.BOOLEAN:
            return fields.Boolean()
        case DataType.GUID:
            return fields.UUID()
    raise AssertionError(data_type)  # pragma: no cover - exhaustive


INTEGER_RANGES = {
    DataType.BYTE: (0, 255),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
}


def filter_field(row: FilterRow) -> fields.Field[Any]:
    """The marshmallow field validating one filter row's value (type and operator)."""
    inner = _scalar_field(row.type)
    if row.operator is Operator.BETWEEN:
        return fields.List(
            inner, validate=validate.Length(equal=2, error="Between takes two values.")
        )
    if row.operator is Operator.IN:
        return fields.List(
            inner,
            validate=validate.Length(
                min=1,
                max=MAX_LIST_LENGTH,
                error="In takes a non-empty list of at most {max} values.",
            ),
        )
    return inner


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == []


class ParameterValue(TypedDict):
    """One resolved QueryParameters value as a job document shows it."""

    Value: Any
    Source: str  # request | schedule | chain | task default | query default


class ResolvedParameter(NamedTuple):
    """A resolved value and where it came from. (A NamedTuple: a trigger makes one per
    filter, and a frozen dataclass is several times slower to build.)"""

    value: Any
    source: str  # request | task default | query default

    def as_document(self) -> ParameterValue:
        return {"Value": self.value, "Source": self.source}


class QueryParameterSet:
    """The QueryParameters a task accepts, built once per task from its filter rows."""

    def __init__(self, filters: tuple[FilterRow, ...]) -> None:
        columns = Counter(row.column for row in filters)
        keys: list[str] = []
        for row in filters:
            key = row.key or (row.column if columns[row.column] == 1 else row.qualified_name)
            if key in keys:
                raise TaskLoadError(
                    f"two filter rows share the QueryParameters key {key!r}: give each a `key`",
                    key="filters",
                )
            keys.append(key)
        self.rows: dict[str, FilterRow] = {
            key: row for key, row in zip(keys, filters, strict=True) if row.settable
        }
        self.all_rows: dict[str, FilterRow] = dict(zip(keys, filters, strict=True))
        self.ambiguous: dict[str, list[str]] = {
            column: [key for key, row in self.rows.items() if row.column == column]
            for column, count in columns.items()
            if count > 1 and column not in self.rows
        }
        self.ambiguous = {column: keys for column, keys in self.ambiguous.items() if keys}
        #: Each settable key's marshmallow field. Values are loaded field by field (no
        #: Schema around them: its load machinery costs more than the three or four fields
        #: a task has), with the same validators and messages.
        self.fields: dict[str, fields.Field[Any]] = {
            key: filter_field(row) for key, row in self.rows.items()
        }
        self.defaults: dict[str, Any] = {}
        self.query_defaults: dict[str, Any] = {}
        for key, row in self.all_rows.items():
            field = filter_field(row)
            for attr, store in (("default", self.defaults), ("query_default", self.query_defaults)):
                raw = getattr(row, attr)
                if _blank(raw):
                    continue
                try:
                    store[key] = _jsonable(field.deserialize(raw))
                except ValidationError as error:
                    raise TaskLoadError(
                        f"filter {key!r}: {attr} {raw!r} is not valid: {error.messages}",
                        key=attr,
                    ) from None

    @property
    def keys(self) -> list[str]:
        return list(self.rows)

    def resolve(
        self, supplied: Mapping[str, Any] | None, source: str = REQUEST
    ) -> dict[str, ResolvedParameter]:
        """Resolve a caller's QueryParameters (given values carry ``source``: the request,
        a schedule, a chain); raises ``ParameterError`` (a 422)."""
        supplied = supplied or {}
        errors: dict[str, Any] = {}
        for key in supplied:
            if key in self.rows:
                continue
            if key in self.ambiguous:
                choices = " or ".join(repr(k) for k in self.ambiguous[key])
                errors[key] = [f"Ambiguous: two filters use the column {key!r}; use {choices}."]
            else:
                valid = ", ".join(self.keys) or "none: this task takes no QueryParameters"
                errors[key] = [f"Unknown parameter {key!r}. Valid keys: {valid}."]
        given: dict[str, Any] = {}
        for key, value in supplied.items():
            if key in self.rows and value is not None and value != "":
                try:
                    given[key] = _jsonable(self.fields[key].deserialize(value))
                except ValidationError as error:
                    errors[key] = error.messages
        resolved: dict[str, ResolvedParameter] = {}
        for key, row in self.rows.items():
            if key in given:
                resolved[key] = ResolvedParameter(given[key], source)
            elif key in self.defaults:
                resolved[key] = ResolvedParameter(self.defaults[key], TASK_DEFAULT)
            elif key in self.query_defaults:
                resolved[key] = ResolvedParameter(self.query_defaults[key], QUERY_DEFAULT)
            elif row.prompt is Prompt.REQUIRED:
                errors.setdefault(
                    key, ["Required: give a value (the task and the query have no default)."]
                )
            else:
                resolved[key] = ResolvedParameter(None, QUERY_DEFAULT)
        if errors:
            raise ParameterError(errors)
        return resolved

    def fixed_values(self) -> dict[str, Any]:
        """Values of the filters callers cannot set (prompt None)."""
        return {
            key: self.defaults.get(key, self.query_defaults.get(key))
            for key, row in self.all_rows.items()
            if not row.settable
        }

    def describe(self) -> list[dict[str, Any]]:
        """The parameter list shown to admins, in query order."""
        return [
            {
                "Key": key,
                "BusinessObject": row.business_object,
                "Column": row.column,
                "Operator": str(row.operator),
                "Type": str(row.type),
                "Prompt": str(row.prompt),
                "Default": self.defaults.get(key, ""),
                "QueryDefault": self.query_defaults.get(key, ""),
            }
            for key, row in self.rows.items()
        ]

    def body_template(self) -> dict[str, Any]:
        return {"QueryParameters": dict.fromkeys(self.rows, "")}


def schedule_problem(task: Task, *, seconds: bool = False) -> tuple[str, str] | None:
    """(key, message) of what is wrong with a task's schedule, if anything: its cron
    expressions, ``run_at``, counters, and its ``schedule_parameters`` (validated as a
    webhook body would be)."""
    schedule = task.schedule
    if schedule is None:
        return None
    problem = schedule.problem(seconds=seconds)
    if problem is not None:
        return problem
    try:
        QueryParameterSet(task.filters).resolve(schedule.parameters, SCHEDULE)
    except ParameterError as error:
        key, messages = next(iter(error.errors.items()))
        return f"schedule_parameters.{key}", "; ".join(map(str, _flat(messages)))
    return None


def chain_problem(
    task: Task, parameter_sets: Mapping[str, QueryParameterSet]
) -> tuple[str, str] | None:
    """(key, message) of what is wrong with a task's ``[tasks.chain] parameters``, if
    anything: a parent key the task does not have, a child key no chained task takes, a
    constant a child would refuse. (Its chained tasks exist: ``chain_errors`` said so.)"""
    passed = task.chain.parameters
    if passed is None:
        return None
    own = parameter_sets[task.id].rows
    children = [parameter_sets[child] for child in (*task.chain.on_success, *task.chain.on_failure)]
    for key, source in passed.items():
        at = f"chain.parameters.{key}"
        takers = [child for child in children if key in child.rows]
        if not takers:
            keys = sorted({k for child in children for k in child.rows}) or ["none"]
            return at, f"no chained task takes {key!r} (their keys: {', '.join(keys)})"
        if source.parent is not None and source.parent not in own:
            valid = ", ".join(own) or "none: this task takes no QueryParameters"
            return at, f"this task has no key {source.parent!r} to pass on (its keys: {valid})"
        if source.parent is None and source.value is not None and source.value != "":
            for child in takers:
                try:
                    child.fields[key].deserialize(source.value)
                except ValidationError as error:
                    return at, "; ".join(map(str, _flat(error.messages)))
    return None


def _flat(messages: Any) -> list[Any]:
    if isinstance(messages, list):
        return [item for message in messages for item in _flat(message)]
    if isinstance(messages, dict):
        return [item for message in messages.values() for item in _flat(message)]
    return [messages]
