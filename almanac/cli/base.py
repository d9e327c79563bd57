"""What every command shares: the environment object, output helpers, error mapping."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from almanac.paths import Home
from batch.run.stopping import Stopped, catch_stops  # stdlib and schemas only: --help stays quick
from schemas.errors import AlmanacError, ExitCode
from schemas.output_path import ReaderGone

if TYPE_CHECKING:  # catalog.db imports SQLAlchemy and Alembic: not for --help
    import sqlite3

    from sqlalchemy.orm import Session

    from catalog.db import Catalog


# The largest count or offset an option takes: SQLite's largest integer, so that no
# number a user types overflows a query (click's IntRange would take any Python int).
MAX_INT = 2**63 - 1


class Env:
    """Per-invocation state: the home, and the catalog opened on first use."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._catalog: Catalog | None = None

    def catalog(self) -> Catalog:
        """The home's catalog, created or upgraded on first use (commands may write)."""
        if self._catalog is None:
            from catalog.db import open_catalog

            self.home.ensure()
            self._catalog = open_catalog(self.home.catalog_db)
        return self._catalog

    def catalog_readonly(self) -> Catalog:
        """The home's catalog as it is, for commands that must write nothing (a dry run):
        never created nor upgraded here."""
        if self._catalog is None:
            from catalog.db import open_catalog

            self._catalog = open_catalog(self.home.catalog_db, readonly=True)
        return self._catalog

    @contextlib.contextmanager
    def catalog_reads(self) -> Iterator[sqlite3.Connection | Session]:
        """The home's catalog for a command that only reads (catalog.search's listings
        take either kind): the file over sqlite3 alone when it is at the newest schema,
        so SQLAlchemy never loads; otherwise a session of the catalog as `catalog()`
        opens it, created or upgraded as for any command."""
        from catalog.plain import connect

        conn = connect(self.home.catalog_db)
        if conn is None:
            with self.catalog().sessions() as session:
                yield session
            return
        try:
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()


pass_env = click.make_pass_decorator(Env)

json_option = click.option("json_", "--json", is_flag=True, help="Print JSON on stdout.")

VERBOSE_HELP = ("Show the engine's own output (vLLM, torch, Ray) on stderr; by default it "
                "goes to the home's logs/<job>-<run>.log, named in the run's summary.")


def _verbose(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        from batch.run.console import set_verbose

        set_verbose()


# `almanac run -v` as well as `almanac -v run`: the command's flag is read after the group's.
verbose_option = click.option("-v", "--verbose", is_flag=True, expose_value=False,
                              callback=_verbose, help=VERBOSE_HELP)


def emit_json(data: Any) -> None:
    """`data` as JSON on stdout. JSON has no NaN nor Infinity: a float that is not finite
    is written as null, never as a bare word no strict reader takes."""
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), indent=2, ensure_ascii=False, default=str)
    click.echo(text)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def warn(message: str) -> None:
    click.echo(message, err=True)


class CommandError(click.ClickException):
    """An error on its way out of the CLI, with the exit code the room chose."""

    def __init__(self, message: str, code: int = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.exit_code = int(code)


class LazyGroup(click.Group):
    """A group whose subcommands are named with the module that holds them
    (`{"list": "almanac.cli.models:list_"}`), imported only when run or listed in help:
    a command pays for its own imports, never for every other command's."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            import importlib

            module, _, name = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), name), cmd_name)
        return super().get_command(ctx, cmd_name)


class AlmanacGroup(LazyGroup):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AlmanacError as exc:
            raise CommandError(str(exc), exc.exit_code) from exc
        except BrokenPipeError as exc:
            # The reader of the output went away (`| head`): it has what it wanted. Exit 0
            # without a word. Any other broken pipe (an engine's) is a failure: raised.
            if not (_stdout_closed() or isinstance(exc, ReaderGone)):
                raise
            ctx.exit(0)
        except Stopped as stop:
            # A run stopped by SIGINT / SIGTERM outside `almanac run` (the demo): it wrote
            # what it had finished; exit as the shell would report the signal.
            warn(f"{stop}: what was finished is written and indexed")
            ctx.exit(stop.exit_code)
        except KeyboardInterrupt:
            # SIGINT where no command set a handler of its own: exit as the shell reports
            # it (click would say "Aborted!" and exit 1).
            warn("stopped by SIGINT")
            ctx.exit(int(ExitCode.INTERRUPTED))


@contextlib.contextmanager
def stoppable(what: str, outcome: str) -> Iterator[None]:
    """SIGINT and SIGTERM stop `what` where it is, the way an error does (a transaction
    rolled back, files it had moved moved back), then the command exits 130 / 143 as the
    shell reports the signal, with one line saying what is kept (`outcome`)."""
    try:
        with catch_stops():
            yield
    except Stopped as stop:
        warn(f"{what} {stop}: {outcome}")
        raise SystemExit(stop.exit_code) from None


def _stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader went away; if so it is pointed at
    /dev/null, so that what is still buffered for that reader is not written (nor fails)
    at exit."""
    import os
    import select
    import sys

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        gone = any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False  # not a descriptor (a test's captured stdout): not a closed pipe
    if gone:
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
    return gone


def echo_table(rows: list[list[str]], headers: list[str]) -> None:
    """A plain aligned table; stdout stays data."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        click.echo("(none)", err=True)
