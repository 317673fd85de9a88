"""The iMIS REST client and its source/target adapters.

First the exact wire behaviour over ``httpx.MockTransport``, replaying ASI's published shapes
(``tests/golden_client/*.json``, each naming its source); then the same client over real
HTTP against the package's iMIS double, with its injected faults.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flask_idms_webhooks.iupdate.base import (
    FilterValue,
    RowWriteError,
    SourceReadError,
    TargetUnavailable,
)
from flask_idms_webhooks.iupdate.imis import (
    ImisAuthError,
    ImisClient,
    ImisEntity,
    ImisRequestError,
    ImisSource,
    ImisTarget,
    ImisUnavailable,
)
from flask_idms_webhooks.model.tasks import FilterRow, Operator, Prompt
from flask_idms_webhooks.testing import ImisDouble, QueryFilter, RecordedRequest

GOLDEN = Path(__file__).parent / "golden_client"
BASE = "https://imis.example.org/iMIS"
IDENTITY = "Asi.Soa.Core.DataContracts.IdentityData, Asi.Contracts"
STRINGS = "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib"


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    assert data["source"], f"{name}.json must name its source"
    return data


Answer = Callable[[httpx.Request], httpx.Response]


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return answer


def fail(error: type[httpx.TransportError]) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error("injected", request=request)

    return answer


def token_answer(access: str = "golden-access-token", expires_in: int = 1199) -> Answer:
    return reply(
        200, {**golden("token")["answer"], "access_token": access, "expires_in": expires_in}
    )


class FakeImis:
    """A MockTransport handler: answers per (method, path) in order, the last one repeating."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.on("POST", "/token", token_answer())

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.routes[(method, "/iMIS" + path)] = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes[(request.method, request.url.path)]
        return (answers.pop(0) if len(answers) > 1 else answers[0])(request)

    def api(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.startswith("/iMIS/api/")]

    def tokens(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/iMIS/token"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeImis:
    return FakeImis()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(fake: FakeImis, sleeps: list[float], clock: Clock) -> Iterator[Callable[..., ImisClient]]:
    clients: list[ImisClient] = []

    def make_client(**options: Any) -> ImisClient:
        options.setdefault("password", "secret")
        client = ImisClient(
            BASE + "/",
            "manager",
            transport=httpx.MockTransport(fake),
            sleep=sleeps.append,
            clock=clock,
            **options,
        )
        clients.append(client)
        return client

    yield make_client
    for client in clients:
        client.close()


def query(request: httpx.Request) -> str:
    return request.url.query.decode()


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def iqa_pages() -> tuple[dict[str, Any], dict[str, Any]]:
    first = golden("iqa_answer")["answer"]
    last = copy.deepcopy(first)
    last.update(Offset=100, HasNext=False, NextOffset=0)
    return first, last


# -- token ---------------------------------------------------------------------------------


def test_token_is_a_password_grant_form_and_is_reused(fake: FakeImis, make: Any) -> None:
    client = make()
    assert client.token() == "golden-access-token"
    assert client.token() == "golden-access-token"
    [sent] = fake.tokens()
    want = golden("token")
    assert sent.url.path == "/iMIS" + want["request_path"]
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.content == b"grant_type=password&username=manager&password=secret"
    assert dict(httpx.QueryParams(sent.content.decode())) == want["request_form"]


def test_token_form_encodes_special_characters(fake: FakeImis, make: Any) -> None:
    make(password="p&ss=wörd +1").token()
    assert fake.tokens()[0].content == (
        b"grant_type=password&username=manager&password=p%26ss%3Dw%C3%B6rd+%2B1"
    )


def test_token_is_renewed_before_it_expires(fake: FakeImis, make: Any, clock: Clock) -> None:
    fake.on("POST", "/token", token_answer("t1", 600), token_answer("t2", 600))
    client = make()
    assert client.token() == "t1"
    clock.now += 600 - 61  # still more than the 60 s margin left
    assert client.token() == "t1"
    clock.now += 2
    assert client.token() == "t2"


def test_bad_login_says_why_and_never_shows_the_password(fake: FakeImis, make: Any) -> None:
    bad = golden("token_invalid_grant")
    fake.on("POST", "/token", reply(bad["status"], bad["answer"]))
    client = make(password="hunter2-secret")
    with pytest.raises(ImisAuthError) as caught:
        client.token()
    assert str(caught.value) == "iMIS refused the login: " + bad["answer"]["error_description"]
    assert "hunter2" not in repr(client)
    # A server that echoes the password still does not get it into the message.
    fake.on("POST", "/token", reply(400, {"error_description": "no user for hunter2-secret"}))
    with pytest.raises(ImisAuthError) as caught:
        client.token()
    assert "hunter2" not in str(caught.value)
    assert isinstance(caught.value, SourceReadError | TargetUnavailable)


# -- the IQA ---------------------------------------------------------------------------


def test_iqa_parameters_are_positional_in_order_with_blanks_encoded(
    fake: FakeImis, make: Any
) -> None:
    fake.on("GET", "/api/iqa", reply(200, golden("query_answer")["answer"]))
    values = ["Smith", None, "a&b=c d", "été/ü", True, ["M", "S"], "", False, 42]
    list(make().query_pages("$/Sync/Contacts", values))
    [sent] = fake.api()
    assert sent.url.path == "/iMIS/api/iqa"
    assert query(sent) == (
        "QueryName=%24%2FSync%2FContacts&offset=0&limit=100"
        "&parameter=Smith&parameter=&parameter=a%26b%3Dc+d&parameter=%C3%A9t%C3%A9%2F%C3%BC"
        "&parameter=true&parameter=M%2CS&parameter=&parameter=false&parameter=42"
    )
    assert sent.headers["Authorization"] == "Bearer golden-access-token"


def test_between_and_in_values_are_joined_with_the_connection_separator(
    fake: FakeImis, make: Any
) -> None:
    fake.on("GET", "/api/iqa", reply(200, golden("query_answer")["answer"]))
    list(make(separator="|").query_pages("$/Q", [["2024-01-01", "2024-12-31"], []]))
    assert query(fake.api()[0]).endswith("&parameter=2024-01-01%7C2024-12-31&parameter=")


def test_iqa_rows_are_decoded_from_asi_generic_entity_data(fake: FakeImis, make: Any) -> None:
    first, last = iqa_pages()
    fake.on("GET", "/api/iqa", reply(200, first), reply(200, last))
    pages = list(make().query_pages("$/Sync/Contacts", [], page_size=100))
    assert [page.offset for page in pages] == [0, 100]
    assert pages[0].total == 5306
    assert pages[0].rows == [
        {"ID": "363593", "Company_Name": " fecMUSIC", "Address1": "787 Adelaide St., North",
         "City": "London"},
        {"ID": 13280, "Company_Name": "Acme Rides", "Address1": None, "City": "Orlando"},
    ]  # fmt: skip
    assert [query(r) for r in fake.api()] == [
        "QueryName=%24%2FSync%2FContacts&offset=0&limit=100",
        "QueryName=%24%2FSync%2FContacts&offset=100&limit=100",
    ]


def test_paging_stops_when_has_next_is_false_and_the_page_size_is_capped(
    fake: FakeImis, make: Any
) -> None:
    answer = golden("iqa_answer")["answer"]
    answer.update(HasNext=False, NextOffset=0)
    fake.on("GET", "/api/iqa", reply(200, answer))
    assert len(list(make().query_pages("$/Q", [], page_size=5000))) == 1
    assert query(fake.api()[0]) == "QueryName=%24%2FQ&offset=0&limit=500"


def test_query_endpoint_rows_are_flat_expando_objects(fake: FakeImis, make: Any) -> None:
    fake.on("GET", "/api/query", reply(200, golden("query_answer")["answer"]))
    [page] = list(make(query_endpoint="query").query_pages("$/Directory", ["CORP"]))
    assert fake.api()[0].url.path == "/iMIS/api/query"
    assert page.total == 1
    [row] = page.rows
    assert "$type" not in row
    assert row["FullName"] == "A&O Shearman"
    assert row["ID"] == 65
    assert row["Company"] is None
    assert row["filter-Member Type"] == "CORP"
    assert row["ExcludeDirectory"] is False


def test_query_endpoint_must_be_iqa_or_query() -> None:
    with pytest.raises(ValueError, match="query_endpoint"):
        ImisClient(BASE, "manager", "secret", query_endpoint="sql")


# -- retries ---------------------------------------------------------------------------


def test_a_401_fetches_a_new_token_once_and_retries(fake: FakeImis, make: Any) -> None:
    denied = golden("unauthorized")
    fake.on("POST", "/token", token_answer("t1"), token_answer("t2"))
    fake.on("GET", "/api/iqa", reply(401, denied["answer"]), reply(200, iqa_pages()[1]))
    [page] = list(make().query_pages("$/Q", []))
    assert len(page.rows) == 2
    assert [r.headers["Authorization"] for r in fake.api()] == ["Bearer t1", "Bearer t2"]
    assert len(fake.tokens()) == 2


def test_a_second_401_after_a_fresh_token_is_an_auth_error(fake: FakeImis, make: Any) -> None:
    denied = golden("unauthorized")
    fake.on("GET", "/api/iqa", reply(401, denied["answer"]))
    with pytest.raises(ImisAuthError, match="Authorization has been denied"):
        list(make().query_pages("$/Q", []))
    assert len(fake.api()) == 2
    assert len(fake.tokens()) == 2


def test_429_honours_retry_after(fake: FakeImis, make: Any, sleeps: list[float]) -> None:
    fake.on(
        "GET", "/api/iqa", reply(429, "slow down", {"Retry-After": "2"}), reply(200, iqa_pages()[1])
    )
    list(make().query_pages("$/Q", []))
    assert sleeps == [2.0]
    assert len(fake.api()) == 2


def test_5xx_then_success_backs_off(fake: FakeImis, make: Any, sleeps: list[float]) -> None:
    fake.on(
        "GET", "/api/iqa", reply(500, "boom"), reply(502, "bad gateway"), reply(200, iqa_pages()[1])
    )
    list(make().query_pages("$/Q", []))
    assert sleeps == [0.5, 1.0]


def test_retries_exhausted_is_unavailable_with_capped_backoff(
    fake: FakeImis, make: Any, sleeps: list[float]
) -> None:
    fake.on("GET", "/api/iqa", reply(503, "<html>Service Unavailable</html>"))
    with pytest.raises(ImisUnavailable) as caught:
        list(make(retries=4, backoff=0.5, max_backoff=1.5).query_pages("$/Q", ["Smith"]))
    assert sleeps == [0.5, 1.0, 1.5, 1.5]
    assert len(fake.api()) == 5
    assert str(caught.value) == (
        "iMIS answered 503 to GET /api/iqa after 5 attempts: <html>Service Unavailable</html>"
    )
    assert "Smith" not in str(caught.value)
    assert isinstance(caught.value, TargetUnavailable | SourceReadError)


def test_a_retry_after_beyond_max_backoff_gives_up_at_once(
    fake: FakeImis, make: Any, sleeps: list[float]
) -> None:
    fake.on("GET", "/api/iqa", reply(429, "", {"Retry-After": "3600"}))
    with pytest.raises(ImisUnavailable, match="retry after 3600 s"):
        list(make().query_pages("$/Q", []))
    assert sleeps == []


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError])
def test_network_errors_and_timeouts_are_retried(
    fake: FakeImis, make: Any, sleeps: list[float], error: type[httpx.TransportError]
) -> None:
    fake.on("GET", "/api/iqa", fail(error), fail(error), reply(200, iqa_pages()[1]))
    list(make().query_pages("$/Q", []))
    assert sleeps == [0.5, 1.0]


