"""The iMIS REST double over real HTTP: token and 401s, IQA paging and positional
parameters, row and entity shapes against ASI's published examples (tests/golden/),
entity reads and writes, validation errors, fault controls, the request log, the pytest
fixtures and the standalone demo server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from flask_idms_webhooks.redis_server import free_port
from flask_idms_webhooks.testing import ImisDouble, QueryFilter
from flask_idms_webhooks.testing.demo import CONTACTS, demo_contacts, seed_demo

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parent.parent
QUERY = "$/Sync/Contacts"
USERNAME, PASSWORD = "manager", "secret"
CONTACT_ROWS = [
    {
        "ID": "101",
        "FirstName": "Ann",
        "LastName": "Adams",
        "Email": "ann@example.org",
        "Status": "A",
    },
    {
        "ID": "102",
        "FirstName": "Abe",
        "LastName": "Adler",
        "Email": "abe@example.org",
        "Status": "I",
    },
    {"ID": "103", "FirstName": "Bea", "LastName": "Baker", "Email": None, "Status": "A"},
    {
        "ID": "104",
        "FirstName": "Cal",
        "LastName": "adams",
        "Email": "cal@example.org",
        "Status": "A",
    },
]
SYNC_FILTERS = [
    QueryFilter("CsContact", "LastName", "StartsWith", prompt="Optional"),
    QueryFilter("CsContact", "Status", "Equal", prompt="None", value="A"),
    QueryFilter("CsContact", "ID", "In", prompt="Optional"),
]


def golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def shape(value: Any) -> Any:
    """The skeleton compared with a golden body: keys in order, ``$type`` strings kept,
    other values replaced by their JSON kind, a list by the shape of its first item."""
    if isinstance(value, dict):
        return [(k, v if k == "$type" else shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return None
    return {bool: "boolean", int: "number", float: "number", str: "string"}[type(value)]


def login(client: httpx.Client, username: str = USERNAME, password: str = PASSWORD) -> str:
    form = {"grant_type": "password", "username": username, "password": password}
    answer = client.post("/token", data=form)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def seeded() -> ImisDouble:
    """A double holding four contacts and the design's example query."""
    double = ImisDouble(username="manager", password="secret")
    double.add_entities("CsContact", CONTACT_ROWS, key="ID")
    double.add_query(
        QUERY,
        entity="CsContact",
        columns=["ID", "FirstName", "LastName", "Email"],
        filters=SYNC_FILTERS,
    )
    return double


@pytest.fixture
def double() -> Iterator[ImisDouble]:
    double = seeded()
    with double.serve():
        yield double


@pytest.fixture
def kept_alive() -> Iterator[ImisDouble]:
    """The seeded double over kept-alive connections."""
    double = seeded()
    with double.serve(keep_alive=True):
        yield double


@pytest.fixture
def api(double: ImisDouble) -> Iterator[httpx.Client]:
    """An httpx client of the double, logged in."""
    with httpx.Client(base_url=double.base_url, timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {login(client)}"
        double.reset_log()
        yield client


def rows(answer: httpx.Response) -> list[dict[str, Any]]:
    """/api/iqa rows as {Name: Value} (a wrapped Value as its $value)."""
    assert answer.status_code == 200, answer.text
    found = []
    for item in answer.json()["Items"]["$values"]:
        properties = {}
        for prop in item["Properties"]["$values"]:
            value = prop.get("Value")
            properties[prop["Name"]] = value["$value"] if isinstance(value, dict) else value
        found.append(properties)
    return found


def iqa(api: httpx.Client, *parameters: str, **extra: Any) -> httpx.Response:
    params = [("QueryName", QUERY), *extra.items(), *(("parameter", p) for p in parameters)]
    return api.get("/api/iqa", params=params)


# -- token and authorization ------------------------------------------------------------


def test_token_is_issued_for_the_password_grant(double: ImisDouble) -> None:
    with httpx.Client(base_url=double.base_url) as client:
        # iMIS reads the form keys without case (public clients send "Username", "Grant_type").
        form = {"Grant_type": "password", "Username": "MANAGER", "Password": "secret"}
        answer = client.post("/token", data=form)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["userName"] == "MANAGER"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert len(body["access_token"]) > 20


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password", "username": "manager", "password": "wrong"}, "invalid_grant"),
        ({"grant_type": "password", "username": "nobody", "password": "secret"}, "invalid_grant"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ],
)
def test_a_bad_login_answers_400(double: ImisDouble, form: dict[str, str], error: str) -> None:
    with httpx.Client(base_url=double.base_url) as client:
        answer = client.post("/token", data=form)
    assert answer.status_code == 400
    assert answer.json()["error"] == error


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic bWFuYWdlcjpzZWNyZXQ="])
def test_api_calls_need_an_issued_bearer_token(double: ImisDouble, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=double.base_url) as client:
        for path in ("/api/iqa?QueryName=$/Sync/Contacts", "/api/CsContact/101"):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 401
            assert answer.json() == golden("unauthorized")["body"]
            assert answer.headers["WWW-Authenticate"] == "Bearer"


