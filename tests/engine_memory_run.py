"""One engine run in a process of its own, for the flat-memory test.

``python -m tests.engine_memory_run DB REDIS_URL MODE [IMIS_URL ENTITY]`` copies every row
of the table ``staging`` of the SQLite file DB into its table ``contact`` (or, given an
iMIS URL, into that iMIS's ``ENTITY``, 8 rows in flight) (action Insert), through the
task file's handler (``IUpdate``, over a ``Connections`` of its own) and a real
``JobContext`` on Redis, then prints the finished counters and the process's peak RSS as
JSON. MODE ``leaky`` also keeps every source row in a list: the control that the memory
check must catch.

The peak is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this program's own
memory. (The ``ru_maxrss`` a parent gets from ``wait4`` also counts the parent's pages the
child held between fork and exec: a big test process would hide a small child's peak.)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import redis

from flask_idms_webhooks.iupdate.connections import Connections
from flask_idms_webhooks.iupdate.engine import Engine, IUpdate
from flask_idms_webhooks.jobs.context import JobContext
from flask_idms_webhooks.jobs.documents import new_document
from flask_idms_webhooks.jobs.store import JobStore, dumps
from flask_idms_webhooks.model.tasks import Action, Source, Target, Task

KEPT: list[dict[str, Any]] = []
#: Rows per source page. The iMIS runs' rows are about 25 KB: a page of them holds about
#: 2.5 MB, so that their small run still reads two pages (its peak is the steady state's).
PAGE, IMIS_PAGE = 500, 100


def keep_every_row() -> None:
    values = Engine.values

    def leaky(self: Engine, row: dict[str, Any]) -> dict[str, Any]:
        KEPT.append(row)
        return values(self, row)

    Engine.values = leaky  # type: ignore[method-assign]


def main(database: str, redis_url: str, mode: str, imis_url: str = "", entity: str = "") -> None:
    if mode == "leaky":
        keep_every_row()
    profiles: dict[str, dict[str, Any]] = {"db": {"kind": "sql", "url": f"sqlite:///{database}"}}
    source = Source(
        "db",
        'SELECT ext_id AS "ExtId", email AS "Email", note AS "Note" FROM staging',
        IMIS_PAGE if imis_url else PAGE,
    )
    target = Target(
        "db",
        "contact",
        Action.INSERT,
        mapping={"ext_id": "ExtId", "email": "Email", "note": "Note"},
    )
    if imis_url:
        profiles["imis"] = {
            "kind": "imis",
            "base_url": imis_url,
            "username": "manager",
            "password": os.environ["ENGINE_MEMORY_IMIS_PASSWORD"],
            "max_concurrency": 8,
        }
        mapping = {"ID": "ExtId", "Email": "Email", "Note": "Note"}
        target = Target("imis", entity, Action.INSERT, mapping=mapping)
    connections = Connections()
    handler = IUpdate(source, target, (), profiles, connections)
    task = Task(id="memory", handler=handler, source=source, target=target, connections=profiles)
    connection = redis.Redis.from_url(redis_url)
    store = JobStore(connection, result_ttl=600, heartbeat_timeout=60)
    document = new_document(
        job_id=f"memory-{mode}", task_id=task.id, parameters={}, polling_url="", retry_after=1
    )
    connection.set(store.live_key(document["ExecuteId"]), dumps(document), ex=600)
    context = JobContext(store, document, task, max_row_errors=50)
    try:
        handler({}, context)
    finally:
        connections.close()
    connection.close()
    names = ("RowCount", "ProcessedCount", "InsertedCount", "ErrorCount")
    found = {name: context.document[name] for name in names} | {"Kept": len(KEPT)}
    print(json.dumps(found | {"PeakKiB": peak_rss_kib()}))


def peak_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(*sys.argv[1:6])