def test_timeouts_until_the_end_are_unavailable(fake: FakeImis, make: Any) -> None:
    fake.on("GET", "/api/iqa", fail(httpx.ReadTimeout))
    with pytest.raises(ImisUnavailable, match=r"GET /api/iqa \(timed out\) after 3 attempts"):
        list(make(retries=2).query_pages("$/Q", []))


def test_the_token_endpoint_is_retried_too(fake: FakeImis, make: Any, sleeps: list[float]) -> None:
    fake.on("POST", "/token", reply(503, ""), fail(httpx.ConnectError), token_answer())
    assert make().token() == "golden-access-token"
    assert sleeps == [0.5, 1.0]


# -- writes --------------------------------------------------------------------------------


def test_insert_sends_asi_generic_entity_data(fake: FakeImis, make: Any) -> None:
    want = golden("panel_insert")
    echo = copy.deepcopy(want["body"])
    echo["Identity"] = {
        "$type": IDENTITY,
        "EntityTypeName": "ACH_MarketingGroups",
        "IdentityElements": {"$type": STRINGS, "$values": ["23025"]},
    }
    fake.on("POST", "/api/ACH_MarketingGroups", reply(201, echo))
    made = make().insert("ACH_MarketingGroups", {"ID": "23025", "GroupName": "PE Teachers"})
    assert made == ImisEntity("23025", {"ID": "23025", "GroupName": "PE Teachers"})
    [sent] = fake.api()
    assert sent.url.path == "/iMIS" + want["request_path"]
    assert sent.headers["Content-Type"] == "application/json"
    sent_body = body(sent)
    assert sent_body.pop("Identity") == {"$type": IDENTITY, "EntityTypeName": "ACH_MarketingGroups"}
    assert sent_body == want["body"]


