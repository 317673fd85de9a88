"""The example's task handlers: real reads and writes over the membership database."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from flask import current_app

from flask_idms_webhooks import JobContext

from .database import connect

BATCH = 100


def renew_memberships(parameters: Mapping[str, Any], context: JobContext) -> None:
    """Extend by a year the paid-through date of active members whose last name starts
    with LastName and whose membership ends before PaidBefore. Honorary members are
    skipped; members without a valid e-mail are row errors."""
    connection = connect(current_app.config["EXAMPLE_DATABASE"])
    try:
        paid_before = str(parameters["PaidBefore"])[:10]
        rows = connection.execute(
            "SELECT id, email, member_type, paid_through FROM member"
            " WHERE status = :Status AND last_name LIKE :LastName || '%'"
            " AND paid_through < :PaidBefore ORDER BY id",
            {
                "Status": parameters["Status"],  # a fixed filter of the task file
                "LastName": parameters["LastName"] or "",
                "PaidBefore": paid_before,
            },
        ).fetchall()
        context.set_row_count(len(rows))
        delay = float(current_app.config.get("EXAMPLE_BATCH_DELAY", 0.05))
        for start in range(0, len(rows), BATCH):
            context.check_cancelled()
            connection.execute("BEGIN")
            inserted = updated = skipped = 0
            for offset, row in enumerate(rows[start : start + BATCH]):
                if not row["email"] or "@" not in row["email"]:
                    context.row_error(start + offset + 1, f"member {row['id']}: no valid e-mail")
                elif row["member_type"] == "HON":
                    skipped += 1
                else:
                    renewed = dt.date.fromisoformat(row["paid_through"]) + dt.timedelta(days=365)
                    connection.execute(
                        "UPDATE member SET paid_through = ?, updated_on = ? WHERE id = ?",
                        (renewed.isoformat(), dt.datetime.now(dt.UTC).isoformat(), row["id"]),
                    )
                    updated += 1
            connection.execute("COMMIT")
            context.count(inserted=inserted, updated=updated, skipped=skipped)
            time.sleep(delay)  # a real sync waits on the network; this shows progress moving
    finally:
        connection.close()


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
