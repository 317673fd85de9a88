"""An IQA of the double: display columns and filters over one entity type.

Positional parameters: one ``parameter=`` per filter whose prompt is ``Required`` or
``Optional``, in filter order; a blank value drops an Optional filter and is refused for a
Required one; fixed filters (prompt ``None``) apply their own value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import shapes
from .operators import MULTIPLE, VALUELESS, Condition, FilterValueError, QueryFilter, split

#: A display column: its name, or (display name, entity field).
Column = str | tuple[str, str]


class QueryParameterError(ValueError):
    """The ``parameter=`` values do not fit the query's prompt filters."""


@dataclass(frozen=True)
class IqaQuery:
    path: str
    entity: str
    columns: tuple[tuple[str, str], ...]
    filters: tuple[QueryFilter, ...]
    #: iMIS gives each query's rows a numeric ``EntityTypeName`` ("59" in ASI's example).
    number: int

    @classmethod
    def build(
        cls,
        path: str,
        entity: str,
        columns: Sequence[Column],
        filters: Sequence[QueryFilter],
        number: int,
    ) -> IqaQuery:
        pairs = tuple((c, c) if isinstance(c, str) else (c[0], c[1]) for c in columns)
        if not pairs:
            raise ValueError(f"the query {path!r} needs at least one column")
        return cls(path, entity, pairs, tuple(filters), number)

    @property
    def prompt_count(self) -> int:
        return sum(f.takes_parameter for f in self.filters)

    def conditions(self, parameters: Sequence[str], separator: str) -> list[Condition]:
        """The filters to apply, given the request's positional ``parameter=`` values."""
        if len(parameters) != self.prompt_count:
            raise QueryParameterError(
                f"The query {self.path!r} has {self.prompt_count} prompt filter(s); "
                f"{len(parameters)} parameter value(s) were given."
            )
        given = iter(parameters)
        found = []
        for position, row in enumerate(self.filters, start=1):
            value = next(given) if row.takes_parameter else (row.value or "")
            if row.takes_parameter and value.strip() == "" and row.operation not in VALUELESS:
                if row.prompt == "Required":
                    raise QueryParameterError(
                        f"A value is required for filter {position} ({row.property_name})."
                    )
                continue
            try:
                values = split(value, row.operation, separator)
            except FilterValueError as error:
                raise QueryParameterError(f"Filter {position}: {error}") from None
            found.append(Condition(row.property_name, row.operation, values))
        return found

    def definition(self) -> dict[str, Any]:
        """Best guess at QueryDefinition ``FindByPath``'s answer (no published example)."""
        sources = sorted({self.entity, *(f.business_object for f in self.filters)})
        criteria = [
            {
                "$type": shapes.CRITERIA,
                "Operation": row.operation,
                "PropertyName": f"{row.business_object}.{row.property_name}",
                "Prompt": row.prompt,
                "AllowMultiple": row.operation in MULTIPLE,
                "Values": {
                    "$type": shapes.STRINGS,
                    "$values": [] if row.takes_parameter or row.value is None else [row.value],
                },
            }
            for row in self.filters
        ]
        columns = [
            {
                "$type": shapes.QUERY_PROPERTY,
                "QuerySourceId": self.entity,
                "Name": field,
                "PropertyName": f"{self.entity}.{field}",
                "Alias": alias,
                "Caption": alias,
                "DisplayOrder": order,
            }
            for order, (alias, field) in enumerate(self.columns)
        ]
        result = {
            "$type": shapes.IQA_QUERY_DEFINITION,
            "Path": self.path,
            "QueryDefinitionId": f"{self.number:08d}-0000-0000-0000-000000000000",
            "Parameters": {"$type": shapes.CRITERIA_LIST, "$values": criteria},
            "Properties": {"$type": shapes.QUERY_PROPERTY_LIST, "$values": columns},
            "Sources": {
                "$type": shapes.QUERY_SOURCE_LIST,
                "$values": [
                    {
                        "$type": shapes.QUERY_SOURCE,
                        "QuerySourceId": name,
                        "QuerySourceType": 1,
                        "Name": name,
                        "BusinessControllerName": name,
                    }
                    for name in sources
                ],
            },
        }
        return execute_result(result)


def execute_result(result: Any) -> dict[str, Any]:
    """Best guess at the ``_execute`` answer wrapper (key names from public client code)."""
    return {
        "$type": shapes.QUERY_DEFINITION_RESPONSE,
        "Result": result,
        "IsSuccessStatusCode": True,
        "Message": None,
        "ReasonPhrase": None,
        "IsCachedResult": False,
    }