def test_update_sends_only_the_given_properties_with_the_identity(
    fake: FakeImis, make: Any
) -> None:
    want = golden("panel_update")
    fake.on("PUT", "/api/ACH_SpecialOffers/23025", reply(200, None))
    made = make().update(
        "ACH_SpecialOffers", "23025", {"ID": "23025", "SAC2020Used": True, "SAC2020Qualify": False}
    )
    assert made.identity == "23025"
    [sent] = fake.api()
    assert sent.url.path == "/iMIS" + want["request_path"]
    sent_body = body(sent)
    assert sent_body.pop("Identity") == {
        "$type": IDENTITY,
        "EntityTypeName": "ACH_SpecialOffers",
        "IdentityElements": {"$type": STRINGS, "$values": ["23025"]},
    }
    assert sent_body == want["body"]


def test_write_values_are_typed_as_imis_expects(fake: FakeImis, make: Any) -> None:
    from datetime import date
    from decimal import Decimal

    fake.on("PUT", "/api/CsContact/7", reply(200, None))
    make().update(
        "CsContact", "7",
        {"Count": 3, "Big": 2**40, "Fee": Decimal("12.50"), "Joined": date(2024, 5, 1),
         "Note": "ok", "Gone": None},
    )  # fmt: skip
    values = {p["Name"]: p["Value"] for p in body(fake.api()[0])["Properties"]["$values"]}
    assert values == {
        "Count": {"$type": "System.Int32", "$value": 3},
        "Big": {"$type": "System.Int64", "$value": 2**40},
        "Fee": {"$type": "System.Decimal", "$value": 12.5},
        "Joined": "2024-05-01",
        "Note": "ok",
        "Gone": None,
    }


