"""`almanac tui`: the terminal browser. Textual is imported only when it starts."""

from __future__ import annotations

import click

from almanac.cli.base import Env, pass_env


@click.command()
@click.option("--screen", type=click.Choice(["models", "runs", "predictions"]),
              help="Screen to open on. Default: models, or predictions with --job.")
@click.option("--job", help="Open the predictions of this job.")
@pass_env
def tui(env: Env, screen: str | None, job: str | None) -> None:
    """Browse the catalog, runs and cached predictions in the terminal.

    Read-only: safe to keep open while a scheduled run writes."""
    # The app opens the catalog read-only: a home without one is refused, nothing created.
    from tui.app import make_app

    make_app(env.home.catalog_db, env.home.predictions, screen=screen, job=job).run()
