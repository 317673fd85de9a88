"""Request and response schemas: what the OpenAPI document shows, and body validation.

Every class is named ``Idms...Schema``: apispec names a component after its class (less
``Schema``), and a host app's document holds its own ``Task`` or ``Error`` beside ours."""

from __future__ import annotations

from typing import Any

from flask_smorest.error_handler import ErrorSchema
from marshmallow import Schema, fields, validate

from ..jobs.documents import QUEUED, WEBHOOK, not_run
from ..jobs.listing import STATUSES

#: The longest ``Idempotency-Key`` header accepted.
MAX_IDEMPOTENCY_KEY = 255


class IdmsTriggerBodySchema(Schema):
    """Body of both webhooks and of validate. Unknown top-level keys are refused."""

    QueryParameters = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(allow_none=True),
        allow_none=True,
        metadata={"description": "Prompt values keyed by filter column name (or qualified name)."},
    )
    CallbackUrl = fields.String(
        allow_none=True,
        metadata={
            "description": "Where to POST the job's final document once it has finished, "
            "signed per Standard Webhooks (https; its host must be allowed by "
            "IDMS_WEBHOOKS_CALLBACK_HOSTS, else 422). Null or absent: no callback.",
            "example": "https://prod-00.westeurope.logic.azure.com/workflows/1f2e/runs/08584"
            "/run?api-version=2016-06-01&sig=…",
        },
    )


class IdmsParameterValueSchema(Schema):
    Value = fields.Raw(allow_none=True)
    Source = fields.String(
        validate=validate.OneOf(["request", "schedule", "chain", "task default", "query default"])
    )


class IdmsRowErrorSchema(Schema):
    Row = fields.Integer()
    Message = fields.String()


class IdmsJobErrorSchema(Schema):
    Type = fields.String()
    Message = fields.String()


class IdmsChainEntrySchema(Schema):
    TaskId = fields.String()
    ExecuteId = fields.String(allow_none=True)
    PollingUrl = fields.String(allow_none=True)
    Error = fields.String(allow_none=True)


class IdmsAttemptSchema(Schema):
    Attempt = fields.Integer()
    StartedOn = fields.String(allow_none=True)
    EndedOn = fields.String()
    Error = fields.Nested(IdmsJobErrorSchema)


class IdmsJobSchema(Schema):
    """The job status document."""

    ExecuteId = fields.String(metadata={"description": "The job id (128 random bits, URL-safe)."})
    TaskId = fields.String()
    Status = fields.String(
        validate=validate.OneOf(["queued", "in progress", "succeeded", "failed", "cancelled"])
    )
    StatusDescription = fields.String()
    Success = fields.Boolean(allow_none=True)
    PercentComplete = fields.Integer()
    RowCount = fields.Integer(allow_none=True)
    ProcessedCount = fields.Integer()
    InsertedCount = fields.Integer()
    UpdatedCount = fields.Integer()
    SkippedCount = fields.Integer()
    ErrorCount = fields.Integer()
    DeletedCount = fields.Integer(
        metadata={
            "description": "Source rows whose matches were deleted (a Delete task); they are "
            "also counted in UpdatedCount."
        }
    )
    Errors = fields.List(fields.Nested(IdmsRowErrorSchema))
    QueryParameters = fields.Dict(
        keys=fields.String(), values=fields.Nested(IdmsParameterValueSchema)
    )
    CreatedOn = fields.String()
    StartedOn = fields.String(allow_none=True)
    UpdatedOn = fields.String()
    CompletedOn = fields.String(allow_none=True)
    PollingUrl = fields.String()
    RetryAfter = fields.Integer(
        metadata={
            "description": "Seconds to wait before the next poll (the Retry-After header): "
            "the task's retry_after while queued; while running, the estimated time left, "
            "between IDMS_WEBHOOKS_RETRY_AFTER_MIN and the task's retry_after."
        }
    )
    EstimatedCompletionOn = fields.String(
        allow_none=True,
        metadata={
            "description": "When a running job should end at the rate of its last 30 "
            "seconds (UTC); null while queued, once finished, or before a rate is seen."
        },
    )
    Chain = fields.List(fields.Nested(IdmsChainEntrySchema))
    Error = fields.Nested(IdmsJobErrorSchema, allow_none=True)
    Attempt = fields.Integer(metadata={"description": "The current run, from 1."})
    Attempts = fields.List(
        fields.Nested(IdmsAttemptSchema), metadata={"description": "Earlier runs, retried."}
    )
    Trigger = fields.String(
        validate=validate.OneOf(["webhook", "schedule", "cli", "chain"]),
        metadata={"description": "How the job was started."},
    )
    DueOn = fields.String(
        allow_none=True,
        metadata={"description": "A scheduled run's due time (UTC); null for the others."},
    )
    CallbackUrl = fields.String(
        allow_none=True,
        metadata={
            "description": "Where the job's completion callback goes, without its query "
            "(it may hold a credential); null without one. Its delivery state: "
            "GET /jobs/{job_id}/callback."
        },
    )


