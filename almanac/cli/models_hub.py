"""`almanac models discover` and `almanac models refresh`: the catalog kept from the Hub."""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from almanac.cli.base import MAX_INT, Env, emit_json, json_option, pass_env, warn

# Plain modules (no SQLAlchemy, no huggingface_hub): --help stays quick.
from catalog.filters import FilterError, parse_params
from catalog.hubquery import DEFAULT_TASK, DISCOVER_SORTS, DiscoverError, DiscoverQuery
from schemas.errors import ExitCode

if TYPE_CHECKING:  # huggingface_hub loads when a command talks to the Hub
    from huggingface_hub import HfApi

    from catalog.hubsync import Report

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def hub_api() -> HfApi:
    """The Hub client: HF_ENDPOINT (a mirror, or a stand-in) and HF_TOKEN as the environment
    sets them now; HF_HUB_OFFLINE=1 makes every request fail with a clear error."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=os.environ.get("HF_TOKEN") or None)


def log_to_stderr() -> None:
    """Rate-limit waits, retries and skipped cards are logged by the catalog: show them."""
    logger = logging.getLogger("catalog")
    if not logger.handlers:
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _params(option: str, value: str | None) -> int | None:
    try:
        return parse_params(option, value)
    except FilterError as exc:
        raise click.BadParameter(exc.problem, param_hint=f"'--{option.replace('_', '-')}'") from None


def _age(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    m = _AGE.match(value)
    if not m:
        raise click.BadParameter(f"{value!r} is not an age (try 7d, 12h or 2w)")
    return timedelta(**{_UNITS[m[2]]: int(m[1])})


def _report(report: Report, json_: bool, what: str) -> None:
    """The report on stdout, one line per skipped model on stderr; exit 3 when any was
    skipped (the rest were written)."""
    for refusal in report.refused:
        warn(f"skipped: {refusal.reason}")
    for outcome in report.moved:
        warn(f"{outcome.ref}: the Hub moved it from {outcome.previous_revision} to {outcome.revision}; "
             "the old revision's facts are kept in its history")
    counts = ", ".join(f"{report.count(a)} {a}" for a in ("added", "updated", "unchanged"))
    dry = " (dry run: nothing written)" if report.dry_run else ""
    warn(f"{what}: {counts}, {len(report.refused)} skipped{dry}")
    if json_:
        emit_json(report.to_json())
    else:
        for outcome in report.outcomes:
            verb = f"would be {outcome.action}" if report.dry_run and outcome.action != "unchanged" else outcome.action
            click.echo(f"{verb:<18} {outcome.ref}")
    if report.refused:
        click.get_current_context().exit(ExitCode.FAILED_ROWS)


@click.command()
@click.option("--domain", "domains", multiple=True, help="Domain slug: asks for the Hub tags that map to it.")
@click.option("--language", "languages", multiple=True, help="ISO 639 code or group (sea).")
@click.option("--min-params", help="At least this many parameters (7B, 1.1B, 350M).")
@click.option("--max-params", help="At most this many parameters.")
@click.option("--search", help="Text the Hub repo id contains.")
@click.option("--adapters-of", metavar="REF", help="LoRA adapters of this base (a catalog ref or Hub repo id).")
@click.option("--task", help=f"Hub pipeline tag (default {DEFAULT_TASK}; with --adapters-of, any); `any` for all.")
@click.option("--sort", type=click.Choice(DISCOVER_SORTS), default="downloads", show_default=True)
@click.option("--limit", type=click.IntRange(1, MAX_INT), default=100, show_default=True,
              help="At most this many models.")
@click.option("--dry-run", is_flag=True, help="Show what would be added or refreshed; write nothing.")
@json_option
@pass_env
def discover(env: Env, domains: tuple[str, ...], languages: tuple[str, ...], min_params: str | None,
             max_params: str | None, search: str | None, adapters_of: str | None, task: str | None,
             sort: str, limit: int, dry_run: bool, json_: bool) -> None:
    """Find specialists on the Hub and add them to the catalog (or refresh them).

    Every filter is sent to the Hub; a model already in the catalog is refreshed, keeping
    what the seed list or you stated about it. Safe to repeat and to interrupt. A model
    the Hub refuses or describes unreadably is skipped with one line, and the command
    exits 3."""
    if task is None:
        task = None if adapters_of else DEFAULT_TASK
    elif task == "any":
        task = None
    try:
        query = DiscoverQuery(
            domains=list(domains), languages=list(languages), min_params=_params("min_params", min_params),
            max_params=_params("max_params", max_params), search=search, task=task, sort=sort, limit=limit,
            adapters_of=_base_repo(env, adapters_of) if adapters_of else None)
    except DiscoverError as exc:
        raise click.UsageError(str(exc)) from None
    from catalog.hubsync import discover as run_discovery

    log_to_stderr()
    catalog = env.catalog()
    report = run_discovery(catalog, hub_api(), query, dry_run=dry_run,
                           progress=lambda n: warn(f"{n} models read from the Hub"))
    _report(report, json_, "discover")


def _base_repo(env: Env, ref: str) -> str:
    """A catalog reference as its Hub repo id; a repo id the catalog does not hold as typed."""
    from catalog.models import find_model

    with env.catalog().sessions() as s:
        model = find_model(s, ref)
        if model is not None and model.repo_id:
            return model.repo_id
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", ref):
        raise click.BadParameter(f"{ref!r} is neither a catalog model nor a Hub repo id",
                                 param_hint="'--adapters-of'")
    return ref


@click.command()
@click.argument("refs", nargs=-1)
@click.option("--older-than", callback=_age, metavar="AGE",
              help="Only models the Hub last described longer ago than this (7d, 12h, 2w).")
@click.option("--limit", type=click.IntRange(1, MAX_INT), help="At most this many models, oldest first.")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@json_option
@pass_env
def refresh(env: Env, refs: tuple[str, ...], older_than: timedelta | None, limit: int | None,
            dry_run: bool, json_: bool) -> None:
    """Ask the Hub again about catalog models (all, or REFS): new revisions, downloads,
    likes, gating, card evals. For cron: `almanac models refresh --older-than 7d`.

    A model whose revision moved keeps the old revision's facts in its history; models
    from the local cache or a directory are left to `scan-cache` / `add --path`. A model
    the Hub refuses is skipped with one line, the others refresh, and the command exits 3."""
    from catalog.hubsync import refresh as run_refresh
    from catalog.models import get_model

    catalog = env.catalog()
    with catalog.sessions() as s:  # an unknown reference is an error before the Hub is asked
        wanted = [get_model(s, ref).ref for ref in refs]
    log_to_stderr()
    report = run_refresh(catalog, hub_api(), older_than=older_than, refs=wanted, limit=limit,
                         dry_run=dry_run, progress=lambda n: warn(f"{n} models refreshed"))
    _report(report, json_, "refresh")
