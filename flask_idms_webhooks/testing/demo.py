"""The demo data ``python -m flask_idms_webhooks.testing --demo`` serves.

- 300 ``CsContact`` entities keyed by ``ID`` ``"1001"`` to ``"1300"``, with ``FirstName``,
  ``LastName``, ``Email``, ``Status`` (every tenth is ``"I"``, the rest ``"A"``),
  ``MemberType`` (``REG``, ``STU``, ``RET``, ``LIFE`` in turn), ``JoinDate`` (a date) and
  ``Dues`` (a decimal).
- The IQA ``$/Demo/Contacts`` over them: columns ``ID``, ``FirstName``, ``LastName``,
  ``Email``, ``MemberType``, ``JoinDate``, ``Dues``; filters, in order: ``LastName``
  StartsWith (Optional), ``Status`` Equal ``A`` (fixed, no parameter slot),
  ``MemberType`` In (Optional), ``JoinDate`` Between (Optional). So it takes three
  positional parameters: ``?QueryName=$/Demo/Contacts&parameter=S&parameter=&parameter=``.
- An empty ``CsDues`` panel (keyed by ``ID``, a Party child) for tasks to write into.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from .double import ImisDouble
from .operators import QueryFilter

FIRST_NAMES = ("Ann", "Ben", "Chloe", "Dev", "Ema", "Femi", "Grace", "Hugo", "Ines", "Jack")
LAST_NAMES = ("Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ito")
MEMBER_TYPES = ("REG", "STU", "RET", "LIFE")
DUES = ("120.00", "45.50", "60.00", "0.00")
CONTACTS = 300
QUERY = "$/Demo/Contacts"


def demo_contacts() -> list[dict[str, Any]]:
    contacts = []
    for i in range(CONTACTS):
        key = str(1001 + i)
        first, last = FIRST_NAMES[i % len(FIRST_NAMES)], LAST_NAMES[i * 7 % len(LAST_NAMES)]
        contacts.append(
            {
                "ID": key,
                "FirstName": first,
                "LastName": last,
                "Email": f"{first}.{last}.{key}@example.org".lower(),
                "Status": "I" if i % 10 == 9 else "A",
                "MemberType": MEMBER_TYPES[i % len(MEMBER_TYPES)],
                "JoinDate": date(2015 + i % 10, 1 + i % 12, 1 + i % 28),
                "Dues": Decimal(DUES[i % len(DUES)]),
            }
        )
    return contacts


def seed_demo(double: ImisDouble) -> None:
    double.add_entities("CsContact", demo_contacts(), key="ID")
    double.add_entities("CsDues", [], key="ID")
    double.add_query(
        QUERY,
        entity="CsContact",
        columns=["ID", "FirstName", "LastName", "Email", "MemberType", "JoinDate", "Dues"],
        filters=[
            QueryFilter("CsContact", "LastName", "StartsWith", prompt="Optional"),
            QueryFilter("CsContact", "Status", "Equal", prompt="None", value="A"),
            QueryFilter("CsContact", "MemberType", "In", prompt="Optional"),
            QueryFilter("CsContact", "JoinDate", "Between", prompt="Optional"),
        ],
    )
