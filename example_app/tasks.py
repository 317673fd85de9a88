"""The example's Python task: custom work the engine's actions do not express.

The other example tasks are declared in ``tasks.toml`` and run on the iUpdate engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import current_app

from flask_idms_webhooks import JobContext

from .database import connect


def merge_contacts(parameters: Mapping[str, Any], context: JobContext) -> None:
    """Merge member CsContact2.ImisId into CsContact1.ImisId: the survivor takes the
    duplicate's missing e-mail and phone, the duplicate is marked merged."""
    survivor_id = parameters["CsContact1.ImisId"]
    duplicate_id = parameters["CsContact2.ImisId"]
    if survivor_id == duplicate_id:
        raise ValueError("CsContact1.ImisId and CsContact2.ImisId name the same member")
    connection = connect(current_app.config["EXAMPLE_DATABASE"])
    try:
        context.set_row_count(2)
        connection.execute("BEGIN")
        found = {
            row["id"]: row
            for row in connection.execute(
                "SELECT * FROM member WHERE id IN (?, ?)", (survivor_id, duplicate_id)
            )
        }
        for member_id in (survivor_id, duplicate_id):
            if member_id not in found:
                raise LookupError(f"no member {member_id}")
        survivor, duplicate = found[survivor_id], found[duplicate_id]
        if duplicate["status"] == "M":
            connection.execute("ROLLBACK")
            context.count(skipped=2)
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        connection.execute(
            "UPDATE member SET email = COALESCE(email, ?), phone = COALESCE(phone, ?),"
            " updated_on = ? WHERE id = ?",
            (duplicate["email"], duplicate["phone"], now, survivor["id"]),
        )
        connection.execute(
            "UPDATE member SET status = 'M', merged_into = ?, updated_on = ? WHERE id = ?",
            (survivor["id"], now, duplicate["id"]),
        )
        connection.execute("COMMIT")
        context.count(updated=2)
    finally:
        connection.close()
