"""The JSON shapes the iMIS REST API answers with, built for the double.

Where each shape comes from (``tests/golden/`` holds the published bodies, each naming its
source; the double's answers are compared with them key by key):

- PagedResult of GenericEntityData (``/api/iqa``, ``GET /api/{Entity}``): ASI's
  "Migrating from IQA to Query service endpoint" and "Accessing IQA data" pages.
- PagedResult of ExpandoObject (``/api/query``): a captured iMIS answer in public code.
- GenericEntityData with Identity and PrimaryParentIdentity: public iMIS client code.
- 401 body (``System.Web.Http.HttpError``): a post on ASI's developer forum.

Best guesses, no published example found (kept small and marked where built):
the token answer and its 400s, the 404/400/415/429/500 ``HttpError`` messages, the
validation-results body of a rejected write, and the QueryDefinition ``FindByPath`` answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

ASI = "Asi.Soa.Core.DataContracts"
GENERIC_ENTITY = f"{ASI}.GenericEntityData, Asi.Contracts"
PAGED_GENERIC = f"{ASI}.PagedResult`1[[{GENERIC_ENTITY}]], Asi.Contracts"
LIST_GENERIC = f"System.Collections.Generic.List`1[[{GENERIC_ENTITY}]], mscorlib"
PAGED_DYNAMIC = f"{ASI}.PagedResult, Asi.Contracts"
LIST_OBJECT = "System.Collections.Generic.List`1[[System.Object, mscorlib]], mscorlib"
EXPANDO = "System.Dynamic.ExpandoObject, System.Core"
PROPERTIES = f"{ASI}.GenericPropertyDataCollection, Asi.Contracts"
PROPERTY = f"{ASI}.GenericPropertyData, Asi.Contracts"
IDENTITY = f"{ASI}.IdentityData, Asi.Contracts"
STRINGS = "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib"
HTTP_ERROR = "System.Web.Http.HttpError, System.Web.Http"
# Best guesses (type names seen in public client code, $type strings assembled like ASI's):
VALIDATION_RESULTS = f"{ASI}.ValidationResultsData, Asi.Contracts"
VALIDATION_RESULT_LIST = f"{ASI}.ValidationResultDataCollection, Asi.Contracts"
VALIDATION_RESULT = f"{ASI}.ValidationResultData, Asi.Contracts"
QUERY_DEFINITION_RESPONSE = (
    f"{ASI}.ServiceResponse`1[[{ASI}.QueryDefinitionData, Asi.Contracts]], Asi.Contracts"
)
IQA_QUERY_DEFINITION = f"{ASI}.IqaQueryDefinitionData, Asi.Contracts"
CRITERIA = f"{ASI}.CriteriaData, Asi.Contracts"
CRITERIA_LIST = f"{ASI}.CriteriaDataCollection, Asi.Contracts"
QUERY_SOURCE = f"{ASI}.QuerySourceData, Asi.Contracts"
QUERY_SOURCE_LIST = f"{ASI}.QuerySourceDataCollection, Asi.Contracts"
QUERY_PROPERTY = f"{ASI}.QueryPropertyData, Asi.Contracts"
QUERY_PROPERTY_LIST = f"{ASI}.QueryPropertyDataCollection, Asi.Contracts"

INT32 = range(-(2**31), 2**31)
#: The types iMIS wraps as ``{"$type", "$value"}``; strings and DateTimes travel bare.
NUMERIC_TYPES = {
    "System.Int16": int,
    "System.Int32": int,
    "System.Int64": int,
    "System.Byte": int,
    "System.SByte": int,
    "System.Decimal": Decimal,
    "System.Double": Decimal,
    "System.Single": Decimal,
}


class Missing:
    """No value: the property is present without a ``Value`` key."""


MISSING = Missing()


def _number(value: Decimal | float) -> float:
    # A decimal stays a JSON number with a fraction (``120.0``), as .NET writes decimals.
    return float(value)


def _timestamp(value: date) -> str:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    return f"{value.isoformat()}T00:00:00"


def wrapped(value: Any) -> Any:
    """A value as a GenericPropertyData ``Value``: numbers and booleans wrapped, the rest bare."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return {"$type": "System.Boolean", "$value": value}
    if isinstance(value, int):
        return {"$type": "System.Int32" if value in INT32 else "System.Int64", "$value": value}
    if isinstance(value, Decimal | float):
        return {"$type": "System.Decimal", "$value": _number(value)}
    return plain(value)


