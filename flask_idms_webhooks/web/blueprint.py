"""The extension's flask-smorest Blueprint: every route of ``views`` hangs on it."""

from __future__ import annotations

from .bodies import HardenedBlueprint

blp = HardenedBlueprint(
    "idms_webhooks",
    __name__,
    description="Start iDMS tasks by webhook and follow their jobs to the end.",
    # The job page's template, its CSS and script (served by the app: no external assets).
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
