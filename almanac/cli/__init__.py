"""The `almanac` command: click groups named by noun, bodies thin, logic in the rooms."""

from __future__ import annotations

import logging
import os

import click

from almanac import __version__
from almanac.cli.base import VERBOSE_HELP, AlmanacGroup, Env
from almanac.paths import Home, resolve_home

# Each command by the module that holds it, imported only when that command runs (or
# `--help` lists them all): `almanac --version` and `almanac query` pay for nothing else.
COMMANDS = {
    "init": "almanac.cli.catalog_cmds:init",
    "domains": "almanac.cli.catalog_cmds:domains",
    "languages": "almanac.cli.catalog_cmds:languages",
    "models": "almanac.cli.models:models",
    "tui": "almanac.cli.tui_cmd:tui",
    "run": "almanac.cli.batch_cmds:run",
    "runs": "almanac.cli.batch_cmds:runs",
    "demo": "almanac.cli.batch_cmds:demo",
    "query": "almanac.cli.query_cmds:query",
    "export": "almanac.cli.query_cmds:export",
    "cache": "almanac.cli.cache_cmds:cache",
    "score": "almanac.cli.score_cmds:score",
    "compare": "almanac.cli.score_cmds:compare",
    "curate": "almanac.cli.data_cmds:curate",
    "train": "almanac.cli.train_cmds:train",
    "distill": "almanac.cli.train_cmds:distill",
    "serve": "almanac.cli.serve_cmd:serve",
    "misses": "almanac.cli.misses_cmds:misses",
}


@click.group(cls=AlmanacGroup, lazy=COMMANDS)
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


def main() -> None:
    cli(prog_name="almanac")