def plain(value: Any) -> Any:
    """A value as an ExpandoObject member: bare JSON."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal | float):
        return _number(value)
    if isinstance(value, date):
        return _timestamp(value)
    if isinstance(value, Mapping | list):
        return value
    return str(value)


def unwrapped(value: Any) -> Any:
    """A written ``Value`` without its ``{"$type", "$value"}`` wrapper."""
    if isinstance(value, Mapping) and "$value" in value:
        kind = NUMERIC_TYPES.get(str(value.get("$type")))
        inner = value["$value"]
        if kind is int and isinstance(inner, int | str) and not isinstance(inner, bool):
            return int(inner)
        if kind is Decimal and isinstance(inner, int | float | str) and not isinstance(inner, bool):
            return Decimal(str(inner))
        return inner
    return value


def property_data(name: str, value: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"$type": PROPERTY, "Name": name}
    shown = wrapped(value)
    if shown is not MISSING:
        item["Value"] = shown
    return item


def properties(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {"$type": PROPERTIES, "$values": [property_data(name, value) for name, value in items]}


def identity(entity_type: str, elements: Sequence[str]) -> dict[str, Any]:
    return {
        "$type": IDENTITY,
        "EntityTypeName": entity_type,
        "IdentityElements": {"$type": STRINGS, "$values": list(elements)},
    }


def generic_entity(
    entity_type: str, key: str, parent: str, items: Iterable[tuple[str, Any]]
) -> dict[str, Any]:
    """A GenericEntityData as ``GET /api/{Entity}/{id}`` answers it."""
    return {
        "$type": GENERIC_ENTITY,
        "EntityTypeName": entity_type,
        "PrimaryParentEntityTypeName": parent,
        "Identity": identity(entity_type, [key]),
        "PrimaryParentIdentity": identity(parent, [key]),
        "Properties": properties(items),
    }


def iqa_row(entity_type_name: str, row_number: int, items: Iterable[tuple[str, Any]]) -> Any:
    """One ``/api/iqa`` row: ``ResultRow`` first, then one property per display column."""
    return {
        "$type": GENERIC_ENTITY,
        "EntityTypeName": entity_type_name,
        "Properties": properties([("ResultRow", str(row_number)), *items]),
    }


def expando_row(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """One ``/api/query`` row: a flat ExpandoObject."""
    row: dict[str, Any] = {"$type": EXPANDO}
    row.update((name, plain(value)) for name, value in items)
    return row


def paged(items: list[Any], *, offset: int, limit: int, total: int, dynamic: bool) -> Any:
    """The PagedResult wrapper; ``NextOffset`` is 0 on the last page."""
    has_next = offset + len(items) < total
    return {
        "$type": PAGED_DYNAMIC if dynamic else PAGED_GENERIC,
        "Items": {"$type": LIST_OBJECT if dynamic else LIST_GENERIC, "$values": items},
        "Offset": offset,
        "Limit": limit,
        "Count": len(items),
        "TotalCount": total,
        "NextPageLink": None,
        "HasNext": has_next,
        "NextOffset": offset + len(items) if has_next else 0,
    }


def http_error(message: str) -> dict[str, Any]:
    """ASP.NET Web API's error body, as iMIS answers a 401 (and, best guess, other errors)."""
    return {"$type": HTTP_ERROR, "Message": message}


def validation_errors(messages: Sequence[str]) -> dict[str, Any]:
    """Best guess at a rejected write's body; clients read ``Errors.$values[0].Message``."""

    def results(texts: Sequence[str]) -> dict[str, Any]:
        values = [{"$type": VALIDATION_RESULT, "Message": text} for text in texts]
        return {"$type": VALIDATION_RESULT_LIST, "$values": values}

    return {"$type": VALIDATION_RESULTS, "Errors": results(messages), "Warnings": results([])}


def dumps(body: Any) -> str:
    """JSON in the body's own key order (Flask's provider would sort the keys)."""
    return json.dumps(body, ensure_ascii=False, default=plain)