def test_party_update_reads_the_whole_object_changes_it_and_puts_it_back(
    fake: FakeImis, make: Any
) -> None:
    party = golden("party")["answer"]
    fake.on("GET", "/api/Party/23025", reply(200, party))
    fake.on("PUT", "/api/Party/23025", reply(200, party))
    make().update(
        "Party", "23025",
        {"Chapter": "NSW", "customertypecode": "S", "PersonName.FirstName": "Joanne"},
    )  # fmt: skip
    get, put = fake.api()
    assert (get.method, put.method) == ("GET", "PUT")
    expected = copy.deepcopy(party)
    attributes = {a["Name"]: a for a in expected["AdditionalAttributes"]["$values"]}
    attributes["Chapter"]["Value"] = "NSW"
    attributes["CustomerTypeCode"]["Value"] = "S"
    expected["PersonName"]["FirstName"] = "Joanne"
    assert body(put) == expected


def test_party_update_refuses_an_unknown_property_before_writing(fake: FakeImis, make: Any) -> None:
    fake.on("GET", "/api/Party/23025", reply(200, golden("party")["answer"]))
    with pytest.raises(ImisRequestError, match="no property 'Shoe'"):
        make().update("Party", "23025", {"Shoe": "42"})
    assert [r.method for r in fake.api()] == ["GET"]


def test_write_errors_take_the_message_from_errors_values(fake: FakeImis, make: Any) -> None:
    error = golden("write_error")
    fake.on("POST", "/api/ACH_MarketingGroups", reply(error["status"], error["answer"]))
    with pytest.raises(ImisRequestError) as caught:
        make().insert("ACH_MarketingGroups", {"ID": "1"})
    assert caught.value.status == 400
    assert caught.value.message == "GroupName is required."
    assert isinstance(caught.value, RowWriteError)


