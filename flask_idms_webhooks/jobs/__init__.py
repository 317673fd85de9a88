"""Job records and their lifecycle: the store, the status document, the job context,
trigger / run / seal / cancel / chain / reap, URLs and Redis clients. No routes, no app.

``flask_idms_webhooks.jobs.run_job`` is the RQ job function's dotted path (queued jobs
store it): it stays importable from here, as ``deliver_callback`` (a callback's attempt).
"""

from .callbacks import DELIVERY_ENTRY_POINT, deliver_callback
from .entry import run_job
from .lifecycle import ENTRY_POINT, JobManager

__all__ = ["DELIVERY_ENTRY_POINT", "ENTRY_POINT", "JobManager", "deliver_callback", "run_job"]
