"""``batch_match`` on its own: the iMIS target's ``find_many`` answers for every row what a
find of that row alone answers (text without case, numbers by value, several match
fields, no match, several matches), over several ``in:`` calls sent side by side; a look-up
iMIS refuses is a row error the engine recovers from (each row then finds itself)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flask_idms_webhooks.iupdate.base import RowWriteError
from flask_idms_webhooks.iupdate.imis import ImisClient, ImisTarget
from flask_idms_webhooks.testing import ImisDouble

USER, PASSWORD = "manager", "secret"


@pytest.fixture
def double() -> Iterator[ImisDouble]:
    double = ImisDouble(USER, PASSWORD)
    # 250 contacts: IDs 1000-1249, an email per ID in mixed case, two records with ID 1007.
    contacts = [
        {"Key": f"K{n}", "ID": str(1000 + n), "Email": f"Person{n}@Example.org"} for n in range(250)
    ]
    contacts.append({"Key": "K-twin", "ID": "1007", "Email": "twin@example.org"})
    double.add_entities("CsContact", contacts, key="Key")
    with double.serve(keep_alive=True) as url:
        URLS[double] = url
        yield double
    del URLS[double]


#: Where each double serves.
URLS: dict[ImisDouble, str] = {}


def target_for(double: ImisDouble, max_concurrency: int = 4) -> Iterator[ImisTarget]:
    client = ImisClient(URLS[double], USER, PASSWORD, max_connections=max_concurrency + 2)
    try:
        yield ImisTarget(client, "CsContact", max_concurrency=max_concurrency, batch_match=True)
    finally:
        client.close()


@pytest.fixture
def target(double: ImisDouble) -> Iterator[ImisTarget]:
    yield from target_for(double)


def in_calls(double: ImisDouble) -> list[str]:
    return [r.query for r in double.requests if r.method == "GET" and "in%3A" in r.query]


def test_a_batch_finds_for_each_row_what_its_own_find_finds(double, target):
    wanted = [{"ID": str(1000 + n)} for n in range(0, 250, 2)]  # 125 values: two in: calls
    wanted += [{"ID": "1007"}, {"ID": "999999"}, {"ID": 1010}, {"ID": "01012"}]
    double.reset_log()
    found = target.find_many(wanted)
    assert len(in_calls(double)) == 2
    assert found == [target.find(criteria) for criteria in wanted]
    by_id = dict(zip([str(c["ID"]) for c in wanted], found, strict=True))
    assert len(by_id["1007"]) == 2  # both records of a repeated ID
    assert by_id["999999"] == []  # no match
    assert by_id["1010"] and by_id["01012"]  # numbers by value, as iMIS compares them


def test_several_match_fields_are_all_compared_text_without_case(double, target):
    wanted = [
        {"ID": "1003", "Email": "PERSON3@example.ORG"},  # the same text in other case
        {"ID": "1004", "Email": "someone-else@example.org"},  # ID found, Email differs
        {"ID": "1007", "Email": "twin@example.org"},  # one of the two records of 1007
    ]
    found = target.find_many(wanted)
    assert [len(records or []) for records in found] == [1, 0, 1]
    assert found[2][0]["properties"]["Email"] == "twin@example.org"


def test_the_calls_of_a_page_go_out_side_by_side(double):
    double.latency(0.05)
    wanted = [{"ID": str(1000 + n)} for n in range(250)]  # three in: calls
    for concurrency, peak in ((1, 1), (4, 3)):
        for target in target_for(double, concurrency):
            double.reset_log()
            double.reset_peak()
            found = target.find_many(wanted)
            assert len(in_calls(double)) == 3
            assert double.in_flight_peak == peak
            assert sum(len(records or []) for records in found) == 251


def test_a_look_up_imis_refuses_is_a_row_error(double, target):
    double.fail_nth(2, 400)  # the token, then the first in: call
    with pytest.raises(RowWriteError, match="Find CsContact"):
        target.find_many([{"ID": str(1000 + n)} for n in range(150)])