# -- IQA: paging and positional parameters -----------------------------------------------


@pytest.fixture
def many(double: ImisDouble) -> ImisDouble:
    many = [{"ID": str(1000 + i), "LastName": f"Zed{i:03d}", "Status": "A"} for i in range(250)]
    double.add_entities("CsContact", many, key="ID")
    return double


def test_iqa_pages_with_offset_and_limit(many: ImisDouble, api: httpx.Client) -> None:
    first = iqa(api, "Zed", "", limit=100).json()
    assert (first["Offset"], first["Limit"], first["Count"]) == (0, 100, 100)
    assert (first["TotalCount"], first["HasNext"], first["NextOffset"]) == (250, True, 100)
    last = iqa(api, "Zed", "", offset=200, limit=100).json()
    assert (last["Count"], last["HasNext"], last["NextOffset"]) == (50, False, 0)
    assert last["NextPageLink"] is None
    # ResultRow numbers the whole result, not the page.
    assert rows(iqa(api, "Zed", "", offset=200, limit=2))[0]["ResultRow"] == "201"


def test_iqa_limit_defaults_to_100_and_is_capped_at_500(
    many: ImisDouble, api: httpx.Client
) -> None:
    assert iqa(api, "", "").json()["Limit"] == 100
    capped = iqa(api, "", "", limit=1000).json()
    assert (capped["Limit"], capped["Count"], capped["TotalCount"]) == (500, 253, 253)


def test_positional_parameters_apply_in_filter_order(api: httpx.Client) -> None:
    # Status = A is fixed (prompt None); the two prompts take the two parameters.
    assert [r["ID"] for r in rows(iqa(api, "", ""))] == ["101", "103", "104"]
    assert [r["ID"] for r in rows(iqa(api, "ad", ""))] == ["101", "104"]
    assert [r["ID"] for r in rows(iqa(api, "", "101,103,999"))] == ["101", "103"]
    assert [r["ID"] for r in rows(iqa(api, "AD", "104"))] == ["104"]


def test_between_and_comparisons_use_numbers_when_both_parse(double: ImisDouble) -> None:
    double.add_entities("Dues", [{"ID": str(i), "Amount": Decimal(i) * 5} for i in range(1, 30)])
    double.add_query(
        "$/Dues/Range",
        entity="Dues",
        columns=["ID", "Amount"],
        filters=[
            QueryFilter("Dues", "Amount", "Between", prompt="Required"),
            QueryFilter("Dues", "ID", "GreaterThan", prompt="Optional"),
        ],
    )
    with httpx.Client(base_url=double.base_url) as client:
        client.headers["Authorization"] = f"Bearer {login(client)}"
        params = [("QueryName", "$/Dues/Range"), ("parameter", "20,45"), ("parameter", "5")]
        found = rows(client.get("/api/iqa", params=params))
    # As text "10" < "5"; as numbers 6..9 pass the ID filter.
    assert [r["ID"] for r in found] == ["6", "7", "8", "9"]
    assert [r["Amount"] for r in found] == [30.0, 35.0, 40.0, 45.0]


