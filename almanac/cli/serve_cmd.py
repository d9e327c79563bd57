"""`almanac serve`: the read-only HTTP API."""

from __future__ import annotations

import copy

import click

from almanac.cli.base import Env, pass_env, warn

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the catalog and predictions.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="0 picks a free port (the log line says which).")
@click.option("--access-log", is_flag=True, help="Log every request (on stderr).")
@pass_env
def serve(env: Env, host: str, port: int, access_log: bool) -> None:
    """Serve the catalog and cached predictions as a read-only JSON API.

    OpenAPI schema at /openapi.json, interactive docs at /docs."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from almanac.server import server_config

    if host not in LOOPBACK:
        warn(f"listening on {host}: anyone who can reach it can read the catalog and predictions")
    # uvicorn logs requests to stdout by default; stdout is for data.
    logging_config = copy.deepcopy(LOGGING_CONFIG)
    logging_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config = server_config(env.home.root, host, port, access_log=access_log,
                           log_config=logging_config)
    uvicorn.Server(config).run()
