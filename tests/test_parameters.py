"""QueryParameters: every data type and operator, the default fallback chain with its
provenance, keys (unknown, fixed, qualified, explicit), optional bodies, mass assignment,
and the task-file loader that builds the filter rows."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_idms_webhooks import DataType, FilterRow, ParameterError, Prompt, TaskLoadError
from flask_idms_webhooks.iupdate.connections import Connections
from flask_idms_webhooks.model.parameters import QueryParameterSet
from flask_idms_webhooks.taskfile import load_task_file
from tests.helpers import poll_path
from tests.sample_app import count

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.fixture
def validate(client, key, state):
    """POST /idms/tasks/{task}/validate with the task's key; checks nothing was queued."""

    def post(task_id: str = "params", json: Any = None, **kwargs: Any) -> Any:
        if json is not None:
            kwargs["json"] = json
        before = (state.queue.count, state.store.history(task_id, 0, 100)[0])
        answer = client.post(
            f"/idms/tasks/{task_id}/validate", headers={"X-Webhook-Key": key(task_id)}, **kwargs
        )
        assert (state.queue.count, state.store.history(task_id, 0, 100)[0]) == before
        assert answer.mimetype == "application/json"
        return answer

    return post


def params(**values: Any) -> dict[str, Any]:
    """A body for task "params", with its Required ImisId filled unless given."""
    return {"QueryParameters": {"ImisId": 1, **values}}


def resolved(answer: Any, key: str) -> dict[str, Any]:
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["QueryParameters"][key]  # type: ignore[no-any-return]


def errors_of(answer: Any) -> dict[str, Any]:
    """The per-key messages of a 422 on QueryParameters."""
    assert answer.status_code == 422, answer.get_json()
    body = answer.get_json()
    assert body["code"] == 422
    assert body["status"] == "Unprocessable Entity"
    return body["errors"]["json"]["QueryParameters"]  # type: ignore[no-any-return]


# -- data types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("LastName", "Sm", "Sm"),
        ("LastName", "Ünïcödé ☃", "Ünïcödé ☃"),
        ("ImisId", INT32_MAX, INT32_MAX),
        ("ImisId", INT32_MIN, INT32_MIN),
        ("ImisId", 0, 0),
        ("Age", INT64_MAX, INT64_MAX),
        ("Age", INT64_MIN, INT64_MIN),
        ("Dues", 12.5, "12.5"),
        ("Dues", 0.1, "0.1"),
        ("Dues", "12.50", "12.50"),
        ("Dues", 7, "7"),
        ("Score", 1.5, 1.5),
        ("Score", -3, -3.0),
        ("JoinDate", "2024-02-29", "2024-02-29"),
        ("JoinDate", "2024-02-29T10:30:00Z", "2024-02-29T10:30:00+00:00"),
        ("JoinDate", "2024-02-29T10:30:00+02:00", "2024-02-29T10:30:00+02:00"),
        ("JoinDate", "2024-02-29T10:30:00", "2024-02-29T10:30:00"),
        ("IsMember", True, True),
        ("IsMember", False, False),
        ("Guid", "12345678-1234-5678-1234-567812345678", "12345678-1234-5678-1234-567812345678"),
        ("Guid", "12345678-1234-5678-1234-56781234567A", "12345678-1234-5678-1234-56781234567a"),
    ],
)
def test_each_data_type_accepts_a_good_value(validate, name, given, expected):
    value = resolved(validate(json=params(**{name: given})), name)
    assert value == {"Value": expected, "Source": "request"}


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("LastName", 5),
        ("LastName", ["A"]),
        ("LastName", {"A": 1}),
        ("LastName", "x" * 4001),
        ("ImisId", INT32_MAX + 1),
        ("ImisId", INT32_MIN - 1),
        ("ImisId", 2.5),  # strict: never rounded to 2
        ("ImisId", 2.0),
        ("ImisId", "5"),
        ("ImisId", True),
        ("Age", INT64_MAX + 1),
        ("Age", INT64_MIN - 1),
        ("Age", 1.5),
        ("Dues", "abc"),
        ("Dues", "NaN"),
        ("Dues", "Infinity"),
        ("Dues", True),
        ("Score", "NaN"),
        ("Score", "-Infinity"),
        ("Score", "1e999"),
        ("Score", "abc"),
        ("JoinDate", "2023-02-29"),
        ("JoinDate", "2024-13-01"),
        ("JoinDate", "yesterday"),
        ("JoinDate", 20240101),
        ("JoinDate", "2024-01-01T25:00:00"),
        ("IsMember", "maybe"),
        ("IsMember", 2),
        ("IsMember", [True]),
        ("Guid", "not-a-guid"),
        ("Guid", 12345),
        ("Guid", "12345678-1234-5678-1234-5678123456789"),
    ],
)
def test_each_data_type_refuses_a_bad_value(validate, name, bad):
    errors = errors_of(validate(json=params(**{name: bad})))
    assert list(errors) == [name]