class IdmsExecuteSchema(Schema):
    """Answer of the standard webhook: the job was queued; nothing about its outcome."""

    ExecuteId = fields.String()
    TaskId = fields.String()
    Status = fields.String()


class IdmsValidateSchema(Schema):
    TaskId = fields.String()
    QueryParameters = fields.Dict(
        keys=fields.String(), values=fields.Nested(IdmsParameterValueSchema)
    )


class IdmsWebhookUrlsSchema(Schema):
    Standard = fields.String()
    Polling = fields.String()


class IdmsTaskParameterSchema(Schema):
    Key = fields.String()
    BusinessObject = fields.String()
    Column = fields.String()
    Operator = fields.String()
    Type = fields.String()
    Prompt = fields.String()
    Default = fields.Raw()
    QueryDefault = fields.Raw()


class IdmsRecentRunSchema(Schema):
    DueOn = fields.String(metadata={"description": "The due time (UTC)."})
    ExecuteId = fields.String(metadata={"description": "The job it started."})
    Skipped = fields.String(metadata={"description": "Why no job started."})
    Missed = fields.Integer(metadata={"description": "Earlier due times folded into this run."})


class IdmsScheduleSchema(Schema):
    """A task's schedule: when it runs on its own (all times UTC, ISO 8601 with Z)."""

    Cron = fields.List(fields.String(), metadata={"description": "UTC cron expressions."})
    RunAt = fields.String(allow_none=True, metadata={"description": "A one-time run."})
    Enabled = fields.Boolean()
    NextRunOn = fields.String(allow_none=True, metadata={"description": "Null while disabled."})
    LastRunOn = fields.String(allow_none=True)
    LastOutcome = fields.String(allow_none=True)
    ConsecutiveFailures = fields.Integer()
    MaxFailures = fields.Integer(metadata={"description": "0: it never disables itself."})
    CatchUp = fields.String(validate=validate.OneOf(["latest", "none"]))
    DisabledReason = fields.String(allow_none=True)
    RecentRuns = fields.List(
        fields.Nested(IdmsRecentRunSchema), metadata={"description": "Newest first."}
    )


class StrictBoolean(fields.Boolean):
    """JSON ``true`` or ``false`` only (not 0, 1, "yes")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class IdmsScheduleBodySchema(Schema):
    """Turn a task's schedule on or off."""

    Enabled = StrictBoolean(required=True)


class IdmsTaskSchema(Schema):
    TaskId = fields.String()
    Name = fields.String()
    Description = fields.String()
    Webhooks = fields.Nested(IdmsWebhookUrlsSchema)
    QueryParameters = fields.List(fields.Nested(IdmsTaskParameterSchema))
    BodyTemplate = fields.Dict()
    Schedule = fields.Nested(
        IdmsScheduleSchema, allow_none=True, metadata={"description": "Null: webhooks only."}
    )
    CallbackSecret = fields.String(
        metadata={
            "description": "The secret the task's completion callbacks are signed with "
            "(whsec_..., Standard Webhooks): the receiver verifies them with it."
        }
    )
    Concurrency = fields.String(
        validate=validate.OneOf(["parallel", "reject", "join"]),
        metadata={"description": "What a trigger does while a job of the task runs."},
    )
    RequireSignature = fields.Boolean(
        metadata={"description": "Whether its webhooks take only signed requests."}
    )


class IdmsJobListArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class IdmsJobListSchema(Schema):
    TaskId = fields.String()
    Page = fields.Integer()
    PageSize = fields.Integer()
    Total = fields.Integer()
    Jobs = fields.List(fields.Nested(IdmsJobSchema))


class IdmsAllJobsArgsSchema(IdmsJobListArgsSchema):
    status = fields.String(
        validate=validate.OneOf(STATUSES),
        metadata={"description": "Only jobs of this status: " + ", ".join(STATUSES) + "."},
    )
    task = fields.String(metadata={"description": "Only jobs of this task (its id)."})


class IdmsAllJobsSchema(Schema):
    Page = fields.Integer()
    PageSize = fields.Integer()
    Total = fields.Integer()
    Jobs = fields.List(fields.Nested(IdmsJobSchema))


class IdmsErrorSchema(ErrorSchema):  # type: ignore[misc]
    """flask-smorest's error shape, under a name of the extension's own."""


class IdmsStoreUnavailableSchema(IdmsErrorSchema):
    """A 503: what is known of the request's effect while Redis could not answer."""

    Outcome = fields.String(
        metadata={"description": "NotStarted (nothing changed) or Unknown (it may have)."}
    )
    ExecuteId = fields.String(metadata={"description": "The job it tried to create."})
    PollingUrl = fields.String(metadata={"description": "Where that job will be, if it is."})


class IdmsHealthSchema(Schema):
    Status = fields.String(metadata={"description": "ok"})


class IdmsReadySchema(Schema):
    Ready = fields.Boolean()
    Redis = fields.String(metadata={"description": "ok, or unreachable (the error's kind)."})
    WorkersAlive = fields.Integer(
        metadata={"description": "Worker processes that beat in the last 15 seconds."}
    )
    Missing = fields.List(
        fields.String(validate=validate.OneOf(["redis", "worker"])),
        metadata={"description": "What keeps the service from being ready (empty when ready)."},
    )


#: A job's document as the polling webhook's 202 first shows it (built as a new job's is).
QUEUED_JOB_EXAMPLE: dict[str, Any] = {
    "ExecuteId": "ZgLfrZ1srWuE4lYOw1hWtg",
    "TaskId": "sync-contacts",
    "Status": QUEUED,
    "StatusDescription": "Queued",
    **not_run("2026-11-29T06:00:00Z"),
    "QueryParameters": {"LastName": {"Value": "A", "Source": "query default"}},
    "CreatedOn": "2026-11-29T06:00:00Z",
    "PollingUrl": "https://host/idms/jobs/ZgLfrZ1srWuE4lYOw1hWtg?token=kX-XIqDL6CAC9CYs9Sm5t3EU",
    "RetryAfter": 30,
    "Chain": [],
    "Attempt": 1,
    "Attempts": [],
    "Trigger": WEBHOOK,
    "DueOn": None,
    "CallbackUrl": None,
}


class IdmsCallbackSchema(Schema):
    """The delivery state of a job's completion callback."""

    Url = fields.String(metadata={"description": "The callback URL, without its query."})
    Attempts = fields.Integer(metadata={"description": "Attempts made so far."})
    LastStatus = fields.String(
        allow_none=True,
        metadata={
            "description": 'The last attempt\'s HTTP status ("200", "503"), or what went '
            "wrong: Timeout, ConnectError (or another network error), ResolveError, "
            "AddressRefused, InvalidUrl, Expired, UnknownTask; null before the first."
        },
    )
    DeliveredOn = fields.String(
        allow_none=True, metadata={"description": "When a 2xx answered (UTC); null until then."}
    )
    State = fields.String(
        validate=validate.OneOf(["pending", "delivering", "retrying", "delivered", "failed"]),
        metadata={
            "description": "pending (the job runs), delivering (an attempt is due or under "
            "way), retrying (waiting for NextAttemptOn), delivered, failed (given up)."
        },
    )
    NextAttemptOn = fields.String(
        allow_none=True, metadata={"description": "When the next attempt is due (retrying)."}
    )
