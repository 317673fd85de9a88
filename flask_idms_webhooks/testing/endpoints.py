"""The double's ``/api`` routes: ``iqa`` and ``query`` (an IQA, paged), ``QueryDefinition/
_execute`` (FindByPath), and ``{Entity}[/{id}]`` (GET with ``Field=op:value`` filters, POST,
PUT, DELETE). Route, parameter and entity names are read without case, as iMIS does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

from flask import Request, Response

from . import shapes
from .entities import BodyError, EntityTable
from .operators import SPELLINGS, Condition, FilterValueError, lookup, split
from .queries import QueryParameterError, execute_result
from .state import DoubleState

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
#: What separates the values of ``in:`` and ``between:`` on the entity routes (ASI's
#: reference: ``?PartyId=in:101|104``); an IQA's packed parameters use the site's separator.
ENTITY_SEPARATOR = "|"
#: Query-string names the entity routes keep for themselves (not property filters).
RESERVED = frozenset({"offset", "limit", "orderby"})
JSON_TYPES = ("application/json", "text/json")

Params = list[tuple[str, str]]


class ApiError(Exception):
    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})


def fail(status: int, message: str) -> NoReturn:
    raise ApiError(status, shapes.http_error(message))


def answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    text = "" if body is None else shapes.dumps(body)
    kind = "application/json; charset=utf-8"
    return Response(text, status=status, headers=dict(headers or {}), content_type=kind)


def route_api(state: DoubleState, req: Request, segments: list[str]) -> Response:
    params: Params = list(req.args.items(multi=True))
    names = [s.lower() for s in segments]
    if names in (["iqa"], ["query"]):
        allow(req, "GET")
        return run_query(state, params, dynamic=names == ["query"])
    if names == ["querydefinition", "_execute"]:
        allow(req, "POST")
        return find_by_path(state, json_body(req))
    if not segments or len(segments) > 2:
        fail(404, f"No HTTP resource was found that matches the request URI '{req.path}'.")
    table = state.table(segments[0])
    if table is None:
        fail(404, f"The entity type '{segments[0]}' was not found.")
    if len(segments) == 1:
        allow(req, "GET", "POST")
        if req.method == "GET":
            return list_entities(state, table, params)
        return write(state, table, None, json_body(req))
    allow(req, "GET", "PUT", "DELETE")
    key = table.record_key(segments[1])
    with state.lock:
        if key not in table.records:
            fail(404, f"No {table.name} was found with the identity '{segments[1]}'.")
        if req.method == "GET":
            return answer(table.shape(table.records[key]))
        if req.method == "DELETE":
            del table.records[key]
            return answer(None, 204)
    return write(state, table, key, json_body(req))


def allow(req: Request, *methods: str) -> None:
    if req.method not in methods:
        message = f"The requested resource does not support http method '{req.method}'."
        raise ApiError(405, shapes.http_error(message), {"Allow": ", ".join(methods)})


def json_body(req: Request) -> Any:
    if req.mimetype not in JSON_TYPES:
        kind = req.mimetype or "none"
        fail(415, f"The request entity's media type '{kind}' is not supported for this resource.")
    try:
        return json.loads(req.get_data(as_text=True), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        fail(400, "The request body is not valid JSON.")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def first(params: Params, name: str) -> str | None:
    return next((value for key, value in params if key.lower() == name.lower()), None)


def window(params: Params) -> tuple[int, int]:
    """``offset`` and ``limit``: 100 rows by default, 500 at most."""
    try:
        offset = int(first(params, "offset") or 0)
        limit = int(first(params, "limit") or 0)
    except ValueError:
        fail(400, "offset and limit must be integers.")
    limit = DEFAULT_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)
    return max(offset, 0), limit


def run_query(state: DoubleState, params: Params, *, dynamic: bool) -> Response:
    name = first(params, "QueryName")
    if not name:
        fail(400, "QueryName is required.")
    query = state.query(name)
    if query is None:
        fail(404, f"The query '{name}' was not found.")
    parameters = [value for key, value in params if key.lower() == "parameter"]
    offset, limit = window(params)
    with state.lock:
        try:
            conditions = query.conditions(parameters, state.separator)
        except QueryParameterError as error:
            fail(400, str(error))
        table = state.table(query.entity)
        rows = table.find(conditions) if table else []
        chosen = rows[offset : offset + limit]
        items = []
        for number, row in enumerate(chosen, start=offset + 1):
            cells = [(alias, lookup(row, field)) for alias, field in query.columns]
            if dynamic:
                items.append(shapes.expando_row(cells))
            else:
                items.append(shapes.iqa_row(str(query.number), number, cells))
    return answer(shapes.paged(items, offset=offset, limit=limit, total=len(rows), dynamic=dynamic))


def find_by_path(state: DoubleState, body: Any) -> Response:
    operation = body.get("OperationName") if isinstance(body, Mapping) else None
    if not isinstance(operation, str) or operation.lower() != "findbypath":
        fail(400, f"The double's QueryDefinition supports FindByPath only, not {operation!r}.")
    values = lookup(body, "Parameters.$values")
    path = shapes.unwrapped(values[0]) if isinstance(values, list) and values else None
    if not isinstance(path, str) or not path:
        fail(400, "FindByPath needs the query path as its one parameter.")
    query = state.query(path)
    return answer(query.definition() if query else execute_result(None))


def entity_conditions(table: EntityTable, params: Params) -> list[Condition]:
    """``Field=op:value`` pairs (``Field=value`` is Equal), all of which must hold."""
    found = []
    for name, raw in params:
        if name.lower() in RESERVED:
            continue
        if "." not in name and table.fields and name.lower() not in map(str.lower, table.fields):
            fail(400, f"Property '{name}' is not defined on '{table.name}'.")
        prefix, colon, rest = raw.partition(":")
        operation = SPELLINGS.get(prefix.strip().lower()) if colon else None
        operation, value = (operation, rest) if operation else ("Equal", raw)
        try:
            found.append(Condition(name, operation, split(value, operation, ENTITY_SEPARATOR)))
        except FilterValueError as error:
            fail(400, str(error))
    return found


def list_entities(state: DoubleState, table: EntityTable, params: Params) -> Response:
    offset, limit = window(params)
    with state.lock:
        conditions = entity_conditions(table, params)
        rows = table.find(conditions, first(params, "orderby"))
        items = [table.shape(row) for row in rows[offset : offset + limit]]
    return answer(shapes.paged(items, offset=offset, limit=limit, total=len(rows), dynamic=False))


def write(state: DoubleState, table: EntityTable, key: str | None, body: Any) -> Response:
    """POST (``key`` None) answers 201 with the new entity; PUT answers 200."""
    with state.lock:
        try:
            if key is None:
                return answer(table.shape(table.insert(body)), 201)
            if key not in table.records:
                fail(404, f"No {table.name} was found with the identity '{key}'.")
            return answer(table.shape(table.update(key, body)))
        except BodyError as error:
            return answer(shapes.validation_errors(error.messages), 400)