def test_double_nan_and_infinity_cannot_be_sent_as_json_numbers(validate):
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"QueryParameters": {"ImisId": 1, "Score": ' + literal + b"}}"
        answer = validate(data=body, content_type="application/json")
        assert answer.status_code == 400, literal
        assert answer.get_json()["code"] == 400


# -- operators --------------------------------------------------------------------------


def test_between_takes_exactly_two_values(validate):
    value = resolved(validate(json=params(Paid=["1.5", 10])), "Paid")
    assert value == {"Value": ["1.5", "10"], "Source": "request"}
    for wrong in ([1], [1, 2, 3]):
        errors = errors_of(validate(json=params(Paid=wrong)))
        assert errors == {"Paid": ["Between takes two values."]}


def test_between_checks_each_value_and_wants_a_list(validate):
    assert "Paid" in errors_of(validate(json=params(Paid=[1, "x"])))
    assert "Paid" in errors_of(validate(json=params(Paid="1")))
    assert "Paid" in errors_of(validate(json=params(Paid={"from": 1, "to": 2})))


def test_in_takes_a_non_empty_list(validate):
    value = resolved(validate(json=params(Chapter=["North", "South"])), "Chapter")
    assert value == {"Value": ["North", "South"], "Source": "request"}
    assert resolved(validate(json=params(Chapter=["One"])), "Chapter")["Value"] == ["One"]
    assert "Chapter" in errors_of(validate(json=params(Chapter=[])))
    assert "Chapter" in errors_of(validate(json=params(Chapter="North")))
    assert "Chapter" in errors_of(validate(json=params(Chapter=["North", 5])))


def test_between_with_an_empty_list_is_refused(validate):
    assert "Paid" in errors_of(validate(json=params(Paid=[])))


# -- the fallback chain and its provenance ----------------------------------------------


def test_a_given_value_wins_over_both_defaults(validate):
    answer = validate(json=params(FirstName="Zed", LastName="Q"))
    assert resolved(answer, "FirstName") == {"Value": "Zed", "Source": "request"}
    assert resolved(answer, "LastName") == {"Value": "Q", "Source": "request"}


@pytest.mark.parametrize("blank", [None, ""])
def test_null_and_empty_fall_back_to_the_task_default_first(validate, blank):
    # FirstName: task default "Ann", query default "Bob".
    answer = validate(json=params(FirstName=blank))
    assert resolved(answer, "FirstName") == {"Value": "Ann", "Source": "task default"}


@pytest.mark.parametrize("blank", [None, ""])
def test_null_and_empty_fall_back_to_the_query_default_without_a_task_default(validate, blank):
    # LastName: no task default, query default "A".
    answer = validate(json=params(LastName=blank))
    assert resolved(answer, "LastName") == {"Value": "A", "Source": "query default"}


def test_left_out_keys_take_their_defaults_too(validate):
    answer = validate(json=params())
    assert resolved(answer, "FirstName") == {"Value": "Ann", "Source": "task default"}
    assert resolved(answer, "LastName") == {"Value": "A", "Source": "query default"}
    assert resolved(answer, "ImisId") == {"Value": 1, "Source": "request"}
    assert resolved(answer, "Age")["Value"] is None  # optional, no default anywhere


def test_the_answer_lists_every_settable_key_and_no_fixed_one(validate):
    answer = validate(json=params())
    assert set(answer.get_json()["QueryParameters"]) == {
        "LastName", "FirstName", "ImisId", "Age", "Dues", "Score", "JoinDate", "IsMember",
        "Guid", "Paid", "Chapter", "Since", "Until",
    }  # fmt: skip
    assert answer.get_json()["TaskId"] == "params"


@pytest.mark.parametrize("body", [{"QueryParameters": {}}, {"QueryParameters": {"ImisId": None}},
                                  {"QueryParameters": {"ImisId": ""}}, None])  # fmt: skip
def test_a_required_filter_without_a_value_is_422_naming_it(validate, body):
    errors = errors_of(validate(json=body) if body is not None else validate())
    assert list(errors) == ["ImisId"]
    assert "Required" in errors["ImisId"][0]


def test_a_required_filter_missing_is_reported_with_other_errors(validate):
    errors = errors_of(validate(json={"QueryParameters": {"Age": "x", "Nope": 1}}))
    assert set(errors) == {"ImisId", "Age", "Nope"}


# -- keys -------------------------------------------------------------------------------


def test_an_unknown_key_is_422_naming_it_and_listing_the_valid_ones(validate):
    errors = errors_of(validate(json=params(Nickname="Al")))
    assert list(errors) == ["Nickname"]
    message = errors["Nickname"][0]
    assert "'Nickname'" in message
    for valid in ("LastName", "FirstName", "ImisId", "Paid", "Chapter", "Since", "Until"):
        assert valid in message
    assert "Status" not in message


def test_keys_are_case_sensitive(validate):
    assert list(errors_of(validate(json=params(lastname="A")))) == ["lastname"]


def test_a_fixed_filter_cannot_be_set(validate):
    """Status has prompt None: it is not a key callers know, whatever its value."""
    for value in ("A", None, ""):
        errors = errors_of(validate(json=params(Status=value)))
        assert list(errors) == ["Status"]
        assert "Unknown parameter 'Status'" in errors["Status"][0]


def test_qualified_keys_address_each_of_two_filters_on_one_column(validate):
    answer = validate("pair", json={"QueryParameters": {"CsContact1.ImisId": 5}})
    assert resolved(answer, "CsContact1.ImisId") == {"Value": 5, "Source": "request"}
    assert resolved(answer, "CsContact2.ImisId") == {"Value": 7, "Source": "task default"}
    answer = validate(
        "pair", json={"QueryParameters": {"CsContact1.ImisId": 5, "CsContact2.ImisId": 9}}
    )
    assert answer.get_json()["QueryParameters"] == {
        "CsContact1.ImisId": {"Value": 5, "Source": "request"},
        "CsContact2.ImisId": {"Value": 9, "Source": "request"},
    }


def test_the_bare_column_of_two_filters_is_ambiguous(validate):
    errors = errors_of(
        validate("pair", json={"QueryParameters": {"CsContact1.ImisId": 5, "ImisId": 5}})
    )
    assert list(errors) == ["ImisId"]
    assert "'CsContact1.ImisId'" in errors["ImisId"][0]
    assert "'CsContact2.ImisId'" in errors["ImisId"][0]


def test_qualified_keys_are_type_checked_and_required(validate):
    assert list(
        errors_of(validate("pair", json={"QueryParameters": {"CsContact1.ImisId": "x"}}))
    ) == ["CsContact1.ImisId"]
    errors = errors_of(validate("pair", json={"QueryParameters": {"CsContact2.ImisId": 3}}))
    assert list(errors) == ["CsContact1.ImisId"]


def test_explicit_keys_since_and_until(validate):
    answer = validate(json=params(Since="2024-01-01", Until="2024-12-31T23:59:59Z"))
    assert resolved(answer, "Since") == {"Value": "2024-01-01", "Source": "request"}
    assert resolved(answer, "Until") == {"Value": "2024-12-31T23:59:59+00:00", "Source": "request"}
    assert list(errors_of(validate(json=params(Since="soon")))) == ["Since"]


def test_a_column_split_by_explicit_keys_is_ambiguous_by_its_name(validate):
    errors = errors_of(validate(json=params(UpdatedOn="2024-01-01")))
    assert list(errors) == ["UpdatedOn"]
    assert "'Since'" in errors["UpdatedOn"][0]
    assert "'Until'" in errors["UpdatedOn"][0]
    # nor by the qualified name, which the two rows share
    assert list(errors_of(validate(json=params(**{"Activity.UpdatedOn": "2024-01-01"})))) == [
        "Activity.UpdatedOn"
    ]


# -- optional bodies and mass assignment --------------------------------------------------


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {},
        {"data": b"", "content_type": "application/json"},
        {"data": b"", "content_type": "text/plain"},
        {"data": b"", "content_type": "application/x-www-form-urlencoded"},
        {"input_stream": io.BytesIO(b""), "content_type": "multipart/form-data; boundary=x"},
        {"data": b"  \r\n", "content_type": "text/plain"},
        {"json": {}},
        {"json": {"QueryParameters": None}},
        {"json": {"QueryParameters": {}}},
        {"json": {"QueryParameters": {"Seconds": None}}},
    ],
    ids=[
        "none",
        "empty-json",
        "empty-text",
        "empty-form",
        "empty-multipart",
        "blank-text",
        "object",
        "null-parameters",
        "empty-parameters",
        "null-value",
    ],
)
def test_no_body_is_needed_when_nothing_is_required(validate, request_kwargs):
    answer = validate("sleep", **request_kwargs)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {
        "TaskId": "sleep",
        "QueryParameters": {"Seconds": {"Value": 60.0, "Source": "task default"}},
    }
    if "Seconds" not in str(request_kwargs):  # boom takes no parameters at all
        answer = validate("boom", **request_kwargs)
        assert answer.status_code == 200
        assert answer.get_json() == {"TaskId": "boom", "QueryParameters": {}}


