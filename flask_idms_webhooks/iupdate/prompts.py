"""An IQA's prompt filters, as iMIS describes them (FindByPath), written as task-file TOML."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..model.tasks import Operator

#: iMIS operation names (and the aliases seen in the wild) -> the task file's operator.
OPERATIONS = {operator.value.lower(): operator.value for operator in Operator}
OPERATIONS.update(
    eq="Equal",
    ne="NotEqual",
    gt="GreaterThan",
    ge="GreaterThanOrEqual",
    lt="LessThan",
    le="LessThanOrEqual",
    equals="Equal",
    notequals="NotEqual",
)


def _string(value: Any) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(value), ensure_ascii=False)


def prompt(value: Any) -> str:
    text = str(value or "").lower()
    if "required" in text:
        return "Required"
    if not text or text in ("none", "false", "0", "hidden"):
        return "None"
    return "Optional"


def filters_toml(query: str, filters: Sequence[Mapping[str, Any]]) -> str:
    """The ``[[tasks.source.filters]]`` tables of a query, in its filter order."""
    lines = [
        f"# The prompt filters of {query}, read from iMIS (FindByPath), in the query's order.",
        "# iMIS does not say a filter's data type: check each `type`.",
        "",
    ]
    for entry in filters:
        operation = str(entry.get("Operation") or "")
        operator = OPERATIONS.get(operation.lower())
        if entry.get("AllowMultiple") and operator != "Between":
            operator = "In"  # a multi-value prompt
        values = [value for value in entry.get("Values") or [] if value not in (None, "")]
        lines += [
            "[[tasks.source.filters]]",
            f"business_object = {_string(entry.get('BusinessObject') or '')}",
            f"column = {_string(entry.get('Column') or entry.get('PropertyName') or '')}",
            f"operator = {_string(operator or 'Equal')}"
            + ("" if operator else f"  # iMIS said {_string(operation)}: check it"),
            'type = "String"',
            f"prompt = {_string(prompt(entry.get('Prompt')))}",
        ]
        if values:
            default = values if operator in ("In", "Between") else values[0]
            lines.append(f"query_default = {json.dumps(default, ensure_ascii=False, default=str)}")
        lines.append("")
    return "\n".join(lines)
