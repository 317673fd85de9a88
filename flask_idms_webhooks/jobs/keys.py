"""The Redis keys of the job store (``idms:`` prefix).

- ``job:{id}``    the live status document (JSON), while queued or running;
- ``result:{id}`` the sealed final document, written once (``SET NX``), kept ``result_ttl``;
- ``hb:{id}``     the heartbeat of a running job (expires when its worker stops beating);
- ``cancel:{id}`` a cancellation request (when it was asked);
- ``running``     a sorted set of running job ids (the reaper's work list);
- ``queued``      a sorted set of queued job ids, by dispatch time (the reaper's other list);
- ``history:{task}`` a sorted set of a task's job ids by creation time;
- ``errors:{id}`` a list of the job's row errors (JSON), up to ``MAX_STORED_ROW_ERRORS``;
- ``idem:{task}:{route}:{hash}`` an ``Idempotency-Key`` claim;
- ``dispatch:{id}`` once a job was dispatched again: its current RQ job id (``rq``), how
  many times it was dispatched (``starts``) and the RQ job id that started (``started``);
  without it a job has its first dispatch, RQ job id = job id;
- ``suspect:{id}`` when a job was first seen without a sign of life (no heartbeat while
  running, or taken off the queue and not started): a live worker clears it;
- ``chained:{id}`` the chained jobs a finished job starts (claimed once, then created);
- ``active:{queue}:{task}`` the ids of a task's jobs that may be queued or running (a
  schedule skips a due time while one of them still has a live record);
- ``schedule:{queue}:{task}`` a scheduled task's live state (hash): ``enabled``, ``file``
  (the task file's ``enabled`` it started from), ``seen`` (the last due time handled, or
  when a scheduler first saw the task), ``failures``, ``reason``, ``last_run``,
  ``last_job``, ``last_outcome``, ``counted`` (the last job whose outcome was counted);
- ``schedule-runs:{queue}:{task}`` its recent due times (JSON list, newest first);
- ``scheduler:{queue}`` the scheduler role's lease (its holder's name);
- ``callback:{id}`` a job's completion callback (hash): ``url`` (whole, query included:
  only the delivery reads it), ``task``, ``sealed`` (when its job was sealed), ``state``,
  ``attempts``, ``status`` (the last attempt's), ``next``, ``delivered``, ``rq`` (the RQ
  job of the latest delivery queued);
- ``callbacks:{queue}`` a sorted set of the callbacks to deliver, by when the next
  attempt is due (or, while one is in flight, when its lease ends).

The schedules' keys carry the app's queue name (``IDMS_WEBHOOKS_QUEUE_NAME``): apps
sharing a Redis with queues of their own have schedules, and a scheduler role, of their
own.
"""

from __future__ import annotations

PREFIX = "idms:"


class StoreKeys:
    """The key of each record."""

    RUNNING = PREFIX + "running"
    QUEUED = PREFIX + "queued"
    #: The app's queue name: the namespace of the schedules' keys.
    namespace: str = "idms-webhooks"

    @property
    def scheduler_key(self) -> str:
        return f"{PREFIX}scheduler:{self.namespace}"

    @staticmethod
    def live_key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    @staticmethod
    def result_key(job_id: str) -> str:
        return f"{PREFIX}result:{job_id}"

    @staticmethod
    def heartbeat_key(job_id: str) -> str:
        return f"{PREFIX}hb:{job_id}"

    @staticmethod
    def cancel_key(job_id: str) -> str:
        return f"{PREFIX}cancel:{job_id}"

    @staticmethod
    def errors_key(job_id: str) -> str:
        return f"{PREFIX}errors:{job_id}"

    @staticmethod
    def history_key(task_id: str) -> str:
        return f"{PREFIX}history:{task_id}"

    @staticmethod
    def dispatch_key(job_id: str) -> str:
        return f"{PREFIX}dispatch:{job_id}"

    @staticmethod
    def suspect_key(job_id: str) -> str:
        return f"{PREFIX}suspect:{job_id}"

    @staticmethod
    def chain_key(job_id: str) -> str:
        return f"{PREFIX}chained:{job_id}"

    @staticmethod
    def claim_key(key: str) -> str:
        return f"{PREFIX}idem:{key}"

    def active_key(self, task_id: str) -> str:
        return f"{PREFIX}active:{self.namespace}:{task_id}"

    def schedule_key(self, task_id: str) -> str:
        return f"{PREFIX}schedule:{self.namespace}:{task_id}"

    @staticmethod
    def callback_key(job_id: str) -> str:
        return f"{PREFIX}callback:{job_id}"

    @property
    def callbacks_key(self) -> str:
        return f"{PREFIX}callbacks:{self.namespace}"

    def schedule_runs_key(self, task_id: str) -> str:
        return f"{PREFIX}schedule-runs:{self.namespace}:{task_id}"