def test_a_task_without_filters_names_no_valid_key(validate):
    errors = errors_of(validate("boom", json={"QueryParameters": {"X": 1}}))
    assert "none" in errors["X"][0]


@pytest.mark.parametrize("route", ["validate", "execute", "jobs"])
@pytest.mark.parametrize(
    "body",
    [
        {"QueryParameters": {"Seconds": 1}, "TaskId": "boom"},
        {"Seconds": 1},
        {"QueryParameters": {"Seconds": 1}, "Status": "succeeded", "ExecuteId": "x"},
    ],
)
def test_top_level_keys_other_than_query_parameters_are_refused(client, key, state, route, body):
    answer = client.post(
        f"/idms/tasks/sleep/{route}", json=body, headers={"X-Webhook-Key": key("sleep")}
    )
    assert answer.status_code == 422
    unknown = set(body) - {"QueryParameters"}
    assert set(answer.get_json()["errors"]["json"]) == unknown
    assert state.queue.count == 0
    assert state.store.history("sleep", 0, 100) == (0, [])
    assert state.store.history("boom", 0, 100) == (0, [])


@pytest.mark.parametrize("route", ["validate", "execute", "jobs"])
def test_query_parameters_must_be_an_object(client, key, state, route):
    for wrong in ([1], "Seconds", 5):
        answer = client.post(
            f"/idms/tasks/sleep/{route}",
            json={"QueryParameters": wrong},
            headers={"X-Webhook-Key": key("sleep")},
        )
        assert answer.status_code == 422
        assert "QueryParameters" in answer.get_json()["errors"]["json"]
    assert state.queue.count == 0


