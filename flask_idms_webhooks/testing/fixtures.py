"""pytest fixtures: ``imis_double`` (a served, empty double) and ``imis_credentials``.

Use them with ``pytest_plugins = ["flask_idms_webhooks.testing"]`` in a ``conftest.py``,
or import them: ``from flask_idms_webhooks.testing import imis_double``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .double import ImisDouble

USERNAME = "manager"
PASSWORD = "secret"  # noqa: S105 - the double's own made-up login


@pytest.fixture
def imis_double() -> Iterator[ImisDouble]:
    """An ImisDouble with no data, serving on 127.0.0.1 (``.base_url``) for one test;
    log in as ``manager`` / ``secret``."""
    double = ImisDouble(USERNAME, PASSWORD)
    with double.serve():
        yield double


@pytest.fixture
def imis_credentials(imis_double: ImisDouble, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The served double's ``base_url``, ``username`` and ``password``, also set as
    ``IMIS_BASE_URL``, ``IMIS_USERNAME`` and ``IMIS_PASSWORD`` (the names a task file's
    ``${...}`` refers to) for the test."""
    found = {
        "base_url": imis_double.base_url,
        "username": imis_double.username,
        "password": imis_double.password,
    }
    for name, value in found.items():
        monkeypatch.setenv(f"IMIS_{name.upper()}", value)
    return found
