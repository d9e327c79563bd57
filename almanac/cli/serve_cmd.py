"""`almanac serve`: the read-only HTTP API.

Exposure rules: on a loopback address (the default) no token is needed and only
loopback Host headers are answered (DNS rebinding); whether it is loopback is decided
from the address bound, however `--host` spells it (`127.1`, `0x7f.1`, a name that
resolves to 127.0.0.1, `::1`, `::ffff:127.0.0.1`). Any other address needs a bearer
token (`--token` or ALMANAC_TOKEN), which every request but /health and the docs
must then send. A port in use or a host that cannot be bound exits 1; Ctrl-C or
SIGTERM stop it cleanly (exit 0).
"""

from __future__ import annotations

import copy
import ipaddress
import signal
import socket
from types import FrameType

import click

from almanac.cli.base import CommandError, Env, pass_env, warn
from schemas.errors import ExitCode

ENV_TOKEN = "ALMANAC_TOKEN"


def _addresses(host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise CommandError(f"cannot listen on {host!r}: not an address of this machine ({exc})",
                           ExitCode.ERROR) from None
    return [(family, addr[:2]) for family, _, _, _, addr in found]


def _bind(host: str, port: int, family: int, address: tuple[str, int]) -> socket.socket:
    """The listening socket, bound here so that a port in use is a clear error (exit 1)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Only this address, not the IPv4 one beside it; an IPv4-mapped address
            # (::ffff:127.0.0.1) is an IPv4 one and binds only with the option off.
            mapped = ipaddress.IPv6Address(address[0].split("%")[0]).ipv4_mapped is not None
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if mapped else 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                           ExitCode.ERROR) from None
    return sock


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="0 picks a free port (the log line says which).")
@click.option("--token", envvar=ENV_TOKEN, show_envvar=True,
              help="Bearer token every request must send (required off loopback).")
@click.option("--access-log", is_flag=True, help="Log every request (on stderr).")
@click.option("--no-record-misses", is_flag=True,
              help="Do not keep the requests /v1/ could not answer from the cache "
                   "(`almanac misses run` generates those it keeps).")
@pass_env
def serve(env: Env, host: str, port: int, token: str | None, access_log: bool,
          no_record_misses: bool) -> None:
    """Serve the catalog and cached predictions as a read-only JSON API, and the cache
    as an OpenAI-compatible model server under /v1/ (models, completions, chat
    completions): what is cached is answered, what is not is a 404 `not_cached`, kept
    for `almanac misses run`.

    OpenAPI schema at /openapi.json, a reference page at /docs (works offline)."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from almanac.server import server_config
    from almanac.server.guard import is_loopback_address

    token = token or None
    family, address = _addresses(host, port)[0]  # the one address bound
    loopback = is_loopback_address(address[0])
    if not loopback and token is None:
        raise click.UsageError(
            f"--host {host} is reachable from other machines: give a bearer token with "
            f"--token or {ENV_TOKEN} (clients send `Authorization: Bearer <token>`)")
    if not loopback:
        warn(f"listening on {host}: anyone who can reach it and has the token can read the "
             "catalog and predictions")
    sock = _bind(host, port, family, address)
    # uvicorn logs requests to stdout by default; stdout is for data.
    logging_config = copy.deepcopy(LOGGING_CONFIG)
    logging_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config = server_config(env.home.root, host, sock.getsockname()[1], token=token,
                           access_log=access_log, log_config=logging_config, loopback=loopback,
                           record_misses=not no_record_misses)
    server = uvicorn.Server(config)

    def stopped(_signum: int, _frame: FrameType | None) -> None:
        # Before uvicorn serves: stop as soon as it starts. After: the signal it re-raises
        # once it has shut down (into the handlers it found: these), already obeyed.
        server.should_exit = True

    previous = {s: signal.signal(s, stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    warn(f"almanac: running on http://{shown}:{bound[1]} (reference at /docs; Ctrl-C stops)")
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