@pytest.mark.parametrize("route", ["execute", "jobs"])
def test_webhooks_refuse_bad_parameters_and_start_nothing(client, key, state, route):
    answer = client.post(
        f"/idms/tasks/params/{route}",
        json={"QueryParameters": {"ImisId": 2.5, "Status": "X"}},
        headers={"X-Webhook-Key": key("params")},
    )
    assert answer.status_code == 422
    assert set(answer.get_json()["errors"]["json"]["QueryParameters"]) == {"ImisId", "Status"}
    assert "Location" not in answer.headers
    assert state.queue.count == 0
    assert state.store.history("params", 0, 100) == (0, [])


# -- the job receives what validate shows ---------------------------------------------------


def test_the_job_document_carries_the_resolved_parameters(client, key, state, run_burst):
    body = params(
        ImisId=42, FirstName=None, LastName="", Dues="3.10", Paid=[1, "2.5"], Chapter=["N"],
        JoinDate="2024-02-29T10:30:00Z", Since="2024-01-01",
    )  # fmt: skip
    headers = {"X-Webhook-Key": key("params")}
    shown = client.post("/idms/tasks/params/validate", json=body, headers=headers).get_json()
    started = client.post("/idms/tasks/params/jobs", json=body, headers=headers)
    assert started.status_code == 202
    document = started.get_json()
    assert document["QueryParameters"] == shown["QueryParameters"]
    assert document["QueryParameters"]["ImisId"] == {"Value": 42, "Source": "request"}
    assert document["QueryParameters"]["FirstName"] == {"Value": "Ann", "Source": "task default"}
    assert document["QueryParameters"]["LastName"] == {"Value": "A", "Source": "query default"}
    assert document["QueryParameters"]["Dues"] == {"Value": "3.10", "Source": "request"}
    assert document["QueryParameters"]["Paid"] == {"Value": ["1", "2.5"], "Source": "request"}
    assert "Status" not in document["QueryParameters"]
    location = started.headers["Location"]
    assert client.get(poll_path(location)).get_json()["QueryParameters"] == shown["QueryParameters"]
    run_burst()
    finished = client.get(poll_path(location))
    assert finished.status_code == 200
    assert finished.get_json()["Status"] == "succeeded"
    assert finished.get_json()["QueryParameters"] == shown["QueryParameters"]


