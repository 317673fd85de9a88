"""The Power Automate custom-connector definition of one task: a Swagger 2.0 document
(the version the custom-connector wizard imports) with one action that starts a job and
waits for it, and the internal operation it polls.

Power Automate runs an action asynchronously when its operation answers 202 with an
absolute ``Location`` (and ``Retry-After``): it polls that URL while it answers 202 and
takes the first 200 as the action's output. Both are documented so the designer knows
the output's fields. Built from the task alone, without flask-smorest, so the command
line can print the same document the route answers.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from ..config import package_version
from ..model.parameters import QueryParameterSet
from ..model.tasks import FilterRow, Operator, Prompt, Task
from .connector_schemas import ERROR_DEFINITION, INPUT_TYPES, Schema, job_definition, shaped

#: Power Automate's limits: a connector's title, an action's summary.
MAX_TITLE = 30
MAX_SUMMARY = 80
#: The connection's credential: the task key, pasted once when the connection is made.
KEY_HEADER = "X-Webhook-Key"
STATUS_OPERATION = "GetJobStatus"


def pascal_case(text: str) -> str:
    """``"Sync contact e-mails"`` -> ``"SyncContactEMails"`` (ASCII letters and digits)."""
    return "".join(word[0].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", text))


def shortened(text: str, limit: int, mark: str = "…") -> str:
    """``text`` within ``limit`` characters, cut after a word and marked if it must be."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(mark) + 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut[: limit - len(mark)].rstrip(" -_.,;:!?") + mark


def parameter_description(key: str, row: FilterRow, parameters: QueryParameterSet) -> str:
    """What a maker reads under the field: the filter it sets and what a blank means."""
    words = [f"Filter {row.qualified_name} ({row.operator}, {row.type})."]
    if row.operator is Operator.BETWEEN:
        words.append("Two values: from, to.")
    elif row.operator is Operator.IN:
        words.append("One or more values.")
    words.append(f"{row.prompt}.")
    if key in parameters.defaults:
        words.append(f"Blank: the task's default, {json.dumps(parameters.defaults[key])}.")
    elif key in parameters.query_defaults:
        words.append(f"Blank: the query's default, {json.dumps(parameters.query_defaults[key])}.")
    elif row.prompt is Prompt.OPTIONAL:
        words.append("Blank: no value (the query's own default).")
    return " ".join(words)


def body_parameter(parameters: QueryParameterSet) -> Schema:
    """The start action's body: one field per filter a caller may set, in query order."""
    properties: Schema = {}
    required: list[str] = []
    for key, row in parameters.rows.items():
        properties[key] = shaped(row, INPUT_TYPES[row.type]) | {
            "x-ms-summary": key,
            "description": parameter_description(key, row, parameters),
            "x-ms-visibility": "important" if row.prompt is Prompt.REQUIRED else "advanced",
        }
        # A Required filter left blank takes its default: only one without any must be given.
        if (
            row.prompt is Prompt.REQUIRED
            and key not in parameters.defaults
            and key not in parameters.query_defaults
        ):
            required.append(key)
    query_parameters: Schema = {
        "type": "object",
        "x-ms-summary": "Query parameters",
        "description": "Values of the task's source-query filters.",
        "properties": properties,
    }
    schema: Schema = {"type": "object", "properties": {"QueryParameters": query_parameters}}
    if required:
        query_parameters["required"] = required
        schema["required"] = ["QueryParameters"]
    return {
        "name": "body",
        "in": "body",
        "required": bool(required),
        "x-ms-summary": "Body",
        "schema": schema,
    }


JOB = {"$ref": "#/definitions/Job"}
LOCATION = {
    "type": "string",
    "description": "Absolute URL of the job's status, with its read-only job token.",
}
RETRY_AFTER = {"type": "integer", "description": "Seconds to wait before polling again."}
POLL_HEADERS = {"Location": LOCATION, "Retry-After": RETRY_AFTER}
ENDED = "The job has ended (succeeded, failed or cancelled): its final status. Check Success."


def error(description: str, retry_after: bool = False) -> Schema:
    answer: Schema = {"description": description, "schema": {"$ref": "#/definitions/Error"}}
    if retry_after:
        answer["headers"] = {"Retry-After": RETRY_AFTER}
    return answer


