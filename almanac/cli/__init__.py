"""The `almanac` command: click groups named by noun, bodies thin, logic in the rooms."""

from __future__ import annotations

import click

from almanac import __version__
from almanac.cli import (
    batch_cmds,
    cache_cmds,
    catalog_cmds,
    data_cmds,
    models,
    models_hub,
    models_import,
    query_cmds,
    score_cmds,
    serve_cmd,
    train_cmds,
    tui_cmd,
)
from almanac.cli.base import AlmanacGroup, Env
from almanac.paths import Home, resolve_home


@click.group(cls=AlmanacGroup)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    help="Almanac home (catalog, predictions, locks). Default: $ALMANAC_HOME, "
    "else the platform's user data dir.",
)
@click.version_option(__version__, prog_name="almanac")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """Almanac: a catalog of specialized language models and an offline batch
    inference cache of their predictions."""
    ctx.obj = Env(Home(resolve_home(home)))
    ctx.call_on_close(ctx.obj.close)


cli.add_command(catalog_cmds.init)
cli.add_command(catalog_cmds.domains)
cli.add_command(catalog_cmds.languages)
cli.add_command(models.models)
models.models.add_command(models_import.add)
models.models.add_command(models_import.scan_cache)
models.models.add_command(models_hub.discover)
models.models.add_command(models_hub.refresh)
cli.add_command(tui_cmd.tui)
batch_cmds.register(cli)
query_cmds.register(cli)
query_cmds.cache.add_command(cache_cmds.repair)
score_cmds.register(cli)
data_cmds.register(cli)
train_cmds.register(cli)
cli.add_command(serve_cmd.serve)


def main() -> None:
    cli(prog_name="almanac")