def test_the_separator_is_set_per_double() -> None:
    double = ImisDouble("manager", "secret", separator="|")
    double.add_entities("CsContact", CONTACT_ROWS)
    double.add_query(QUERY, entity="CsContact", columns=["ID"], filters=SYNC_FILTERS)
    with double.serve(), httpx.Client(base_url=double.base_url) as client:
        client.headers["Authorization"] = f"Bearer {login(client)}"
        params = [("QueryName", QUERY), ("parameter", ""), ("parameter", "101|104")]
        assert [r["ID"] for r in rows(client.get("/api/iqa", params=params))] == ["101", "104"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ([], "2 prompt filter(s); 0 parameter value(s)"),
        (["", "", ""], "2 prompt filter(s); 3 parameter value(s)"),
    ],
)
def test_a_wrong_parameter_count_answers_400(
    api: httpx.Client, parameters: list[str], message: str
) -> None:
    answer = iqa(api, *parameters)
    assert answer.status_code == 400
    assert message in answer.json()["Message"]


def test_a_blank_required_parameter_and_a_bad_between_answer_400(double: ImisDouble) -> None:
    double.add_query(
        "$/Sync/Required",
        entity="CsContact",
        columns=["ID"],
        filters=[
            QueryFilter("CsContact", "LastName", "Equal", prompt="Required"),
            QueryFilter("CsContact", "ID", "Between", prompt="Optional"),
        ],
    )
    with httpx.Client(base_url=double.base_url) as client:
        client.headers["Authorization"] = f"Bearer {login(client)}"

        def run(*parameters: str) -> httpx.Response:
            tail = [("parameter", p) for p in parameters]
            return client.get("/api/iqa", params=[("QueryName", "$/Sync/Required"), *tail])

        blank = run(" ", "")
        assert blank.status_code == 400
        assert "required for filter 1 (LastName)" in blank.json()["Message"]
        between = run("Adams", "101")
        assert between.status_code == 400
        assert "Between needs two values" in between.json()["Message"]
        assert [r["ID"] for r in rows(run("adams", "100,103"))] == ["101"]


def test_an_unknown_query_answers_404(api: httpx.Client) -> None:
    answer = api.get("/api/iqa", params={"QueryName": "$/No/Such"})
    assert answer.status_code == 404
    assert answer.json()["Message"] == "The query '$/No/Such' was not found."
    assert api.get("/api/iqa").status_code == 400


def test_query_names_and_parameter_names_are_read_without_case(api: httpx.Client) -> None:
    answer = api.get(
        "/api/IQA", params=[("queryname", QUERY.upper()), ("Parameter", ""), ("PARAMETER", "")]
    )
    assert [r["ID"] for r in rows(answer)] == ["101", "103", "104"]


# -- shapes against the published examples -----------------------------------------------


def test_iqa_answer_has_the_published_shape(api: httpx.Client) -> None:
    body = iqa(api, "", "").json()
    published = golden("iqa_paged_result")["body"]
    assert shape({k: body[k] for k in published}) == shape(published)
    assert list(body) == ["$type", "Items", *paging_keys()]
    first = body["Items"]["$values"][0]
    assert list(first) == list(published["Items"]["$values"][0])
    names = [p["Name"] for p in first["Properties"]["$values"]]
    assert names == ["ResultRow", "ID", "FirstName", "LastName", "Email"]


def paging_keys() -> list[str]:
    """The published paging keys, less the two only the older Party list example has."""
    published = golden("paging_keys")
    return [k for k in published["body"] if k not in published["legacy_keys"]]


