"""A client for the iMIS REST API: token, IQA paging with positional parameters, and
GenericEntityData reads and writes, with bounded timeouts and retries.

Shapes follow ASI's published examples (developer.imis.com) and public iMIS client code;
``tests/golden_client/`` holds the bodies the tests replay, each naming its source.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx

from ..errors import IdmsWebhooksError
from .base import RowWriteError, SourceReadError, TargetUnavailable

__all__ = [
    "ImisAuthError",
    "ImisClient",
    "ImisEntity",
    "ImisError",
    "ImisPage",
    "ImisRequestError",
    "ImisUnavailable",
]

log = logging.getLogger(__name__)

GENERIC_ENTITY = "Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts"
IDENTITY = "Asi.Soa.Core.DataContracts.IdentityData, Asi.Contracts"
STRINGS = "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib"
OBJECTS = "System.Collections.ObjectModel.Collection`1[[System.Object, mscorlib]], mscorlib"
PROPERTIES = "Asi.Soa.Core.DataContracts.GenericPropertyDataCollection, Asi.Contracts"
PROPERTY = "Asi.Soa.Core.DataContracts.GenericPropertyData, Asi.Contracts"
EXECUTE_REQUEST = "Asi.Soa.Core.DataContracts.GenericExecuteRequest, Asi.Contracts"

MAX_PAGE_SIZE = 500
QUERY_ENDPOINTS = ("iqa", "query")
#: Renew the token this long before iMIS says it expires.
TOKEN_MARGIN = 60.0
#: Lifetime assumed when the token answer carries no ``expires_in``.
DEFAULT_TOKEN_LIFETIME = 300.0
MESSAGE_LIMIT = 500


class ImisError(IdmsWebhooksError):
    """Base class of the iMIS client's errors."""


class ImisAuthError(ImisError, TargetUnavailable, SourceReadError):
    """iMIS refused the credentials (or a fresh token)."""


class ImisUnavailable(ImisError, TargetUnavailable, SourceReadError):
    """iMIS could not be reached, timed out, or kept answering 429/5xx after the retries."""


class ImisRequestError(ImisError, RowWriteError):
    """iMIS refused one request (a 4xx, or a write whose outcome is unknown).

    ``status`` is the HTTP status, or None when no usable answer came back.
    """

    def __init__(self, status: int | None, message: str, *, request: str = "") -> None:
        self.status, self.message, self.request = status, message, request
        answered = f"iMIS answered {status}" if status is not None else "iMIS gave no answer"
        super().__init__(f"{answered} to {request}: {message}" if request else message)


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


def _set_party_property(party: dict[str, Any], name: str, value: Any) -> None:
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


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


