"""``flask idms-webhooks connector TASK``: print a task's Power Automate custom-connector
definition (Swagger 2.0), the document ``GET {prefix}/connector/<task_id>.json`` answers."""

from __future__ import annotations

import json

import click

from ..web.connector_definition import connector_definition
from .group import BASE_URL_HELP, base_url, cli, current_state, find_task, with_app


@cli.command("connector")
@click.argument("task_id", metavar="TASK")
@click.option("--base-url", "given_base", default=None, help=BASE_URL_HELP)
@with_app
def connector_command(task_id: str, given_base: str | None) -> None:
    """Print TASK's custom-connector definition (Swagger 2.0) for Power Automate:

    flask idms-webhooks connector TASK > TASK.swagger.json

    then import it (Custom connectors > New custom connector > Import an OpenAPI file).
    It holds no key: the connection asks for the task key. Its host is the base URL,
    the address Power Automate reaches the service at.
    """
    state = current_state()
    task = find_task(task_id)
    definition = connector_definition(
        task, state.parameters[task.id], base_url(given_base), state.settings.url_prefix
    )
    click.echo(json.dumps(definition, indent=2, ensure_ascii=False))
