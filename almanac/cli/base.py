"""What every command shares: the environment object, output helpers, error mapping."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from almanac.exitcodes import ExitCode
from almanac.paths import Home


class Env:
    """Per-invocation state: the home, and the catalog opened on first use."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._catalog = None

    def catalog(self):  # noqa: ANN201 - avoids importing SQLAlchemy for --help
        if self._catalog is None:
            from catalog.db import Catalog

            self.home.ensure()
            self._catalog = Catalog.at(self.home.catalog_db)
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()


pass_env = click.make_pass_decorator(Env)

json_option = click.option("json_", "--json", is_flag=True, help="Print JSON on stdout.")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def warn(message: str) -> None:
    click.echo(message, err=True)


class AlmanacError(click.ClickException):
    """A user-facing error with an exit code of our choosing."""

    def __init__(self, message: str, code: int = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.exit_code = int(code)


# The one place where the rooms' exceptions become exit codes, first match wins.
# Classes are named, not imported: an exception can only come from a module that
# is already loaded, so `almanac --help` pays for none of them.
EXIT_CODES: tuple[tuple[str, str, ExitCode], ...] = (
    ("catalog.seed", "SeedError", ExitCode.USAGE),
    ("batch.spec", "SpecError", ExitCode.USAGE),
    ("batch.export", "ExportError", ExitCode.USAGE),
    ("batch.lock", "JobLockedError", ExitCode.LOCKED),
    ("catalog.store", "UnknownModelError", ExitCode.ERROR),
    ("catalog.db", "CatalogError", ExitCode.ERROR),
    ("catalog.hub", "HubError", ExitCode.ERROR),
    ("catalog.hubcache", "CacheScanError", ExitCode.ERROR),
    ("catalog.localmodels", "LocalModelError", ExitCode.ERROR),
    ("batch.resolve", "ResolveError", ExitCode.ERROR),
    ("batch.inputs", "InputError", ExitCode.ERROR),
    ("batch.query", "QueryError", ExitCode.ERROR),
)


def translate(exc: BaseException) -> AlmanacError | None:
    for module_name, class_name, code in EXIT_CODES:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, getattr(module, class_name)):
            return AlmanacError(str(exc), code)
    return None


class AlmanacGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc


def echo_table(rows: list[list[str]], headers: list[str]) -> None:
    """A plain aligned table; stdout stays data."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    click.echo(line.rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if not rows:
        click.echo("(none)", err=True)