def test_the_standard_webhook_queues_one_job_with_the_parameters(client, key, state):
    answer = client.post(
        "/idms/tasks/pair/execute",
        json={"QueryParameters": {"CsContact1.ImisId": 11}},
        headers={"X-Webhook-Key": key("pair")},
    )
    assert answer.status_code == 200
    assert state.queue.count == 1
    total, documents = state.store.history("pair", 0, 100)
    assert total == 1
    document = json.loads(documents[0])
    assert document["ExecuteId"] == answer.get_json()["ExecuteId"]
    assert document["QueryParameters"] == {
        "CsContact1.ImisId": {"Value": 11, "Source": "request"},
        "CsContact2.ImisId": {"Value": 7, "Source": "task default"},
    }


# -- QueryParameterSet directly (property tests) ----------------------------------------------


INT32_ONLY = QueryParameterSet((FilterRow("T", "N", type=DataType.INT32, default=5),))
WITH_QUERY_DEFAULT = QueryParameterSet(
    (FilterRow("T", "N", type=DataType.INT32, query_default=-9),)
)
REQUIRED = QueryParameterSet((FilterRow("T", "N", type=DataType.INT32, prompt=Prompt.REQUIRED),))


@given(st.integers(INT32_MIN, INT32_MAX))
def test_any_int32_in_range_resolves_to_itself_from_the_request(number):
    for parameter_set in (INT32_ONLY, WITH_QUERY_DEFAULT, REQUIRED):
        value = parameter_set.resolve({"N": number})["N"]
        assert (value.value, value.source) == (number, "request")