def test_write_errors_without_errors_values_keep_the_raw_body_truncated(
    fake: FakeImis, make: Any
) -> None:
    fake.on("PUT", "/api/CsContact/1", reply(400, "x" * 2000))
    with pytest.raises(ImisRequestError) as caught:
        make().update("CsContact", "1", {"Email": "a@b.org"})
    assert caught.value.message == "x" * 500 + "…"


def test_an_insert_is_not_repeated_when_its_outcome_is_unknown(
    fake: FakeImis, make: Any, sleeps: list[float]
) -> None:
    fake.on("POST", "/api/CsContact", reply(500, "boom"))
    with pytest.raises(ImisRequestError, match="500"):
        make().insert("CsContact", {"ID": "1"})
    fake.on("POST", "/api/CsContact", fail(httpx.ReadTimeout))
    with pytest.raises(ImisRequestError, match="may or may not have been applied"):
        make().insert("CsContact", {"ID": "1"})
    assert len(fake.api()) == 2
    assert sleeps == []


def test_an_insert_is_retried_when_imis_surely_did_not_take_it(
    fake: FakeImis, make: Any, sleeps: list[float]
) -> None:
    fake.on(
        "POST", "/api/CsContact",
        fail(httpx.ConnectError), reply(429, "", {"Retry-After": "1"}), reply(503, ""),
        reply(201, None),
    )  # fmt: skip
    make().insert("CsContact", {"ID": "1"})
    assert sleeps == [0.5, 1.0, 2.0]


def test_find_matches_with_eq_and_reads_every_page(fake: FakeImis, make: Any) -> None:
    row = copy.deepcopy(golden("panel_update")["body"])
    row["Identity"] = {
        "$type": IDENTITY, "EntityTypeName": "ACH_SpecialOffers",
        "IdentityElements": {"$type": STRINGS, "$values": ["23025"]},
    }  # fmt: skip
    page = {**iqa_pages()[0], "Items": {"$values": [row]}, "NextOffset": 500}
    fake.on(
        "GET", "/api/ACH_SpecialOffers", reply(200, page), reply(200, {**page, "HasNext": False})
    )
    found = make().find("ACH_SpecialOffers", {"Email": "jo@example.org", "Name": "O'Brien & Co"})
    assert [f.identity for f in found] == ["23025", "23025"]
    assert found[0].properties == {"ID": "23025", "SAC2020Used": True, "SAC2020Qualify": False}
    assert [query(r) for r in fake.api()] == [
        "Email=eq%3Ajo%40example.org&Name=eq%3AO%27Brien+%26+Co&offset=0&limit=500",
        "Email=eq%3Ajo%40example.org&Name=eq%3AO%27Brien+%26+Co&offset=500&limit=500",
    ]


def test_find_in_sends_asi_s_in_form_and_refuses_a_value_with_its_separator(
    fake: FakeImis, make: Any
) -> None:
    want = golden("find_in")
    party = {**golden("party")["answer"], "PartyId": "104"}
    page = {**iqa_pages()[0], "Items": {"$values": [party]}, "HasNext": False}
    fake.on("GET", want["request_path"], reply(200, page))
    field, _, form = want["request_query"].partition("=")
    found = make().find_in("Party", field, ["101", 104])
    assert [f.identity for f in found] == ["104"]
    sent = fake.api()[0]
    assert sent.url.path == "/iMIS" + want["request_path"]
    assert sent.url.params.get_list(field) == [form]
    with pytest.raises(ValueError, match="without"):
        make().find_in("Party", field, ["a|b"])


def test_get_404_and_delete_with_a_composite_key(fake: FakeImis, make: Any) -> None:
    fake.on("GET", "/api/CsContact/9", reply(404, {"Message": "No CsContact with key 9."}))
    fake.on("DELETE", "/api/Rel/~23025|3", reply(200, None))
    client = make()
    with pytest.raises(ImisRequestError) as caught:
        client.get("CsContact", "9")
    assert (caught.value.status, caught.value.message) == (404, "No CsContact with key 9.")
    assert client.delete("Rel", "~23025|3") is None
    assert fake.api()[-1].url.raw_path == b"/iMIS/api/Rel/~23025%7C3"


def test_get_party_uses_the_party_id(fake: FakeImis, make: Any) -> None:
    fake.on("GET", "/api/Party/23025", reply(200, golden("party")["answer"]))
    party = make().get("Party", "23025")
    assert party.identity == "23025"
    assert party.properties["Chapter"] == "VIC"