class ImisClient:
    """One iMIS site, one connection pool. Thread-safe for the token; close it when done."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        query_endpoint: str = "iqa",
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        separator: str = ",",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if query_endpoint not in QUERY_ENDPOINTS:
            raise ValueError(f"query_endpoint must be 'iqa' or 'query', got {query_endpoint!r}")
        self.base_url = base_url.rstrip("/")
        self.query_endpoint = query_endpoint
        self._username, self._password = username, password
        self._retries, self._backoff, self._max_backoff = retries, backoff, max_backoff
        self._separator = separator
        self._sleep, self._clock = sleep, clock
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = threading.Lock()
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            transport=transport,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"ImisClient({self.base_url!r}, username={self._username!r})"

    def __enter__(self) -> ImisClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- authentication -------------------------------------------------------------

    def token(self) -> str:
        """A bearer token, fetched with the password grant and reused until it expires."""
        with self._token_lock:
            if self._token is not None and self._clock() < self._token_until:
                return self._token
            form = {"grant_type": "password", "username": self._username}
            form["password"] = self._password
            response = self._send("POST", "token", data=form, auth=False)
            if response.status_code >= 400:
                raise ImisAuthError(
                    self._redact(f"iMIS refused the login: {self._auth_message(response)}")
                )
            try:
                answer = response.json()
                token = answer["access_token"]
                lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
            except (ValueError, KeyError, TypeError):
                raise ImisAuthError("iMIS answered the login without an access_token") from None
            if not isinstance(token, str) or not token:
                raise ImisAuthError("iMIS answered the login without an access_token")
            margin = min(TOKEN_MARGIN, lifetime / 2)
            self._token, self._token_until = token, self._clock() + lifetime - margin
            return token

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:
                self._token = None

    def _auth_message(self, response: httpx.Response) -> str:
        try:
            answer = response.json()
        except ValueError:
            return f"HTTP {response.status_code}"
        if isinstance(answer, dict):
            for key in ("error_description", "error", "Message"):
                if isinstance(answer.get(key), str) and answer[key]:
                    return str(answer[key])
        return f"HTTP {response.status_code}"

    def _redact(self, text: str) -> str:
        for secret in (self._password, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text

    # -- transport --------------------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return float(min(self._max_backoff, self._backoff * 2**attempt))

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str | int | float | bool | None]] | None = None,
        data: Mapping[str, str] | None = None,
        body: Any = None,
        auth: bool = True,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One request with the retry rules; returns any answer that is not retried.

        A non-idempotent request (an insert) is retried only when iMIS surely did not
        process it (no connection, 429, 503): a repeated insert would duplicate the row.
        """
        request = f"{method} /{path}"
        content = None
        if body is not None:
            content = json.dumps(body, default=_json_default, ensure_ascii=False).encode()
        attempt, refreshed = 0, False
        while True:
            headers = {"Content-Type": "application/json"} if content is not None else {}
            token = self.token() if auth else ""
            if auth:
                headers["Authorization"] = f"Bearer {token}"
            started = time.perf_counter()
            try:
                response = self._http.request(
                    method, f"{self.base_url}/{path}", params=params, data=data,
                    content=content, headers=headers,
                )  # fmt: skip
            except httpx.TransportError as exc:
                unsent = isinstance(
                    exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                )
                reason = (
                    "timed out" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
                )
                log.debug("%s: %s", request, reason)
                if not idempotent and not unsent:
                    raise ImisRequestError(
                        None,
                        f"{reason}; the write may or may not have been applied",
                        request=request,
                    ) from exc
                if attempt >= self._retries:
                    raise ImisUnavailable(
                        f"iMIS did not answer {request} ({reason}) after {attempt + 1} attempts"
                    ) from exc
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            status = response.status_code
            log.debug("%s -> %d (%.0f ms)", request, status, (time.perf_counter() - started) * 1000)
            if status == 401 and auth and not refreshed:
                refreshed = True
                self._forget_token(token)
                continue
            if status == 429 or status >= 500:
                if not idempotent and status not in (429, 503):
                    return response
                retry_after = _retry_after(response)
                if attempt >= self._retries:
                    raise ImisUnavailable(
                        f"iMIS answered {status} to {request} after {attempt + 1} attempts: "
                        f"{self._message(response)}"
                    )
                if retry_after is not None and retry_after > self._max_backoff:
                    raise ImisUnavailable(
                        f"iMIS answered {status} to {request} and asked to retry after "
                        f"{retry_after:.0f} s (more than max_backoff {self._max_backoff:.0f} s)"
                    )
                self._sleep(self._delay(attempt, retry_after))
                attempt += 1
                continue
            return response

    def _message(self, response: httpx.Response) -> str:
        """What iMIS says went wrong: ``Errors.$values[0].Message``, ``Message``, or the body."""
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            errors = answer.get("Errors")
            values = errors.get("$values") if isinstance(errors, dict) else None
            if values and isinstance(values[0], dict) and values[0].get("Message"):
                return self._redact(str(values[0]["Message"]))
            if isinstance(answer.get("Message"), str) and answer["Message"]:
                return self._redact(answer["Message"])
        text = response.text.strip() or f"HTTP {response.status_code}"
        if len(text) > MESSAGE_LIMIT:
            text = text[:MESSAGE_LIMIT] + "…"
        return self._redact(text)

    def _call(self, method: str, path: str, **options: Any) -> Any:
        """A request whose 4xx becomes ``ImisRequestError``; returns the decoded JSON answer."""
        response = self._send(method, path, **options)
        request = f"{method} /{path}"
        if response.status_code == 401:
            raise ImisAuthError(
                f"iMIS refused {request} with a fresh token: {self._message(response)}"
            )
        if response.status_code >= 400:
            raise ImisRequestError(response.status_code, self._message(response), request=request)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise ImisRequestError(
                response.status_code, "the answer is not JSON", request=request
            ) from None

    # -- queries ----------------------------------------------------------------------

    def query_pages(
        self, query_name: str, parameters: Sequence[Any], page_size: int = 100
    ) -> Iterator[ImisPage]:
        """Run an IQA page by page. ``parameters`` are positional: one ``parameter=`` per
        prompt filter in the query's order, blanks included."""
        params = [("QueryName", query_name)]
        decode = decode_iqa_row if self.query_endpoint == "iqa" else decode_query_row
        tail = [("parameter", parameter_text(value, self._separator)) for value in parameters]
        path = f"api/{self.query_endpoint}"
        for items, total, offset in self._paged(path, params, tail, page_size):
            yield ImisPage([decode(item) for item in items], total, offset)

    def _paged(
        self,
        path: str,
        head: Sequence[tuple[str, str]],
        tail: Sequence[tuple[str, str]],
        page_size: int,
    ) -> Iterator[tuple[list[Any], int, int]]:
        # The documented order: QueryName, offset, limit, then the positional parameters.
        limit = max(1, min(MAX_PAGE_SIZE, page_size))
        offset = 0
        while True:
            paging = [("offset", str(offset)), ("limit", str(limit))]
            answer = self._call("GET", path, params=[*head, *paging, *tail])
            if not isinstance(answer, dict):
                raise ImisRequestError(
                    200, "the answer is not a paged result", request=f"GET /{path}"
                )
            items = answer.get("Items", {}).get("$values", [])
            yield items, int(answer.get("TotalCount") or 0), offset
            next_offset = int(answer.get("NextOffset") or 0)
            if not answer.get("HasNext") or not items:
                return
            offset = next_offset if next_offset > offset else offset + len(items)

    def prompt_filters(self, query_name: str) -> list[dict[str, Any]]:
        """The query's filters with their prompts, in the query's order (FindByPath)."""
        body = {
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
        answer = self._call("POST", "api/QueryDefinition/_execute", body=body)
        definition = answer.get("Result", answer) if isinstance(answer, dict) else None
        if not isinstance(definition, dict):
            raise ImisRequestError(
                404, f"no query at {query_name!r}", request="POST /api/QueryDefinition/_execute"
            )
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

    # -- entities ---------------------------------------------------------------------

    def _path(self, entity: str, identity: str | None = None) -> str:
        path = f"api/{quote(entity, safe='')}"
        return f"{path}/{quote(identity, safe='~')}" if identity is not None else path

    def find(self, entity: str, criteria: Mapping[str, Any]) -> list[ImisEntity]:
        """Entities whose properties equal ``criteria`` (``?Field=eq:value``), all pages."""
        params = [
            (name, "eq:" + parameter_text(value, self._separator))
            for name, value in criteria.items()
        ]
        found: list[ImisEntity] = []
        for items, _total, _offset in self._paged(self._path(entity), params, (), MAX_PAGE_SIZE):
            found.extend(decode_entity(item, entity) for item in items)
        return found

    def get(self, entity: str, identity: str) -> ImisEntity:
        return decode_entity(self._call("GET", self._path(entity, identity)) or {}, entity)

    def insert(
        self, entity: str, properties: Mapping[str, Any], *, parent: str = "Party"
    ) -> ImisEntity:
        """Add an entity; its new key comes from ``Identity.IdentityElements``."""
        body = generic_entity(entity, (), properties, parent)
        answer = self._call("POST", self._path(entity), body=body, idempotent=False)
        if isinstance(answer, dict):
            return decode_entity(answer, entity)
        return ImisEntity("", dict(properties))

    def update(
        self, entity: str, identity: str, properties: Mapping[str, Any], *, parent: str = "Party"
    ) -> ImisEntity:
        """Change the given properties. A Party is read whole, changed and put back (iMIS
        has no partial update for it); other entities get only these properties."""
        path = self._path(entity, identity)
        if entity.lower() == "party":
            party = self._call("GET", path)
            if not isinstance(party, dict):
                raise ImisRequestError(
                    None, "the Party answer is not an object", request=f"GET /{path}"
                )
            for name, value in properties.items():
                _set_party_property(party, name, value)
            answer = self._call("PUT", path, body=party)
        else:
            body = generic_entity(entity, elements_of(identity), properties, parent)
            answer = self._call("PUT", path, body=body)
        if isinstance(answer, dict):
            return decode_entity(answer, entity)
        return ImisEntity(identity, dict(properties), tuple(elements_of(identity)))

    def delete(self, entity: str, identity: str) -> None:
        self._call("DELETE", self._path(entity, identity))
