"""The schemas of a task's custom connector (Swagger 2.0): a filter's value by data type
and operator, and the job status document and error bodies, each field labelled
(``x-ms-summary``) as the flow's dynamic content shows it ("Inserted count")."""

from __future__ import annotations

from typing import Any

from ..jobs import documents
from ..jobs.listing import STATUSES
from ..model import parameters as provenance
from ..model.parameters import MAX_LIST_LENGTH, MAX_STRING_LENGTH, QueryParameterSet
from ..model.tasks import DataType, FilterRow, Operator

Schema = dict[str, Any]

#: A filter row's value as a caller sends it, by data type.
INPUT_TYPES: dict[DataType, Schema] = {
    DataType.STRING: {"type": "string", "maxLength": MAX_STRING_LENGTH},
    DataType.BYTE: {"type": "integer", "format": "int32", "minimum": 0, "maximum": 255},
    DataType.INT32: {"type": "integer", "format": "int32"},
    DataType.INT64: {"type": "integer", "format": "int64"},
    DataType.DECIMAL: {"type": "number"},
    DataType.DOUBLE: {"type": "number", "format": "double"},
    DataType.DATETIME: {"type": "string", "format": "date-time"},
    DataType.BOOLEAN: {"type": "boolean"},
    DataType.GUID: {"type": "string", "format": "uuid"},
}
#: A resolved value as a job document shows it: decimals travel as text (JSON-safe).
OUTPUT_TYPES = INPUT_TYPES | {DataType.DECIMAL: {"type": "string"}}
SOURCES = (
    provenance.REQUEST,
    provenance.SCHEDULE,
    provenance.CHAIN,
    provenance.TASK_DEFAULT,
    provenance.QUERY_DEFAULT,
)
TRIGGERS = (documents.WEBHOOK, documents.SCHEDULE, documents.CLI, documents.CHAIN)


def shaped(row: FilterRow, scalar: Schema) -> Schema:
    """A filter's value schema, as a list where its operator takes several."""
    if row.operator is Operator.BETWEEN:
        return {"type": "array", "items": dict(scalar), "minItems": 2, "maxItems": 2}
    if row.operator is Operator.IN:
        return {"type": "array", "items": dict(scalar), "minItems": 1, "maxItems": MAX_LIST_LENGTH}
    return dict(scalar)


def field(summary: str, schema: Schema, description: str = "", nullable: bool = False) -> Schema:
    """A response field with its dynamic-content label."""
    labelled = {**schema, "x-ms-summary": summary}
    if description:
        labelled["description"] = description
    if nullable:
        labelled["x-nullable"] = True
    return labelled


def an_object(**properties: Schema) -> Schema:
    return {"type": "object", "properties": properties}


def a_list_of(**properties: Schema) -> Schema:
    return {"type": "array", "items": an_object(**properties)}


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer", "format": "int32"}
TIME: Schema = {"type": "string", "format": "date-time"}
URL: Schema = {"type": "string", "format": "uri"}
JOB_ERROR = an_object(Type=field("Error type", STRING), Message=field("Error message", STRING))


def parameter_values(parameters: QueryParameterSet) -> Schema:
    """The job's resolved QueryParameters: each key's value and where it came from."""
    source = {"type": "string", "enum": list(SOURCES)}
    return {
        key: field(
            key,
            an_object(
                Value=field(f"{key} value", shaped(row, OUTPUT_TYPES[row.type]), nullable=True),
                Source=field(f"{key} source", source),
            ),
        )
        for key, row in parameters.rows.items()
    }


def job_definition(parameters: QueryParameterSet) -> Schema:
    """The job status document (HTTP-CONTRACT.md) of a job of the task."""
    run = "Records of this run "
    return an_object(
        ExecuteId=field("Job id", STRING, "The job id (128 random bits, URL-safe)."),
        TaskId=field("Task id", STRING),
        Status=field("Status", {"type": "string", "enum": list(STATUSES)}),
        StatusDescription=field("Status description", STRING),
        Success=field("Success", {"type": "boolean"}, "Set once the job has ended.", True),
        PercentComplete=field("Percent complete", INTEGER, "0 to 100 (100: succeeded)."),
        RowCount=field("Row count", INTEGER, "Records read from the source (null: not yet).", True),
        ProcessedCount=field("Processed count", INTEGER, run + "processed."),
        InsertedCount=field("Inserted count", INTEGER, run + "inserted."),
        UpdatedCount=field("Updated count", INTEGER, run + "updated."),
        SkippedCount=field("Skipped count", INTEGER, run + "skipped."),
        ErrorCount=field("Error count", INTEGER, run + "that could not be written."),
        DeletedCount=field("Deleted count", INTEGER, "Records deleted (also counted updated)."),
        Errors=field(
            "Row errors",
            a_list_of(Row=field("Row", INTEGER), Message=field("Row error message", STRING)),
            "The first row errors (all of them: the PollingUrl with /errors.csv).",
        ),
        QueryParameters=field(
            "Query parameters", an_object(**parameter_values(parameters)), "What the job ran with."
        ),
        CreatedOn=field("Created on", TIME),
        StartedOn=field("Started on", TIME, nullable=True),
        UpdatedOn=field("Updated on", TIME),
        CompletedOn=field("Completed on", TIME, nullable=True),
        EstimatedCompletionOn=field("Estimated completion on", TIME, nullable=True),
        PollingUrl=field("Polling URL", URL),
        RetryAfter=field("Retry after", INTEGER, "Seconds between polls."),
        Chain=field(
            "Chained jobs",
            a_list_of(
                TaskId=field("Chained task id", STRING),
                ExecuteId=field("Chained job id", STRING, nullable=True),
                PollingUrl=field("Chained job polling URL", URL, nullable=True),
                Error=field("Why the chained job did not start", STRING, nullable=True),
            ),
            "The jobs this one started (task chaining).",
        ),
        Error=field("Error", JOB_ERROR, "Why a failed or cancelled job ended.", nullable=True),
        Attempt=field("Attempt", INTEGER, "The current run, from 1."),
        Attempts=field(
            "Earlier attempts",
            a_list_of(
                Attempt=field("Attempt number", INTEGER),
                StartedOn=field("Attempt started on", TIME, nullable=True),
                EndedOn=field("Attempt ended on", TIME),
                Error=field("Attempt error", JOB_ERROR),
            ),
        ),
        Trigger=field("Trigger", {"type": "string", "enum": list(TRIGGERS)}),
        DueOn=field("Due on", TIME, "A scheduled run's due time.", nullable=True),
        CallbackUrl=field("Callback URL", URL, nullable=True),
    )


ERROR_DEFINITION = an_object(
    code=field("Status code", INTEGER),
    status=field("Status", STRING),
    message=field("Message", STRING),
    errors=field("Errors", {"type": "object"}, "Details, by part of the request."),
    Outcome=field("Outcome", STRING, "A 503: NotStarted, or Unknown (it may have started)."),
    ExecuteId=field("Job id", STRING, nullable=True),
    PollingUrl=field("Polling URL", URL, nullable=True),
)