def test_iqa_values_are_wrapped_like_imis(double: ImisDouble, api: httpx.Client) -> None:
    typed = {"ID": "9", "Count": 7, "Big": 2**40, "Dues": Decimal("12.50"), "Active": True}
    double.add_entities("Typed", [{**typed, "Joined": "2024-05-01T00:00:00", "Note": None}])
    columns = ["ID", "Count", "Big", "Dues", "Active", "Joined", "Note"]
    double.add_query("$/Typed", entity="Typed", columns=columns)
    answer = api.get("/api/iqa", params={"QueryName": "$/Typed"})
    values = {p["Name"]: p for p in answer.json()["Items"]["$values"][0]["Properties"]["$values"]}
    assert values["ID"]["Value"] == "9"
    assert values["Count"]["Value"] == {"$type": "System.Int32", "$value": 7}
    assert values["Big"]["Value"] == {"$type": "System.Int64", "$value": 2**40}
    assert values["Dues"]["Value"] == {"$type": "System.Decimal", "$value": 12.5}
    assert values["Active"]["Value"] == {"$type": "System.Boolean", "$value": True}
    assert values["Joined"]["Value"] == "2024-05-01T00:00:00"
    assert "Value" not in values["Note"]
    assert list(values["Note"]) == ["$type", "Name"]


def test_a_column_can_rename_its_field(double: ImisDouble, api: httpx.Client) -> None:
    double.add_query("$/Renamed", "CsContact", [("Contact ID", "ID"), ("Surname", "LastName")])
    answer = api.get("/api/query", params={"QueryName": "$/Renamed", "limit": "1"})
    assert answer.json()["Items"]["$values"][0] == {
        "$type": "System.Dynamic.ExpandoObject, System.Core",
        "Contact ID": "101",
        "Surname": "Adams",
    }


def test_query_endpoint_answers_flat_expando_rows(api: httpx.Client) -> None:
    body = api.get(
        "/api/query", params=[("QueryName", QUERY), ("parameter", ""), ("parameter", "")]
    ).json()
    published = golden("query_paged_result")["body"]
    assert body["$type"] == published["$type"]
    assert body["Items"]["$type"] == published["Items"]["$type"]
    assert list(body) == ["$type", "Items", *paging_keys()]
    first, *_ = body["Items"]["$values"]
    assert first["$type"] == published["Items"]["$values"][0]["$type"]
    assert first == {
        "$type": "System.Dynamic.ExpandoObject, System.Core",
        "ID": "101",
        "FirstName": "Ann",
        "LastName": "Adams",
        "Email": "ann@example.org",
    }
    assert body["Items"]["$values"][1]["Email"] is None


def test_find_by_path_answers_the_prompt_filters(api: httpx.Client) -> None:
    request = golden("querydefinition_findbypath_request")["body"]
    request["Parameters"]["$values"][0]["$value"] = QUERY
    answer = api.post("/api/QueryDefinition/_execute", json=request)
    assert answer.status_code == 200
    definition = answer.json()["Result"]
    assert definition["Path"] == QUERY
    criteria = definition["Parameters"]["$values"]
    assert [
        (c["PropertyName"], c["Operation"], c["Prompt"], c["AllowMultiple"]) for c in criteria
    ] == [
        ("CsContact.LastName", "StartsWith", "Optional", False),
        ("CsContact.Status", "Equal", "None", False),
        ("CsContact.ID", "In", "Optional", True),
    ]
    assert [c["Values"]["$values"] for c in criteria] == [[], ["A"], []]
    assert [s["Name"] for s in definition["Sources"]["$values"]] == ["CsContact"]
    aliases = [p["Alias"] for p in definition["Properties"]["$values"]]
    assert aliases == ["ID", "FirstName", "LastName", "Email"]
    # A bare string parameter is read too; an unknown path has no Result.
    request["Parameters"]["$values"] = ["$/No/Such"]
    assert api.post("/api/QueryDefinition/_execute", json=request).json()["Result"] is None


# -- entities ----------------------------------------------------------------------------


