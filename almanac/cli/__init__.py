"""The `almanac` command: click groups named by noun, bodies thin, logic in the rooms."""

from __future__ import annotations

import logging
import os

import click

from almanac import __version__
from almanac.cli import (
    batch_cmds,
    cache_cmds,
    catalog_cmds,
    data_cmds,
    misses_cmds,
    models,
    models_hub,
    models_import,
    query_cmds,
    score_cmds,
    serve_cmd,
    train_cmds,
    tui_cmd,
)
from almanac.cli.base import VERBOSE_HELP, AlmanacGroup, Env
from almanac.paths import Home, resolve_home


@click.group(cls=AlmanacGroup)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    help="Almanac home (catalog, predictions, locks). Default: $ALMANAC_HOME, "
    "else the platform's user data dir.",
)
@click.option("-v", "--verbose", is_flag=True, help=VERBOSE_HELP)
@click.version_option(__version__, prog_name="almanac")
@click.pass_context
def cli(ctx: click.Context, home: str | None, verbose: bool) -> None:
    """Almanac: a catalog of specialized language models and an offline batch
    inference cache of their predictions."""
    from batch.run import console

    ctx.obj = Env(Home(resolve_home(home)))
    # Quiet by default: an engine's own output goes to the home's logs/, named in the
    # run's summary (batch.run.console); -v shows it here instead.
    console.configure(ctx.obj.home.logs, verbose=verbose)
    # Kept apart from the terminal, vLLM's account of itself can be whole (it logs
    # warnings only, unless told otherwise).
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO")
    if not verbose:
        # Reading a local model card without a metadata block is no news to a user.
        logging.getLogger("huggingface_hub.repocard").setLevel(logging.ERROR)
    ctx.call_on_close(ctx.obj.close)
    ctx.call_on_close(lambda: console.configure(None))


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
cache_cmds.register(cli)
score_cmds.register(cli)
data_cmds.register(cli)
train_cmds.register(cli)
cli.add_command(serve_cmd.serve)
cli.add_command(misses_cmds.misses)


def main() -> None:
    cli(prog_name="almanac")
