"""``flask idms-webhooks schedules [enable|disable TASK]``: every task's schedule."""

from __future__ import annotations

import click

from .group import cli, current_state, with_app


@cli.group("schedules", invoke_without_command=True)
@click.pass_context
def schedules_group(context: click.Context) -> None:
    """Every task's schedule: cron, enabled, next and last run, last outcome."""
    if context.invoked_subcommand is None:
        list_schedules()


@with_app
def list_schedules() -> None:
    state = current_state()
    views = state.scheduler.views()
    for task in state.tasks.values():
        view = views.get(task.id)
        if view is None:
            click.echo(f"{task.id}: no schedule (webhooks only)")
            continue
        when = ", ".join(view["Cron"]) or f"once at {view['RunAt']}"
        state_text = "enabled" if view["Enabled"] else "DISABLED"
        click.echo(f"{task.id}: {when} (UTC), {state_text}")
        if view["DisabledReason"]:
            click.echo(f"  disabled: {view['DisabledReason']}")
        click.echo(f"  next run: {view['NextRunOn'] or '-'}")
        last = view["LastRunOn"] or "-"
        outcome = view["LastOutcome"] or "-"
        click.echo(f"  last run: {last} ({outcome}), consecutive failures: "
                   f"{view['ConsecutiveFailures']}")  # fmt: skip


def _set_schedule(task_id: str, enabled: bool) -> None:
    state = current_state()
    task = state.tasks.get(task_id)
    if task is None or task.schedule is None:
        what = "no task" if task is None else "no schedule on task"
        raise click.BadParameter(f"{what} {task_id!r}", param_hint="TASK")
    view = state.scheduler.set_enabled(task, enabled, "Disabled from the command line")
    click.echo(f"{task_id}: {'enabled' if view['Enabled'] else 'disabled'}; "
               f"next run: {view['NextRunOn'] or '-'}")  # fmt: skip


@schedules_group.command("enable")
@click.argument("task")
@with_app
def enable_command(task: str) -> None:
    """Turn TASK's schedule on (its failure count starts afresh)."""
    _set_schedule(task, True)


@schedules_group.command("disable")
@click.argument("task")
@with_app
def disable_command(task: str) -> None:
    """Turn TASK's schedule off (webhooks still start it)."""
    _set_schedule(task, False)