def entity_ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [
        e["Identity"]["IdentityElements"]["$values"][0] for e in answer.json()["Items"]["$values"]
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"LastName": "eq:adams"}, ["101", "104"]),
        ({"LastName": "Adams"}, ["101", "104"]),
        ({"Status": "ne:A"}, ["102"]),
        ({"ID": "gt:102"}, ["103", "104"]),
        ({"ID": "le:102"}, ["101", "102"]),
        ({"Email": "Contains:@EXAMPLE"}, ["101", "102", "104"]),
        ({"FirstName": "StartsWith:a"}, ["101", "102"]),
        ({"ID": "In:101|104"}, ["101", "104"]),
        ({"ID": "Between:102|103"}, ["102", "103"]),
        ({"Email": "IsEmpty:"}, ["103"]),
        ({"LastName": "adams", "Status": "eq:A", "ID": "ge:102"}, ["104"]),
        ({"orderby": "FirstName:Descending", "limit": "2"}, ["104", "103"]),
    ],
)
def test_matching_queries_filter_entities(
    api: httpx.Client, params: dict[str, str], expected: list[str]
) -> None:
    assert entity_ids(api.get("/api/CsContact", params=params)) == expected


def test_an_entity_list_is_a_paged_generic_entity_result(api: httpx.Client) -> None:
    body = api.get("/api/CsContact", params={"limit": "3"}).json()
    assert body["$type"] == golden("iqa_paged_result")["body"]["$type"]
    assert list(body) == ["$type", "Items", *paging_keys()]
    assert (body["Count"], body["TotalCount"], body["HasNext"], body["NextOffset"]) == (
        3,
        4,
        True,
        3,
    )
    assert shape(body["Items"]["$values"][0]) == shape(golden("generic_entity_data")["body"])


def test_get_one_entity_or_404(api: httpx.Client) -> None:
    found = api.get("/api/cscontact/101")
    assert found.status_code == 200
    assert shape(found.json()) == shape(golden("generic_entity_data")["body"])
    assert found.json()["Identity"]["IdentityElements"]["$values"] == ["101"]
    assert api.get("/api/CsContact/~101|1").json()["Identity"]["IdentityElements"]["$values"] == [
        "101"
    ]
    missing = api.get("/api/CsContact/999")
    assert missing.status_code == 404
    assert "999" in missing.json()["Message"]
    assert api.get("/api/NoSuchThing").status_code == 404


