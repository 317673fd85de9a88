"""Sphinx configuration of the flask-idms-webhooks documentation (offline build)."""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

with (ROOT / "pyproject.toml").open("rb") as handle:
    _metadata = tomllib.load(handle)["project"]

project = "flask-idms-webhooks"
author = "flask-idms-webhooks developers"
copyright = "flask-idms-webhooks developers"  # noqa: A001 - Sphinx's name
release = _metadata["version"]
version = ".".join(release.split(".")[:2])

# Only extensions that need no network: no intersphinx.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
language = "en"
default_role = "literal"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"flask-idms-webhooks {release}"
html_static_path = ["_static"]
