"""The double's entity types: business objects and panels as GenericEntityData, and typed
contracts (``Party``, ``Person``, ``Organization``) as whole objects.

A GenericEntityData write carries ``Properties.$values``: a POST creates (the key from
the key property or ``Identity``, else the next integer), a PUT changes the listed
properties. A typed contract is read whole, changed and put back whole, as iMIS requires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from . import shapes
from .operators import Condition, lookup, number

#: Entity types iMIS serves as typed data contracts, with the ``$type`` of each.
CONTRACTS = {
    name: f"Asi.Soa.Membership.DataContracts.{name}Data, Asi.Contracts"
    for name in ("Party", "Person", "Organization")
}


class BodyError(ValueError):
    """A write the entity type rejects: answered 400 with iMIS's validation results."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Validation:
    field: str
    predicate: Callable[[Any], bool]
    message: str


@lru_cache(maxsize=65536)
def equality_form(value: str) -> tuple[str, Any]:
    """What ``operators.compare`` finds equal, as one value: the number when it parses,
    else the case-folded text."""
    parsed = number(value)
    return ("number", parsed) if parsed is not None else ("text", value.casefold())


def key_order(key: str) -> tuple[int, int, str]:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


@dataclass
class EntityTable:
    name: str
    key: str
    parent: str = "Party"
    contract: str | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    validations: list[Validation] = field(default_factory=list)
    #: The keys of ``records`` by their equality form, so a find by key reads no other
    #: record. (A key deleted from ``records`` may linger here: it is looked up there.)
    _by_form: dict[tuple[str, Any], set[str]] = field(default_factory=dict, repr=False)

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            record = dict(row)
            if record.get(self.key) in (None, ""):
                raise ValueError(f"a {self.name} row has no {self.key!r} key value: {record}")
            self._learn(record)
            self._put(str(record[self.key]), record)

    def _put(self, key: str, record: dict[str, Any]) -> None:
        self.records[key] = record
        self._by_form.setdefault(equality_form(key), set()).add(key)

    def _learn(self, record: Mapping[str, Any]) -> None:
        for name in record:
            if name not in self.fields and not name.startswith("$"):
                self.fields.append(name)

    def ordered(self) -> list[dict[str, Any]]:
        return [self.records[k] for k in sorted(self.records, key=key_order)]

    def find(self, conditions: list[Condition], order_by: str | None = None) -> list[Any]:
        keys = sorted(self._candidates(conditions), key=key_order)
        found = [
            r for r in map(self.records.__getitem__, keys) if all(c.accepts(r) for c in conditions)
        ]
        if order_by:
            name, _, direction = order_by.partition(":")
            found.sort(
                key=lambda r: key_order(str(lookup(r, name) or "")),
                reverse=direction.lower().startswith("desc"),
            )
        return found

    def _candidates(self, conditions: list[Condition]) -> Iterable[str]:
        """The keys a find must look at: for ``Equal`` or ``In`` on the key field, those
        that compare equal to a wanted value (each record is still checked by every
        condition); else all. A look-up by key then costs no sort of the whole table."""
        for condition in conditions:
            if (
                condition.operation in ("Equal", "In")
                and condition.field.lower() == self.key.lower()
            ):
                forms = {equality_form(value) for value in condition.values}
                keys = set().union(*(self._by_form.get(form, ()) for form in forms))
                return [key for key in keys if key in self.records]
        return self.records

    def record_key(self, identity: str) -> str:
        """The stored key for a URL identity (``101``, or ``~101|1`` for iMIS's composite form)."""
        return identity[1:].split("|")[0] if identity.startswith("~") else identity

    # -- answers ------------------------------------------------------------------------

    def shape(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if self.contract:
            return {"$type": self.contract, **{k: v for k, v in record.items() if k != "$type"}}
        return shapes.generic_entity(self.name, str(record[self.key]), self.parent, record.items())

    # -- writes -------------------------------------------------------------------------

    def insert(self, body: Any) -> dict[str, Any]:
        values = self._values(body)
        key = values.get(self.key)
        if key in (None, ""):
            key = self._identity_element(body) or self._next_key()
            values = {self.key: key, **values}
        if str(key) in self.records:
            raise BodyError([f"A {self.name} with {self.key} {key} already exists."])
        self._validate(values)
        self._learn(values)
        self._put(str(key), values)
        return values

    def update(self, key: str, body: Any) -> dict[str, Any]:
        current = self.records[key]
        values = self._values(body)
        given = values.get(self.key)
        if given not in (None, "") and str(given) != key:
            raise BodyError([f"The {self.key} in the body ({given}) is not the URL's ({key})."])
        updated = (
            {self.key: current[self.key], **values} if self.contract else {**current, **values}
        )
        self._validate(updated)
        self._learn(updated)
        self.records[key] = updated
        return updated

    def _values(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise BodyError(["The request body must be a JSON object."])
        if self.contract:
            return {k: v for k, v in body.items() if k != "$type"}
        if body.get("$type") != shapes.GENERIC_ENTITY:
            raise BodyError([f"The body's $type must be {shapes.GENERIC_ENTITY!r}."])
        named = body.get("EntityTypeName")
        if named is not None and str(named).lower() != self.name.lower():
            raise BodyError([f"EntityTypeName {named!r} does not match {self.name!r}."])
        collection = body.get("Properties")
        items = collection.get("$values") if isinstance(collection, Mapping) else None
        if not isinstance(items, list):
            raise BodyError(["Properties.$values is required."])
        values: dict[str, Any] = {}
        errors = []
        for item in items:
            name = item.get("Name") if isinstance(item, Mapping) else None
            if not isinstance(name, str) or not name:
                errors.append("Each property needs a Name.")
                continue
            known = next((f for f in self.fields if f.lower() == name.lower()), None)
            if self.fields and known is None:
                errors.append(f"Property {name!r} is not defined on {self.name!r}.")
                continue
            values[known or name] = shapes.unwrapped(item.get("Value"))
        if errors:
            raise BodyError(errors)
        return values

    def _validate(self, values: Mapping[str, Any]) -> None:
        errors = [
            rule.message
            for rule in self.validations
            if rule.field in values and not rule.predicate(values[rule.field])
        ]
        if errors:
            raise BodyError(errors)

    def _identity_element(self, body: Any) -> str | None:
        found = lookup(body, "Identity.IdentityElements.$values")
        first = found[0] if isinstance(found, list) and found else None
        return str(first) if first not in (None, "") else None

    def _next_key(self) -> Any:
        numbers = [int(k) for k in self.records if k.isdigit()]
        following = max(numbers, default=0) + 1
        sample = next(iter(self.records.values()), {}).get(self.key)
        return following if isinstance(sample, int) else str(following)
