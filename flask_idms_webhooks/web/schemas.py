"""Request and response schemas: what the OpenAPI document shows, and body validation."""

from __future__ import annotations

from flask_smorest.error_handler import ErrorSchema
from marshmallow import Schema, fields, validate

#: The longest ``Idempotency-Key`` header accepted.
MAX_IDEMPOTENCY_KEY = 255


class TriggerBodySchema(Schema):
    """Body of both webhooks and of validate. Unknown top-level keys are refused."""

    QueryParameters = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(allow_none=True),
        allow_none=True,
        metadata={"description": "Prompt values keyed by filter column name (or qualified name)."},
    )


class ParameterValueSchema(Schema):
    Value = fields.Raw(allow_none=True)
    Source = fields.String(validate=validate.OneOf(["request", "task default", "query default"]))


class RowErrorSchema(Schema):
    Row = fields.Integer()
    Message = fields.String()


class JobErrorSchema(Schema):
    Type = fields.String()
    Message = fields.String()


class ChainEntrySchema(Schema):
    TaskId = fields.String()
    ExecuteId = fields.String(allow_none=True)
    PollingUrl = fields.String(allow_none=True)
    Error = fields.String(allow_none=True)


class AttemptSchema(Schema):
    Attempt = fields.Integer()
    StartedOn = fields.String(allow_none=True)
    EndedOn = fields.String()
    Error = fields.Nested(JobErrorSchema)


class JobSchema(Schema):
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
    Errors = fields.List(fields.Nested(RowErrorSchema))
    QueryParameters = fields.Dict(keys=fields.String(), values=fields.Nested(ParameterValueSchema))
    CreatedOn = fields.String()
    StartedOn = fields.String(allow_none=True)
    UpdatedOn = fields.String()
    CompletedOn = fields.String(allow_none=True)
    PollingUrl = fields.String()
    RetryAfter = fields.Integer()
    Chain = fields.List(fields.Nested(ChainEntrySchema))
    Error = fields.Nested(JobErrorSchema, allow_none=True)
    Attempt = fields.Integer(metadata={"description": "The current run, from 1."})
    Attempts = fields.List(
        fields.Nested(AttemptSchema), metadata={"description": "Earlier runs, retried."}
    )


class ExecuteSchema(Schema):
    """Answer of the standard webhook: the job was queued; nothing about its outcome."""

    ExecuteId = fields.String()
    TaskId = fields.String()
    Status = fields.String()


class ValidateSchema(Schema):
    TaskId = fields.String()
    QueryParameters = fields.Dict(keys=fields.String(), values=fields.Nested(ParameterValueSchema))


class WebhookUrlsSchema(Schema):
    Standard = fields.String()
    Polling = fields.String()


class TaskParameterSchema(Schema):
    Key = fields.String()
    BusinessObject = fields.String()
    Column = fields.String()
    Operator = fields.String()
    Type = fields.String()
    Prompt = fields.String()
    Default = fields.Raw()
    QueryDefault = fields.Raw()


class TaskSchema(Schema):
    TaskId = fields.String()
    Name = fields.String()
    Description = fields.String()
    Webhooks = fields.Nested(WebhookUrlsSchema)
    QueryParameters = fields.List(fields.Nested(TaskParameterSchema))
    BodyTemplate = fields.Dict()


class JobListArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class JobListSchema(Schema):
    TaskId = fields.String()
    Page = fields.Integer()
    PageSize = fields.Integer()
    Total = fields.Integer()
    Jobs = fields.List(fields.Nested(JobSchema))


class StoreUnavailableSchema(ErrorSchema):  # type: ignore[misc]
    """A 503: what is known of the request's effect while Redis could not answer."""

    Outcome = fields.String(
        metadata={"description": "NotStarted (nothing changed) or Unknown (it may have)."}
    )
    ExecuteId = fields.String(metadata={"description": "The job it tried to create."})
    PollingUrl = fields.String(metadata={"description": "Where that job will be, if it is."})
