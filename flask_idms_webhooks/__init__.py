"""flask-idms-webhooks: start iDMS-style data-sync tasks by webhook and follow them."""

from .errors import (
    ConfigurationError,
    IdmsWebhooksError,
    JobCancelled,
    ParameterError,
    StoreUnavailable,
    TaskLoadError,
    TransientError,
)
from .extension import IdmsWebhooks
from .jobs.context import JobContext
from .model.tasks import DataType, FilterRow, Operator, Prompt, Task

__all__ = [
    "ConfigurationError",
    "DataType",
    "FilterRow",
    "IdmsWebhooks",
    "IdmsWebhooksError",
    "JobCancelled",
    "JobContext",
    "Operator",
    "ParameterError",
    "Prompt",
    "StoreUnavailable",
    "Task",
    "TaskLoadError",
    "TransientError",
]
