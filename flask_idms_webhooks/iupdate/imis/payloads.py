"""The JSON bodies of the iMIS REST API: ``$type``-tagged values, GenericEntityData,
IQA and query rows, composite keys, and positional parameter text.

Shapes follow ASI's published examples (developer.imis.com) and public iMIS client code;
``tests/golden_client/`` holds the bodies the tests replay, each naming its source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from .errors import ImisRequestError

GENERIC_ENTITY = "Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts"
IDENTITY = "Asi.Soa.Core.DataContracts.IdentityData, Asi.Contracts"
STRINGS = "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib"
OBJECTS = "System.Collections.ObjectModel.Collection`1[[System.Object, mscorlib]], mscorlib"
PROPERTIES = "Asi.Soa.Core.DataContracts.GenericPropertyDataCollection, Asi.Contracts"
PROPERTY = "Asi.Soa.Core.DataContracts.GenericPropertyData, Asi.Contracts"
EXECUTE_REQUEST = "Asi.Soa.Core.DataContracts.GenericExecuteRequest, Asi.Contracts"


@dataclass(frozen=True)
class ImisPage:
    """One page of a query's rows; ``total`` is the query's ``TotalCount``."""

    rows: list[dict[str, Any]]
    total: int
    offset: int


@dataclass(frozen=True)
class ImisEntity:
    """An entity as iMIS returned it: its key (composite keys as ``~a|b``) and properties."""

    identity: str
    properties: dict[str, Any]
    elements: tuple[str, ...] = field(default=(), compare=False)


def identity_of(elements: Sequence[str]) -> str:
    """The URL key of an entity: the element itself, or iMIS's composite ``~a|b``."""
    return elements[0] if len(elements) == 1 else "~" + "|".join(elements)


def elements_of(identity: str) -> list[str]:
    return identity[1:].split("|") if identity.startswith("~") else [identity]


def parameter_text(value: Any, separator: str = ",") -> str:
    """One positional IQA value as text: blank for None, ``true``/``false``, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return separator.join(parameter_text(item, separator) for item in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def unwrap(value: Any) -> Any:
    """A property value without iMIS's ``{"$type", "$value"}`` / ``{"$values"}`` wrapper."""
    if isinstance(value, dict):
        if "$value" in value:
            return value["$value"]
        if "$values" in value:
            return [unwrap(item) for item in value["$values"]]
    return value


