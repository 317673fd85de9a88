"""The job page: ``GET`` on a job's ``Location`` from a browser (one that prefers
``text/html`` to JSON) answers HTML that follows the job live (``static/idms-webhooks.js``
polls the same URL for JSON, honouring ``Retry-After``), or, without JavaScript, reloads
itself until the job ends. Everything else gets the JSON of the contract, unchanged."""

from __future__ import annotations

from flask import Response, current_app, render_template, request, url_for

from ..jobs.documents import JobDocument, duration
from ..state import state_of

#: How many row errors the page lists (all of them are in errors.csv).
SHOWN_ERRORS = 20
COUNTS = ("Processed", "Inserted", "Updated", "Skipped", "Error", "Deleted")
#: Only the app's own CSS and script; nothing framed, posted or fetched elsewhere.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Vary": "Accept",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL holds the job's token
}


def wants_page() -> bool:
    """Whether the request prefers HTML to JSON (a browser; not curl's ``*/*``)."""
    header = request.environ.get("HTTP_ACCEPT", "")
    if "html" not in header and "text/*" not in header:
        return False  # (the poll's hot path: no parse of what cannot prefer HTML)
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]


def job_page(document: JobDocument, finished: bool) -> Response:
    task = state_of(current_app).tasks.get(document["TaskId"])
    seconds = duration(document)
    rate = document["ProcessedCount"] / seconds if seconds else None
    # The token (or key) the page was opened with opens its errors.csv too.
    query = request.query_string.decode()
    html = render_template(
        "idms_webhooks/job.html",
        job=document,
        finished=finished,
        task_name=(task.name if task is not None and task.name else document["TaskId"]),
        counts=COUNTS,
        duration="\u2013" if seconds is None else f"{seconds} s",
        rate="\u2013" if rate is None else f"{rate:.1f}",
        retry_after=document.get("RetryAfter") or 5,
        shown_errors=SHOWN_ERRORS,
        errors_csv=url_for("idms_webhooks.job_errors", job_id=document["ExecuteId"])
        + (f"?{query}" if query else ""),
        json_url=request.full_path,
    )
    return Response(html, 200, HEADERS, mimetype="text/html")
