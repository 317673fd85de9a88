"""Row errors: the first few in the record, all (up to 10,000) in the job's errors.csv."""

from __future__ import annotations

import csv
import io

from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import poll_path


def run_count(app, **parameters):
    state = state_of(app)
    client = app.test_client()
    key = state.credentials.task_key(state.tasks["count"])
    answer = client.post(f"/idms/tasks/count/jobs?key={key}", json={"QueryParameters": parameters})
    make_worker(app, simple=True).work(burst=True, logging_level="WARNING")
    location = poll_path(answer.headers["Location"])
    return client, key, location, client.get(location).get_json()


def rows_of(answer):
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(answer.get_data(as_text=True))))


def test_errors_csv_has_every_row_error_the_record_keeps_the_first(make_app):
    app = make_app(IDMS_WEBHOOKS_MAX_ROW_ERRORS=5)
    client, key, location, final = run_count(app, Count=100, FailEvery=2)
    assert final["ErrorCount"] == 50
    assert [error["Row"] for error in final["Errors"]] == [2, 4, 6, 8, 10]
    path, _, query = location.partition("?")
    rows = rows_of(client.get(f"{path}/errors.csv?{query}"))
    assert rows[0] == ["Row", "Message"]
    assert rows[1:] == [[str(row), f"row {row} refused"] for row in range(2, 101, 2)]
    by_key = rows_of(client.get(f"{path}/errors.csv", headers={"X-Webhook-Key": key}))
    assert by_key == rows


def test_errors_csv_needs_the_jobs_own_token(make_app, client):
    app = make_app()
    client, _, location, _ = run_count(app, Count=4, FailEvery=2)
    _, _, other, _ = run_count(app, Count=1)
    path = location.partition("?")[0]
    other_query = other.partition("?")[2]
    assert client.get(f"{path}/errors.csv?{other_query}").status_code == 401
    assert client.get(f"{path}/errors.csv").status_code == 401
    assert (
        client.get("/idms/jobs/unknown/errors.csv", headers={"X-Webhook-Key": "x"}).status_code
        == 404
    )


def test_errors_csv_keeps_at_most_10000_rows(make_app):
    app = make_app()
    client, _, location, final = run_count(app, Count=10_050, FailEvery=1)
    assert final["ErrorCount"] == 10_050 == final["ProcessedCount"]
    path, _, query = location.partition("?")
    rows = rows_of(client.get(f"{path}/errors.csv?{query}"))
    assert len(rows) == 1 + 10_000
    assert rows[-1][0] == "10000"


def test_errors_csv_cells_never_start_like_a_formula():
    from flask_idms_webhooks.web.answers import spreadsheet_safe

    assert spreadsheet_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert spreadsheet_safe("+1") == "'+1" and spreadsheet_safe("@x") == "'@x"
    assert spreadsheet_safe("-2") == "'-2"
    assert spreadsheet_safe("member 3: no e-mail") == "member 3: no e-mail"