def test_prompt_filters_use_find_by_path(fake: FakeImis, make: Any) -> None:
    definition = golden("query_definition")
    fake.on("POST", "/api/QueryDefinition/_execute", reply(200, definition["answer"]))
    filters = make().prompt_filters("$/Sync/Contacts")
    assert body(fake.api()[0]) == definition["request_body"]
    assert filters == [
        {"PropertyName": "CsContact.LastName", "BusinessObject": "CsContact",
         "Column": "LastName", "Operation": 8, "Prompt": "Optional", "AllowMultiple": False,
         "Values": [""]},
        {"PropertyName": "S2.MemberType", "BusinessObject": "CsMembership",
         "Column": "MemberType", "Operation": 10, "Prompt": "Required", "AllowMultiple": True,
         "Values": ["M", "S"]},
    ]  # fmt: skip


def test_debug_logs_carry_the_path_only(
    fake: FakeImis, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake.on("GET", "/api/iqa", reply(500, ""), reply(200, iqa_pages()[1]))
    with caplog.at_level(logging.DEBUG, logger="flask_idms_webhooks"):
        list(make(password="pa55word").query_pages("$/Q", ["jo.private@example.org"]))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /api/iqa -> 500" in text
    for secret in ("jo.private", "parameter", "pa55word", "golden-access-token", "QueryName"):
        assert secret not in text


def test_the_client_is_a_context_manager(fake: FakeImis) -> None:
    with ImisClient(BASE, "manager", "secret", transport=httpx.MockTransport(fake)) as client:
        client.token()
    with pytest.raises(RuntimeError, match="closed"):
        client.get("CsContact", "1")


# -- adapters ------------------------------------------------------------------------------


def filter_value(key: str, value: Any, prompt: Prompt = Prompt.OPTIONAL) -> FilterValue:
    return FilterValue(key, FilterRow("CsContact", key, Operator.EQUAL, prompt=prompt), value)


def test_source_sends_prompt_filters_only_and_the_total_on_the_first_page(
    fake: FakeImis, make: Any
) -> None:
    first, last = iqa_pages()
    fake.on("GET", "/api/iqa", reply(200, first), reply(200, last))
    source = ImisSource(make(), "$/Sync/Contacts", page_size=100)
    filters = [
        filter_value("LastName", "Smith"),
        filter_value("Status", "A", Prompt.NONE),
        filter_value("City", None, Prompt.REQUIRED),
        filter_value("Joined", ["2024-01-01", "2024-12-31"]),
    ]
    pages = list(source.pages(filters))
    assert [p.total for p in pages] == [5306, None]
    assert len(pages[0].rows) == 2
    assert query(fake.api()[0]).endswith(
        "&parameter=Smith&parameter=&parameter=2024-01-01%2C2024-12-31"
    )


def test_source_read_failures_are_source_read_errors(fake: FakeImis, make: Any) -> None:
    fake.on("GET", "/api/iqa", reply(400, {"Message": "Query not found."}))
    with pytest.raises(SourceReadError, match=r"IQA '\$/Nope'.*Query not found"):
        list(ImisSource(make(), "$/Nope").pages([]))


def test_target_maps_records_and_errors(fake: FakeImis, make: Any) -> None:
    row = copy.deepcopy(golden("panel_update")["body"])
    row["Identity"] = {"$type": IDENTITY, "EntityTypeName": "X",
                       "IdentityElements": {"$type": STRINGS, "$values": ["5"]}}  # fmt: skip
    fake.on(
        "GET", "/api/ACH_SpecialOffers", reply(200, {**iqa_pages()[1], "Items": {"$values": [row]}})
    )
    fake.on("PUT", "/api/ACH_SpecialOffers/5", reply(200, None))
    fake.on("DELETE", "/api/ACH_SpecialOffers/5", reply(200, None))
    error = golden("write_error")
    fake.on("POST", "/api/ACH_SpecialOffers", reply(error["status"], error["answer"]))
    target = ImisTarget(make(), "ACH_SpecialOffers")
    [record] = target.find({"ID": "5"})
    assert record["identity"] == "5"
    target.update(record, {"SAC2020Used": False})
    target.delete(record)
    with pytest.raises(RowWriteError, match=r"Insert ACH_SpecialOffers: GroupName is required\."):
        target.insert({"ID": "5"})
    with target.batch():
        pass
    fake.on("PUT", "/api/ACH_SpecialOffers/5", reply(503, ""))
    with pytest.raises(TargetUnavailable, match="after 5 attempts"):
        target.update(record, {"SAC2020Used": True})


# -- over real HTTP, against the package's iMIS double -------------------------------------

CONTACTS = [
    {"ID": str(1000 + n), "LastName": f"Name{n:03d}", "City": "Perth" if n % 2 else "Hobart",
     "Email": f"c{n}@example.org", "Status": "A" if n % 10 else "I"}
    for n in range(1, 251)
]  # fmt: skip


@pytest.fixture
def served() -> Iterator[tuple[ImisDouble, str]]:
    double = ImisDouble(username="manager", password="secret")
    double.add_entities("CsContact", CONTACTS, key="ID")
    double.add_query(
        "$/Sync/Contacts",
        entity="CsContact",
        columns=["ID", "LastName", "City"],
        filters=[
            QueryFilter("CsContact", "LastName", "StartsWith", prompt="Optional"),
            QueryFilter("CsContact", "Status", "Equal", prompt="None", value="A"),
            QueryFilter("CsContact", "City", "In", prompt="Optional"),
            QueryFilter("CsContact", "Email", "Contains", prompt="Optional"),
        ],
    )
    with double.serve() as base_url:
        yield double, base_url


@pytest.fixture
def live(
    served: tuple[ImisDouble, str], sleeps: list[float]
) -> Iterator[Callable[..., ImisClient]]:
    clients: list[ImisClient] = []

    def make_client(**options: Any) -> ImisClient:
        client = ImisClient(served[1], "manager", "secret", sleep=sleeps.append, **options)
        clients.append(client)
        return client

    yield make_client
    for client in clients:
        client.close()


def api_requests(double: ImisDouble, path: str) -> list[RecordedRequest]:
    return [r for r in double.requests if r.path == path]


def test_live_positional_parameters_reach_imis_exactly(
    served: tuple[ImisDouble, str], live: Any
) -> None:
    double, _ = served
    client = live()
    pages = list(client.query_pages("$/Sync/Contacts", ["Name00", ["Perth", "Hobart"], None]))
    assert [row["ID"] for row in pages[0].rows] == [str(n) for n in range(1001, 1010)]
    [sent] = api_requests(double, "/api/iqa")
    assert sent.query == (
        "QueryName=%24%2FSync%2FContacts&offset=0&limit=100"
        "&parameter=Name00&parameter=Perth%2CHobart&parameter="
    )
    assert sent.headers["Authorization"] == f"Bearer {client.token()}"
    [login] = api_requests(double, "/token")
    assert login.form == {"grant_type": "password", "username": "manager", "password": "secret"}


def test_live_special_characters_round_trip(served: tuple[ImisDouble, str], live: Any) -> None:
    double, _ = served
    double.add_entities("CsContact", [{"ID": "2001", "LastName": "Ünal & Søn", "City": "A=B c",
                                       "Email": "x+y@example.org", "Status": "A"}])  # fmt: skip
    rows = [
        row
        for page in live().query_pages("$/Sync/Contacts", ["Ünal & S", "A=B c", "+y@"])
        for row in page.rows
    ]
    assert rows == [{"ID": "2001", "LastName": "Ünal & Søn", "City": "A=B c"}]
    assert api_requests(double, "/api/iqa")[0].query.endswith(
        "&parameter=%C3%9Cnal+%26+S&parameter=A%3DB+c&parameter=%2By%40"
    )


def test_live_paging_until_has_next_is_false(served: tuple[ImisDouble, str], live: Any) -> None:
    double, _ = served
    pages = list(live().query_pages("$/Sync/Contacts", [None, None, None], page_size=100))
    assert [len(p.rows) for p in pages] == [100, 100, 25]
    assert {p.total for p in pages} == {225}
    assert [r.query.split("&")[1:3] for r in api_requests(double, "/api/iqa")] == [
        ["offset=0", "limit=100"],
        ["offset=100", "limit=100"],
        ["offset=200", "limit=100"],
    ]


@pytest.mark.parametrize(("status", "retry_after", "slept"), [(500, None, 0.5), (429, 1, 1.0)])
def test_live_nth_call_fault_is_retried(
    served: tuple[ImisDouble, str], live: Any, sleeps: list[float], status: int,
    retry_after: int | None, slept: float,
) -> None:  # fmt: skip
    double, _ = served
    client = live()
    client.token()
    double.fail_nth(2, status=status, retry_after=retry_after)
    pages = list(client.query_pages("$/Sync/Contacts", [None, None, None]))
    assert sum(len(p.rows) for p in pages) == 225
    assert sleeps == [slept]
    queries = [r.query for r in api_requests(double, "/api/iqa")]
    assert queries[1] == queries[2]  # the failed second page, asked again
    assert len(queries) == 4


def test_live_expired_token_is_refreshed_once(served: tuple[ImisDouble, str], live: Any) -> None:
    double, _ = served
    client = live()
    first = client.token()
    double.expire_token_once()
    assert client.get("CsContact", "1001").properties["LastName"] == "Name001"
    assert [(r.method, r.path) for r in double.requests] == [
        ("POST", "/token"), ("GET", "/api/CsContact/1001"), ("POST", "/token"),
        ("GET", "/api/CsContact/1001"),
    ]  # fmt: skip
    assert client.token() != first


def test_live_slow_answers_hit_the_client_timeout(
    served: tuple[ImisDouble, str], live: Any, sleeps: list[float]
) -> None:
    double, _ = served
    client = live(timeout=0.3, retries=1)
    client.token()
    double.slow(1.0)
    with pytest.raises(ImisUnavailable, match=r"timed out\) after 2 attempts"):
        client.get("CsContact", "1001")
    assert sleeps == [0.5]
    double.slow(0)
    assert client.get("CsContact", "1001").identity == "1001"


def test_live_writes_and_their_errors(served: tuple[ImisDouble, str], live: Any) -> None:
    double, _ = served
    double.add_validation("CsContact", "Email", lambda v: "@" in str(v), "Email is not valid.")
    target = ImisTarget(live(), "CsContact")
    target.insert({"ID": "3001", "LastName": "New", "City": "Perth", "Email": "n@e.org",
                   "Status": "A"})  # fmt: skip
    [record] = target.find({"Email": "n@e.org"})
    target.update(record, {"City": "Darwin"})
    assert double.entities("CsContact")[-1]["City"] == "Darwin"
    with pytest.raises(RowWriteError, match=r"Update CsContact: Email is not valid\."):
        target.update(record, {"Email": "nope"})
    target.delete(record)
    assert [c["ID"] for c in double.entities("CsContact")][-1] == "1250"


def test_live_insert_is_not_repeated_after_a_500(
    served: tuple[ImisDouble, str], live: Any, sleeps: list[float]
) -> None:
    double, _ = served
    client = live()
    client.token()
    double.fail_nth(1, status=500)
    with pytest.raises(RowWriteError):
        ImisTarget(client, "CsContact").insert({"ID": "3002", "LastName": "Once"})
    assert len(api_requests(double, "/api/CsContact")) == 1
    double.fail_nth(1, status=503)
    ImisTarget(client, "CsContact").insert({"ID": "3002", "LastName": "Once"})
    assert sleeps == [0.5]
    assert double.entities("CsContact")[-1]["LastName"] == "Once"


def test_live_source_adapter_and_prompt_filters(served: tuple[ImisDouble, str], live: Any) -> None:
    double, _ = served
    client = live()
    prompts = client.prompt_filters("$/Sync/Contacts")
    assert [(p["Column"], p["Prompt"]) for p in prompts] == [
        ("LastName", "Optional"), ("Status", "None"), ("City", "Optional"), ("Email", "Optional"),
    ]  # fmt: skip
    filters = [
        filter_value(p["Column"], {"LastName": "Name1"}.get(p["Column"]), Prompt(p["Prompt"]))
        for p in prompts
    ]
    pages = list(ImisSource(client, "$/Sync/Contacts").pages(filters))
    wanted = [c for c in CONTACTS if c["LastName"].startswith("Name1") and c["Status"] == "A"]
    assert pages[0].total == len(wanted) == 90
    assert all(row["LastName"].startswith("Name1") for page in pages for row in page.rows)
    assert api_requests(double, "/api/iqa")[0].query.endswith(
        "&parameter=Name1&parameter=&parameter="
    )
