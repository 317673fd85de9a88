"""The package's shape: its folders are its layers, and imports point one way.

import-linter holds the contracts of ``pyproject.toml`` (``make lint`` runs it too); this
test makes the suite fail on a broken layer, a forbidden import or a cycle, and on a new
module that sits in no layer."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import flask_idms_webhooks
from tests.helpers import ROOT

PACKAGE = Path(flask_idms_webhooks.__file__).parent
#: Top-level modules deliberately outside the layers: they import nothing of the package
#: (the private Redis launcher, the iMIS double).
OUTSIDE_THE_LAYERS = {"redis_server", "testing"}


def contracts() -> list[dict[str, object]]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        config = tomllib.load(handle)
    found: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return found


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"Contracts: {len(contracts())} kept, 0 broken." in result.stdout


def test_every_module_has_a_layer():
    (layers,) = [contract for contract in contracts() if contract["type"] == "layers"]
    layered = {
        name.strip()
        for layer in layers["layers"]  # type: ignore[attr-defined]
        for name in layer.replace(":", "|").split("|")
    }
    modules = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert modules - OUTSIDE_THE_LAYERS == layered
    assert modules >= OUTSIDE_THE_LAYERS


def test_the_modules_outside_the_layers_import_nothing_of_the_package():
    for name in OUTSIDE_THE_LAYERS:
        path = PACKAGE / f"{name}.py"
        files = [path] if path.exists() else sorted((PACKAGE / name).rglob("*.py"))
        for file in files:
            text = file.read_text()
            assert "from .." not in text and "flask_idms_webhooks." not in text.replace(
                f"flask_idms_webhooks.{name}", ""
            ), file


def test_no_module_is_over_four_hundred_lines():
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert max(sizes.values()) <= 410, sorted(sizes.items(), key=lambda item: -item[1])[:3]