def wrap(value: Any) -> Any:
    """A write value as iMIS expects it: typed wrappers for booleans and numbers."""
    if isinstance(value, bool):
        return {"$type": "System.Boolean", "$value": value}
    if isinstance(value, int):
        kind = "System.Int32" if -(2**31) <= value < 2**31 else "System.Int64"
        return {"$type": kind, "$value": value}
    if isinstance(value, Decimal | float):
        return {"$type": "System.Decimal", "$value": float(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _properties(collection: Any, *, skip_result_row: bool = False) -> dict[str, Any]:
    values = collection.get("$values", []) if isinstance(collection, dict) else []
    if skip_result_row and values and values[0].get("Name") == "ResultRow":
        values = values[1:]
    return {prop["Name"]: unwrap(prop.get("Value")) for prop in values if "Name" in prop}


def decode_iqa_row(item: Mapping[str, Any]) -> dict[str, Any]:
    """An ``/api/iqa`` row (GenericEntityData) as column -> value, without ``ResultRow``."""
    return _properties(item.get("Properties"), skip_result_row=True)


def decode_query_row(item: Mapping[str, Any]) -> dict[str, Any]:
    """An ``/api/query`` row (a flat ExpandoObject) as column -> value."""
    return {key: unwrap(value) for key, value in item.items() if key != "$type"}


def decode_entity(item: Mapping[str, Any], entity: str) -> ImisEntity:
    """A GenericEntityData, or a typed contract such as PersonData, as an ``ImisEntity``."""
    identity = item.get("Identity")
    if isinstance(item.get("Properties"), dict):
        found = identity.get("IdentityElements", {}) if isinstance(identity, dict) else {}
        elements = tuple(str(e) for e in found.get("$values", []))
        return ImisEntity(
            identity_of(elements) if elements else "", _properties(item["Properties"]), elements
        )
    properties = {key: value for key, value in item.items() if key != "$type"}
    for name, value in _properties(item.get("AdditionalAttributes")).items():
        properties.setdefault(name, value)
    key = next((str(item[k]) for k in ("PartyId", f"{entity}Id", "Id") if item.get(k)), "")
    return ImisEntity(key, properties, (key,) if key else ())


def generic_entity(
    entity: str, elements: Sequence[str], properties: Mapping[str, Any], parent: str
) -> dict[str, Any]:
    """The GenericEntityData body of a write (the identity is left out for an insert)."""

    def identity(name: str, values: Sequence[str]) -> dict[str, Any]:
        return {
            "$type": IDENTITY,
            "EntityTypeName": name,
            "IdentityElements": {"$type": STRINGS, "$values": list(values)},
        }

    body: dict[str, Any] = {"$type": GENERIC_ENTITY, "EntityTypeName": entity}
    body["PrimaryParentEntityTypeName"] = parent
    body["Identity"] = (
        identity(entity, elements) if elements else {"$type": IDENTITY, "EntityTypeName": entity}
    )
    # A panel row hangs off its contact: iMIS takes the contact from the parent identity.
    parent_key = elements[0] if elements else properties.get("ID")
    if parent == "Party" and parent_key not in (None, ""):
        body["PrimaryParentIdentity"] = identity("Party", [str(parent_key)])
    body["Properties"] = {
        "$type": PROPERTIES,
        "$values": [
            {"$type": PROPERTY, "Name": name, "Value": wrap(value)}
            for name, value in properties.items()
        ],
    }
    return body


def set_party_property(party: dict[str, Any], name: str, value: Any) -> None:
    """Change one property of a Party object: a top-level or dotted path, or an additional
    attribute (name compared without case, its type wrapper kept)."""
    target: Any = party
    *path, last = name.split(".")
    for step in path:
        target = target.get(step) if isinstance(target, dict) else None
    if isinstance(target, dict) and last in target and not last.startswith("$"):
        target[last] = value
        return
    attributes = party.get("AdditionalAttributes")
    for prop in attributes.get("$values", []) if isinstance(attributes, dict) else []:
        if str(prop.get("Name", "")).upper() == name.upper():
            old = prop.get("Value")
            if isinstance(old, dict) and "$type" in old and not isinstance(value, dict):
                prop["Value"] = {"$type": old["$type"], "$value": value}
            else:
                prop["Value"] = wrap(value)
            return
    raise ImisRequestError(None, f"the Party has no property {name!r}")


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: Where an IQA's definition is read (``FindByPath``).
FIND_BY_PATH = "api/QueryDefinition/_execute"


def find_by_path(query_name: str) -> dict[str, Any]:
    """The ``QueryDefinition/_execute`` body that reads the IQA at ``query_name``."""
    return {
        "$type": EXECUTE_REQUEST,
        "OperationName": "FindByPath",
        "EntityTypeName": "QueryDefinition",
        "Parameters": {
            "$type": OBJECTS,
            "$values": [{"$type": "System.String", "$value": query_name}],
        },
        "ParameterTypeName": {"$type": STRINGS, "$values": ["System.String"]},
        "UseJson": False,
    }


def prompt_filters_of(definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A query definition's filters with their prompts, in the query's order."""
    sources = {
        source.get("QuerySourceId"): source.get("Name")
        for source in definition.get("Sources", {}).get("$values", [])
    }
    filters = []
    for criteria in definition.get("Parameters", {}).get("$values", []):
        name = str(criteria.get("PropertyName", ""))
        prefix, _, column = name.rpartition(".")
        filters.append(
            {
                "PropertyName": name,
                "BusinessObject": sources.get(prefix) or prefix,
                "Column": column,
                "Operation": criteria.get("Operation"),
                "Prompt": criteria.get("Prompt"),
                "AllowMultiple": bool(criteria.get("AllowMultiple", False)),
                "Values": unwrap(criteria.get("Values")) or [],
            }
        )
    return filters