START_ERRORS: Schema = {
    "400": error("Malformed JSON, or a malformed Idempotency-Key."),
    "401": error("The connection's task key is wrong (or was rotated)."),
    "404": error("No such task."),
    "409": error("A job of the task is running and the task allows one at a time.", True),
    "413": error("The body is too large."),
    "415": error("The body is not JSON."),
    "422": error("Invalid QueryParameters, or an Idempotency-Key reused with another body."),
    "429": error("Too many requests: retry after Retry-After.", True),
    "503": error("The job store is unavailable: retry after Retry-After.", True),
}


def start_operation(task: Task, parameters: QueryParameterSet) -> Schema:
    """The one action: start a job of the task and wait for it to end."""
    name = task.name or f"Task {task.id}"
    description = (task.description.rstrip(". ") + ". ") if task.description else ""
    inputs: list[Schema] = [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "type": "string",
            "maxLength": 255,
            "required": False,
            "x-ms-summary": "Idempotency key",
            "description": "A repeat with the same key and body starts nothing and gets the "
            "first answer; e.g. the flow run's name.",
            "x-ms-visibility": "advanced",
        }
    ]
    if parameters.rows:
        inputs.insert(0, body_parameter(parameters))
    return {
        "operationId": f"Start{pascal_case(task.name or task.id) or 'Task'}",
        # Power Automate wants an action's name to end with a letter or a digit.
        "summary": shortened(name, MAX_SUMMARY, mark="").rstrip(" .!?:;,-"),
        "description": f"{description}Starts a job of task {task.id} and waits for it to end: "
        "the output is the job's final status (a failed job is an output too: check Success).",
        "x-ms-visibility": "important",
        "parameters": inputs,
        "responses": {
            # What the action outputs: the last answer of its polling.
            "200": {"description": f"After polling Location. {ENDED}", "schema": JOB},
            "202": {
                "description": "The job is queued: the action polls Location until it ends.",
                "headers": POLL_HEADERS,
                "schema": JOB,
            },
            **START_ERRORS,
        },
    }


def status_operation() -> Schema:
    """The operation the action polls (Location); internal, so it is not in the list."""
    return {
        "operationId": STATUS_OPERATION,
        "summary": "Get a job's status",
        "description": "The status of a job: 202 while it is queued or running, 200 once it "
        "has ended.",
        "x-ms-visibility": "internal",
        "parameters": [
            {
                "name": "job_id",
                "in": "path",
                "type": "string",
                "required": True,
                "x-ms-summary": "Job id",
                "description": "The job's ExecuteId.",
            },
            {
                "name": "token",
                "in": "query",
                "type": "string",
                "required": False,
                "x-ms-summary": "Job token",
                "description": "The job's read-only token (part of its Location).",
                "x-ms-visibility": "internal",
            },
        ],
        "responses": {
            "200": {"description": ENDED, "schema": JOB},
            "202": {
                "description": "The job is queued or running: poll Location after Retry-After.",
                "headers": POLL_HEADERS,
                "schema": JOB,
            },
            "401": error("Wrong job token or task key."),
            "404": error("No such job, or its record has expired."),
            "429": error("Too many polls from this address: retry after Retry-After.", True),
        },
    }


def connector_definition(
    task: Task, parameters: QueryParameterSet, base: str, prefix: str
) -> Schema:
    """The Swagger 2.0 custom-connector definition of ``task``, served at ``base`` (a URI:
    the public URL, or the request's root) under the route ``prefix``."""
    parts = urlsplit(base)
    name = task.name or task.id
    summary = task.description.strip() or f"Starts the iDMS task {name} and waits for its job."
    if not summary.endswith((".", "!", "?")):
        summary += "."
    return {
        "swagger": "2.0",
        "info": {
            "title": shortened(name, MAX_TITLE),
            "description": f"{summary} Task {task.id}: a connection takes its webhook key.",
            "version": package_version(),
        },
        "host": parts.netloc,
        "basePath": f"{parts.path.rstrip('/')}{prefix}" or "/",
        "schemes": [parts.scheme],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "TaskKey": {
                "type": "apiKey",
                "in": "header",
                "name": KEY_HEADER,
                "description": f"The webhook key of task {task.id} (from an admin).",
            }
        },
        "security": [{"TaskKey": []}],
        "paths": {
            f"/tasks/{task.id}/jobs": {"post": start_operation(task, parameters)},
            "/jobs/{job_id}": {"get": status_operation()},
        },
        "definitions": {"Job": job_definition(parameters), "Error": ERROR_DEFINITION},
        "x-ms-connector-metadata": [
            {"propertyName": "Website", "propertyValue": base},
            {"propertyName": "Categories", "propertyValue": "Data;IT Operations"},
        ],
    }