@given(st.one_of(st.integers(max_value=INT32_MIN - 1), st.integers(min_value=INT32_MAX + 1)))
def test_any_int32_out_of_range_is_refused(number):
    with pytest.raises(ParameterError) as raised:
        INT32_ONLY.resolve({"N": number})
    assert list(raised.value.errors) == ["N"]


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()))
def test_a_fractional_int32_is_never_rounded(number):
    with pytest.raises(ParameterError):
        INT32_ONLY.resolve({"N": number})


@given(st.sampled_from([None, ""]), st.booleans())
def test_blank_values_take_the_default_with_its_source(blank, send_key):
    supplied = {"N": blank} if send_key else {}
    task_value = INT32_ONLY.resolve(supplied)["N"]
    assert (task_value.value, task_value.source) == (5, "task default")
    query_value = WITH_QUERY_DEFAULT.resolve(supplied)["N"]
    assert (query_value.value, query_value.source) == (-9, "query default")
    with pytest.raises(ParameterError) as raised:
        REQUIRED.resolve(supplied)
    assert list(raised.value.errors) == ["N"]


@given(st.text(min_size=1, max_size=30).filter(lambda k: k != "N"))
def test_any_other_key_is_unknown(name):
    with pytest.raises(ParameterError) as raised:
        INT32_ONLY.resolve({name: 1})
    assert list(raised.value.errors) == [name]
    assert "Valid keys: N." in raised.value.errors[name][0]


def test_colliding_keys_are_refused_when_the_set_is_built():
    with pytest.raises(TaskLoadError, match="give each a `key`"):
        QueryParameterSet((FilterRow("A", "D"), FilterRow("A", "D")))
    parameter_set = QueryParameterSet(
        (FilterRow("A", "D", key="From"), FilterRow("A", "D", key="To"))
    )
    assert parameter_set.keys == ["From", "To"]


def test_a_default_of_the_wrong_type_is_refused_when_the_set_is_built():
    with pytest.raises(TaskLoadError, match="default"):
        QueryParameterSet((FilterRow("A", "N", type=DataType.INT32, default="seven"),))


# -- the task-file loader ---------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tasks.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


GOOD = """
[[tasks]]
id = "sync-contacts"
name = "Sync contact e-mails"
description = "Copies e-mail changes."
key = "${SYNC_KEY}"
timeout = "2h"
retry_after = 15
handler = "tests.sample_app:count"

[[tasks.source.filters]]
business_object = "CsContact"
column = "LastName"
operator = "StartsWith"
type = "String"
prompt = "Optional"
default = ""
query_default = "A"

[[tasks.source.filters]]
business_object = "CsContact"
column = "UpdatedOn"
operator = "GreaterThanOrEqual"
type = "DateTime"
prompt = "Required"

[[tasks.source.filters]]
business_object = "CsContact"
column = "Status"
prompt = "None"
default = "${STATUS}"

[[tasks]]
id = "second"
handler = "tests.sample_app:count"
"""


def test_a_good_task_file_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_KEY", "s3cret-key")
    monkeypatch.setenv("STATUS", "A")
    first, second = load_task_file(write(tmp_path, GOOD), Connections())
    assert first.id == "sync-contacts"
    assert first.name == "Sync contact e-mails"
    assert first.handler is count
    assert first.key == "s3cret-key"
    assert (first.timeout, first.retry_after) == (7200, 15)
    assert [row.column for row in first.filters] == ["LastName", "UpdatedOn", "Status"]
    assert first.filters[2].default == "A"
    assert first.filters[2].prompt is Prompt.NONE
    parameter_set = QueryParameterSet(first.filters)
    assert parameter_set.keys == ["LastName", "UpdatedOn"]
    assert parameter_set.fixed_values() == {"Status": "A"}
    assert (second.id, second.key, second.filters) == ("second", None, ())


def test_env_expansion_inside_longer_strings(tmp_path, monkeypatch):
    monkeypatch.setenv("PART", "mid")
    (task,) = load_task_file(
        write(
            tmp_path,
            """
            [[tasks]]
            id = "t"
            description = "before-${PART}-after ${PART}"
            handler = "tests.sample_app:count"
            """,
        ),
        Connections(),
    )
    assert task.description == "before-mid-after mid"


