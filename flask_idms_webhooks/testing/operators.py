"""Filter operators, as IQA filters and ``GET /api/{Entity}?Field=op:value`` apply them.

Operator names and their short forms are ASI's ("Advanced query operations",
developer.imis.com/docs/advanced-query-operations). Values compare as numbers when both
sides parse as numbers, else as case-insensitive text; a missing value matches only
``NotEqual``, ``NotContain`` and ``IsEmpty``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

OPERATIONS = (
    "Equal",
    "NotEqual",
    "Contains",
    "NotContain",
    "StartsWith",
    "EndsWith",
    "GreaterThan",
    "GreaterThanOrEqual",
    "LessThan",
    "LessThanOrEqual",
    "Between",
    "In",
    "IsEmpty",
    "NotEmpty",
    "IsTrue",
    "IsFalse",
)
PROMPTS = ("Required", "Optional", "None")
#: Operators that take no value, and those whose one value packs several.
VALUELESS = frozenset({"IsEmpty", "NotEmpty", "IsTrue", "IsFalse"})
MULTIPLE = frozenset({"Between", "In"})

_ALIASES = {
    "eq": "Equal",
    "==": "Equal",
    "ne": "NotEqual",
    "!=": "NotEqual",
    "gt": "GreaterThan",
    ">": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    ">=": "GreaterThanOrEqual",
    "lt": "LessThan",
    "<": "LessThan",
    "le": "LessThanOrEqual",
    "<=": "LessThanOrEqual",
    "empty": "IsEmpty",
    "!empty": "NotEmpty",
    "true": "IsTrue",
    "false": "IsFalse",
    "!contain": "NotContain",
}
#: Every spelling the entity endpoints accept before the ``:``, lower-cased.
SPELLINGS = {name.lower(): name for name in OPERATIONS} | _ALIASES


class FilterValueError(ValueError):
    """A filter value the operator cannot use (a Between without two values, ...)."""


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        parsed = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def compare(actual: Any, expected: str) -> int:
    """-1, 0 or 1: as numbers when both parse, else as case-insensitive text."""
    left, right = number(actual), number(expected)
    if left is not None and right is not None:
        return (left > right) - (left < right)
    a, b = text(actual).casefold(), expected.casefold()
    return (a > b) - (a < b)


def split(value: str, operation: str, separator: str) -> tuple[str, ...]:
    """The values one filter value carries: two for Between, one or more for In."""
    if operation in VALUELESS:
        return ()
    if operation not in MULTIPLE:
        return (value,)
    parts = tuple(part.strip() for part in value.split(separator))
    if operation == "Between" and (len(parts) != 2 or not all(parts)):
        raise FilterValueError(f"Between needs two values separated by {separator!r}: {value!r}")
    if operation == "In" and not any(parts):
        raise FilterValueError(f"In needs at least one value: {value!r}")
    return parts


def matches(actual: Any, operation: str, values: tuple[str, ...]) -> bool:
    blank = actual is None or text(actual) == ""
    if operation == "IsEmpty":
        return blank
    if operation == "NotEmpty":
        return not blank
    if operation in ("IsTrue", "IsFalse"):
        truth = text(actual).casefold() in ("true", "1", "yes")
        return truth if operation == "IsTrue" else not blank and not truth
    if operation in ("NotEqual", "NotContain"):
        positive = "Equal" if operation == "NotEqual" else "Contains"
        return not matches(actual, positive, values)
    if actual is None:
        return False
    if operation == "In":
        return any(compare(actual, value) == 0 for value in values)
    if operation == "Between":
        return compare(actual, values[0]) >= 0 and compare(actual, values[1]) <= 0
    (expected,) = values
    found, wanted = text(actual).casefold(), expected.casefold()
    if operation == "Contains":
        return wanted in found
    if operation == "StartsWith":
        return found.startswith(wanted)
    if operation == "EndsWith":
        return found.endswith(wanted)
    order = compare(actual, expected)
    return {
        "Equal": order == 0,
        "GreaterThan": order > 0,
        "GreaterThanOrEqual": order >= 0,
        "LessThan": order < 0,
        "LessThanOrEqual": order <= 0,
    }[operation]


@dataclass(frozen=True)
class Condition:
    """One applied filter: a field, an operator and its values."""

    field: str
    operation: str
    values: tuple[str, ...]

    def accepts(self, record: Mapping[str, Any]) -> bool:
        return matches(lookup(record, self.field), self.operation, self.values)


def lookup(record: Mapping[str, Any], field: str) -> Any:
    """A field of a record, by name without case, or by a dotted path into nested objects."""
    current: Any = record
    for step in field.split("."):
        if not isinstance(current, Mapping):
            return None
        key = (
            step
            if step in current
            else next((k for k in current if k.lower() == step.lower()), None)
        )
        if key is None:
            return None
        current = current[key]
    return current


@dataclass(frozen=True)
class QueryFilter:
    """One filter of an IQA, in the query's filter order.

    ``prompt`` is ``Required`` or ``Optional`` (the filter takes one positional
    ``parameter=``) or ``None`` (a fixed filter with its own ``value``, taking no slot).
    ``business_object`` names the query source the property belongs to; the double
    applies the filter to the query's entity rows.
    """

    business_object: str
    property_name: str
    operation: str
    prompt: str = "Optional"
    value: str | None = None

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {self.operation!r}; use one of {OPERATIONS}")
        if self.prompt not in PROMPTS:
            raise ValueError(f"unknown prompt {self.prompt!r}; use one of {PROMPTS}")
        if self.prompt == "None" and self.value is None and self.operation not in VALUELESS:
            raise ValueError(f"the fixed filter on {self.property_name!r} needs a value")

    @property
    def takes_parameter(self) -> bool:
        return self.prompt != "None"
