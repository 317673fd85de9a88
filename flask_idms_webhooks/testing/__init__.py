"""A local double of the iMIS REST API, for tests and demos.

``ImisDouble`` serves ``POST /token``, ``GET /api/iqa``, ``GET /api/query``,
``POST /api/QueryDefinition/_execute`` (FindByPath) and ``GET/POST/PUT/DELETE
/api/{Entity}[/{id}]`` over in-memory data, on 127.0.0.1 in a background thread, with the
shapes of ASI's published examples (``tests/golden/`` names each source). Faults:
``fail_nth`` (a 500, 429, ... on the Nth request), ``expire_token_once`` (one 401),
``slow``; ``requests`` logs every request with its raw query string::

    double = ImisDouble(username="manager", password="secret")
    double.add_entities("CsContact", [{"ID": "101", "LastName": "Adams"}], key="ID")
    double.add_query("$/Sync/Contacts", entity="CsContact", columns=["ID", "LastName"],
                     filters=[QueryFilter("CsContact", "LastName", "StartsWith")])
    with double.serve() as base_url:
        ...

pytest: ``pytest_plugins = ["flask_idms_webhooks.testing"]`` gives the ``imis_double``
and ``imis_credentials`` fixtures (registered only where pytest is installed).

Standalone: ``python -m flask_idms_webhooks.testing --port 8765 --demo`` serves 300 demo
``CsContact`` entities (IDs ``1001``-``1300``: FirstName, LastName, Email, Status ``A`` or
``I`` (every tenth), MemberType, JoinDate, Dues) and the IQA ``$/Demo/Contacts`` (filters:
LastName StartsWith, fixed Status = A, MemberType In, JoinDate Between: three positional
parameters); log in as ``manager`` / ``secret``. See ``demo.py``.
"""

from __future__ import annotations

from importlib.util import find_spec

from .control import RecordedRequest
from .double import ImisDouble
from .operators import QueryFilter

__all__ = ["ImisDouble", "QueryFilter", "RecordedRequest"]

if find_spec("pytest") is not None:
    from .fixtures import imis_credentials, imis_double

    __all__ += ["imis_credentials", "imis_double"]