def test_a_missing_env_var_names_the_variable_file_task_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_KEY", "k")
    monkeypatch.delenv("STATUS", raising=False)
    path = write(tmp_path, GOOD)
    with pytest.raises(TaskLoadError) as raised:
        load_task_file(path, Connections())
    message = str(raised.value)
    assert "STATUS" in message
    assert str(path) in message
    assert "sync-contacts" in message
    assert "source.filters[2].default" in message
    assert raised.value.task == "sync-contacts"


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("operator", "Like", "source.filters[0].operator"),
        ("type", "Text", "source.filters[0].type"),
        ("prompt", "Sometimes", "source.filters[0].prompt"),
        ("colour", "red", "source.filters[0].colour"),
    ],
)
def test_a_bad_filter_value_names_its_key(tmp_path, field, value, where):
    path = write(
        tmp_path,
        f"""
        [[tasks]]
        id = "t"
        handler = "tests.sample_app:count"
        [[tasks.source.filters]]
        business_object = "CsContact"
        column = "LastName"
        {field} = "{value}"
        """,
    )
    with pytest.raises(TaskLoadError) as raised:
        load_task_file(path, Connections())
    assert raised.value.key == where
    assert str(path) in str(raised.value)
    assert "'t'" in str(raised.value)


def test_duplicate_task_ids_are_refused(tmp_path):
    path = write(
        tmp_path,
        """
        [[tasks]]
        id = "same"
        handler = "tests.sample_app:count"
        [[tasks]]
        id = "same"
        handler = "tests.sample_app:boom"
        """,
    )
    with pytest.raises(TaskLoadError, match="duplicate task id") as raised:
        load_task_file(path, Connections())
    assert (raised.value.task, raised.value.key) == ("same", "id")


def test_colliding_qualified_names_without_key_are_refused(tmp_path):
    window = """
        [[tasks]]
        id = "window"
        handler = "tests.sample_app:count"
        [[tasks.source.filters]]
        business_object = "CsContact"
        column = "UpdatedOn"
        operator = "GreaterThanOrEqual"
        type = "DateTime"
        {first}
        [[tasks.source.filters]]
        business_object = "CsContact"
        column = "UpdatedOn"
        operator = "LessThanOrEqual"
        type = "DateTime"
        {second}
        """
    path = write(tmp_path, window.format(first="", second=""))
    with pytest.raises(TaskLoadError) as raised:
        load_task_file(path, Connections())
    assert "CsContact.UpdatedOn" in str(raised.value)
    assert raised.value.task == "window"
    assert str(path) in str(raised.value)
    (task,) = load_task_file(
        write(tmp_path, window.format(first='key = "Since"', second='key = "Until"')), Connections()
    )
    assert QueryParameterSet(task.filters).keys == ["Since", "Until"]


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ('id = "bad id!"\nhandler = "tests.sample_app:count"', "id"),
        ('id = "t"\nhandler = "tests.sample_app:nowhere"', "handler"),
        ('id = "t"\nhandler = "no.such.module:f"', "handler"),
        ('id = "t"', "source"),
        ('id = "t"\nhandler = "tests.sample_app:count"\ntimeout = "soon"', "timeout"),
        ('id = "t"\nhandler = "tests.sample_app:count"\nflavour = 1', "flavour"),
    ],
)
def test_other_task_errors_name_the_key(tmp_path, table, where):
    with pytest.raises(TaskLoadError) as raised:
        load_task_file(write(tmp_path, "[[tasks]]\n" + table + "\n"), Connections())
    assert raised.value.key == where


def test_an_unreadable_or_invalid_file_is_a_load_error(tmp_path):
    with pytest.raises(TaskLoadError, match="cannot read"):
        load_task_file(tmp_path / "missing.toml", Connections())
    with pytest.raises(TaskLoadError, match="not valid TOML"):
        load_task_file(write(tmp_path, "[[tasks]\n"), Connections())