def write_body(properties: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    body = golden("generic_entity_data")["body"]
    if key is None:
        del body["Identity"], body["PrimaryParentIdentity"]
    else:
        body["Identity"]["IdentityElements"]["$values"] = [key]
    body["Properties"]["$values"] = [
        {"$type": body["Properties"]["$values"][0]["$type"], "Name": n, "Value": v}
        for n, v in properties.items()
    ]
    return body


def test_post_creates_an_entity(double: ImisDouble, api: httpx.Client) -> None:
    given = api.post("/api/CsContact", json=write_body({"ID": "200", "LastName": "Cole"}))
    assert given.status_code == 201
    assert given.json()["Identity"]["IdentityElements"]["$values"] == ["200"]
    assert shape(given.json()) == shape(golden("generic_entity_data")["body"])
    numbered = api.post("/api/CsContact", json=write_body({"LastName": "Dunn"}))
    assert numbered.status_code == 201
    assert numbered.json()["Identity"]["IdentityElements"]["$values"] == ["201"]
    wrapped = {"$type": "System.Int32", "$value": 3}
    from_identity = api.post("/api/CsContact", json=write_body({"Status": wrapped}, key="300"))
    assert from_identity.json()["Identity"]["IdentityElements"]["$values"] == ["300"]
    stored = {e["ID"]: e for e in double.entities("CsContact")}
    assert list(stored) == ["101", "102", "103", "104", "200", "201", "300"]
    assert stored["201"] == {"ID": "201", "LastName": "Dunn"}
    assert stored["300"]["Status"] == 3
    duplicate = api.post("/api/CsContact", json=write_body({"ID": "101"}))
    assert duplicate.status_code == 400
    assert "already exists" in duplicate.json()["Errors"]["$values"][0]["Message"]


def test_put_changes_the_listed_properties(double: ImisDouble, api: httpx.Client) -> None:
    answer = api.put("/api/CsContact/101", json=write_body({"Email": "new@example.org"}, key="101"))
    assert answer.status_code == 200
    assert shape(answer.json()) == shape(golden("generic_entity_data")["body"])
    assert double.entities("CsContact")[0] == {**CONTACT_ROWS[0], "Email": "new@example.org"}
    assert api.put("/api/CsContact/999", json=write_body({"Email": "x"})).status_code == 404


def test_delete_removes_an_entity(double: ImisDouble, api: httpx.Client) -> None:
    assert api.delete("/api/CsContact/102").status_code == 204
    assert [e["ID"] for e in double.entities("CsContact")] == ["101", "103", "104"]
    assert api.delete("/api/CsContact/102").status_code == 404


def test_a_party_is_put_whole(double: ImisDouble, api: httpx.Client) -> None:
    person = {
        "PartyId": "101",
        "Name": "Ann Adams",
        "PersonName": {"FirstName": "Ann"},
        "Email": "a@x.org",
    }
    double.add_entities("Party", [person], key="PartyId")
    party = api.get("/api/Party/101").json()
    assert party == {"$type": "Asi.Soa.Membership.DataContracts.PartyData, Asi.Contracts", **person}
    assert entity_ids_of_contract(
        api.get("/api/Party", params={"PersonName.FirstName": "ann"})
    ) == ["101"]
    del party["Email"]
    party["PersonName"]["FirstName"] = "Anne"
    assert api.put("/api/Party/101", json=party).status_code == 200
    assert double.entities("Party") == [
        {"PartyId": "101", "Name": "Ann Adams", "PersonName": {"FirstName": "Anne"}}
    ]


def entity_ids_of_contract(answer: httpx.Response) -> list[str]:
    return [e["PartyId"] for e in answer.json()["Items"]["$values"]]


# -- rejected writes ---------------------------------------------------------------------


def test_a_rejected_write_answers_imis_validation_results(
    double: ImisDouble, api: httpx.Client
) -> None:
    double.add_validation(
        "CsContact", "Email", lambda v: v is None or "@" in str(v), "Email is not valid."
    )
    answer = api.put("/api/CsContact/101", json=write_body({"Email": "nope"}, key="101"))
    assert answer.status_code == 400
    body = answer.json()
    assert body["Errors"]["$values"][0]["Message"] == "Email is not valid."
    assert body["$type"] == "Asi.Soa.Core.DataContracts.ValidationResultsData, Asi.Contracts"
    assert body["Warnings"]["$values"] == []
    assert double.entities("CsContact")[0]["Email"] == "ann@example.org"
    unknown = api.post("/api/CsContact", json=write_body({"Shoe": "42"}))
    assert (
        unknown.json()["Errors"]["$values"][0]["Message"]
        == "Property 'Shoe' is not defined on 'CsContact'."
    )
    untyped = write_body({"LastName": "Ng"})
    del untyped["$type"]
    assert (
        "$type"
        in api.post("/api/CsContact", json=untyped).json()["Errors"]["$values"][0]["Message"]
    )


def test_bodies_that_are_not_json_are_refused(api: httpx.Client) -> None:
    as_text = api.post("/api/CsContact", content=b"{}", headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 415
    broken = api.post("/api/CsContact", content=b"{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    nan = api.post(
        "/api/CsContact", content=b'{"x": NaN}', headers={"Content-Type": "application/json"}
    )
    assert nan.status_code == 400
    assert api.patch("/api/CsContact/101", json={}).status_code == 405


# -- faults ------------------------------------------------------------------------------


def test_fail_nth_fails_that_request_once(double: ImisDouble, api: httpx.Client) -> None:
    double.fail_nth(3, status=500)
    statuses = [api.get("/api/CsContact/101").status_code for _ in range(4)]
    assert statuses == [200, 200, 500, 200]
    double.fail_nth(1, status=500)
    failed = api.get("/api/CsContact/101")
    assert failed.json()["Message"] == "An error has occurred."


def test_fail_nth_429_sends_retry_after(double: ImisDouble, api: httpx.Client) -> None:
    double.fail_nth(1, status=429, retry_after=1)
    answer = api.get("/api/CsContact/101")
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "1")
    assert api.get("/api/CsContact/101").status_code == 200


def test_faults_apply_to_the_token_endpoint(double: ImisDouble) -> None:
    double.fail_nth(1, status=503, retry_after=2)
    with httpx.Client(base_url=double.base_url) as client:
        form = {"grant_type": "password", "username": "manager", "password": "secret"}
        failed = client.post("/token", data=form)
        assert (failed.status_code, failed.headers["Retry-After"]) == (503, "2")
        assert client.post("/token", data=form).status_code == 200


def test_expire_token_once_forces_a_new_login(double: ImisDouble, api: httpx.Client) -> None:
    old = api.headers["Authorization"]
    double.expire_token_once()
    assert api.get("/api/CsContact/101").status_code == 401
    assert api.get("/api/CsContact/101").status_code == 401  # that token is gone
    api.headers["Authorization"] = f"Bearer {login(api)}"
    assert api.headers["Authorization"] != old
    assert api.get("/api/CsContact/101").status_code == 200
    assert api.get("/api/CsContact/101").status_code == 200


def test_slow_delays_every_answer_until_undone(double: ImisDouble, api: httpx.Client) -> None:
    double.slow(0.3)
    started = time.monotonic()
    api.get("/api/CsContact/101")
    assert time.monotonic() - started >= 0.3
    double.slow(0)
    assert api.get("/api/CsContact/101").status_code == 200


def test_latency_delays_entity_calls_side_by_side(kept_alive: ImisDouble) -> None:
    kept_alive.latency(0.3)
    together = threading.Barrier(6)
    answers: list[tuple[int, bool, int]] = []

    def call() -> None:
        with httpx.Client(base_url=kept_alive.base_url, timeout=10) as client:
            client.headers["Authorization"] = f"Bearer {login(client)}"
            together.wait()
            started = time.monotonic()
            entity = client.get("/api/CsContact/101").status_code
            waited = time.monotonic() - started >= 0.3
            # An IQA is not an entity call: no latency (0.3 s would not fit in the timeout).
            params = [("QueryName", QUERY), ("parameter", ""), ("parameter", "")]
            query = client.get("/api/iqa", params=params, timeout=0.25)
            answers.append((entity, waited, query.status_code))

    kept_alive.reset_peak()
    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [(200, True, 200)] * 6
    assert kept_alive.in_flight_peak == 6  # six calls waited at once, not one after another
    kept_alive.reset_peak()
    assert kept_alive.in_flight_peak == 0


@pytest.mark.parametrize("keep_alive", [True, False])
def test_kept_alive_connections_are_reused(keep_alive: bool) -> None:
    double = seeded()
    with double.serve(keep_alive=keep_alive), httpx.Client(base_url=double.base_url) as client:
        client.headers["Authorization"] = f"Bearer {login(client)}"
        answers = [client.get("/api/CsContact/101") for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        assert answers[0].headers.get("Connection") == (None if keep_alive else "close")
        assert double.connections_opened == (1 if keep_alive else 5)


def test_fail_nth_counts_from_one() -> None:
    with pytest.raises(ValueError, match="counts from 1"):
        ImisDouble().fail_nth(0)


# -- request log -------------------------------------------------------------------------


def test_the_log_keeps_the_raw_query_string(double: ImisDouble, api: httpx.Client) -> None:
    raw = "QueryName=%24%2FSync%2FContacts&offset=0&limit=100&parameter=&parameter=101%2C103"
    assert api.get(f"/api/iqa?{raw}").status_code == 200
    api.post("/api/CsContact", json=write_body({"LastName": "Ng"}))
    first, second = double.requests
    assert (first.method, first.path, first.query) == ("GET", "/api/iqa", raw)
    assert first.form is None and first.json is None
    assert first.headers["Authorization"] == api.headers["Authorization"]
    assert (second.method, second.path, second.query) == ("POST", "/api/CsContact", "")
    assert second.json["Properties"]["$values"][0]["Value"] == "Ng"
    double.reset_log()
    assert double.requests == []


def test_the_log_keeps_the_token_form(double: ImisDouble) -> None:
    form = {"grant_type": "password", "username": "manager", "password": "wrong-but-logged"}
    with httpx.Client(base_url=double.base_url) as client:
        assert client.post("/token", data=form).status_code == 400
    (entry,) = [r for r in double.requests if r.path == "/token"]
    assert entry.form == form


# -- serving, fixtures and the demo ------------------------------------------------------


@pytest.mark.parametrize("keep_alive", [False, True])
def test_serving_stops_cleanly_and_can_start_again(keep_alive: bool) -> None:
    double = ImisDouble()
    with httpx.Client(timeout=5) as kept:
        with double.serve(keep_alive=keep_alive) as base_url:
            assert base_url == double.base_url and base_url.startswith("http://127.0.0.1:")
            kept.base_url = base_url
            login(kept)
        with pytest.raises(RuntimeError, match="not serving"):
            _ = double.base_url
        with pytest.raises(httpx.TransportError):
            kept.post("/token")
    with double.serve(keep_alive=keep_alive) as again, httpx.Client(base_url=again) as client:
        login(client)


PLUGIN_CONFTEST = 'pytest_plugins = ["flask_idms_webhooks.testing"]\n'
PLUGIN_TEST = """
import os

import httpx
import pytest


def test_fixtures(imis_double, imis_credentials):
    assert imis_credentials["base_url"] == imis_double.base_url == os.environ["IMIS_BASE_URL"]
    assert os.environ["IMIS_USERNAME"] == imis_credentials["username"] == "manager"
    form = {"grant_type": "password", "username": "manager", "password": "secret"}
    with httpx.Client(base_url=imis_double.base_url) as client:
        assert client.post("/token", data=form).status_code == 200
    with pytest.raises(KeyError):
        imis_double.entities("CsContact")
"""


def test_the_fixtures_work_as_a_pytest_plugin(tmp_path: Path) -> None:
    """What a user writes: ``pytest_plugins`` in a conftest, then the two fixtures."""
    (tmp_path / "conftest.py").write_text(PLUGIN_CONFTEST)
    (tmp_path / "test_uses_double.py").write_text(PLUGIN_TEST)
    command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_query_filters_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        QueryFilter("CsContact", "ID", "Like")
    with pytest.raises(ValueError, match="needs a value"):
        QueryFilter("CsContact", "ID", "Equal", prompt="None")


def test_the_demo_data() -> None:
    contacts = demo_contacts()
    assert len(contacts) == CONTACTS == 300
    assert len({c["Email"] for c in contacts}) == CONTACTS
    double = ImisDouble()
    seed_demo(double)
    with double.serve(), httpx.Client(base_url=double.base_url) as client:
        client.headers["Authorization"] = f"Bearer {login(client)}"
        params = [
            ("QueryName", "$/Demo/Contacts"),
            ("parameter", ""),
            ("parameter", "LIFE"),
            ("parameter", ""),
        ]
        body = client.get("/api/iqa", params=params).json()
    active_life = [c for c in contacts if c["Status"] == "A" and c["MemberType"] == "LIFE"]
    assert body["TotalCount"] == len(active_life) > 0


def test_the_module_serves_the_demo_until_interrupted() -> None:
    port = free_port()
    command = [sys.executable, "-m", "flask_idms_webhooks.testing", "--port", str(port), "--demo"]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as server:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                token = wait_for_token(client, server)
                params = {"QueryName": "$/Demo/Contacts", "limit": "5"}
                params_list = [
                    *params.items(),
                    ("parameter", ""),
                    ("parameter", ""),
                    ("parameter", ""),
                ]
                answer = client.get(
                    "/api/query", params=params_list, headers={"Authorization": f"Bearer {token}"}
                )
            assert answer.status_code == 200
            assert answer.json()["Count"] == 5
        finally:
            server.send_signal(signal.SIGINT)
            _, err = server.communicate(timeout=10)
    assert server.returncode == 0, err
    assert f"http://127.0.0.1:{port}" in err.decode()


def wait_for_token(client: httpx.Client, server: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            return login(client)
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
