"""`almanac models add` and `almanac models scan-cache`: bringing models into the catalog."""

from __future__ import annotations

from pathlib import Path

import click

from almanac.cli.base import Env, emit_json, json_option, pass_env, warn
from catalog.records import ModelRecord  # plain dataclasses: no SQLAlchemy behind --help


def _domains(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    from catalog.taxonomy import TaxonomyError, normalize_domain

    try:
        return list(dict.fromkeys(normalize_domain(v) for v in values))
    except TaxonomyError as exc:
        raise click.BadParameter(str(exc)) from None


def _languages(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    from catalog.taxonomy import TaxonomyError, expand_languages

    try:
        return expand_languages(values)
    except TaxonomyError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("repo_id", required=False)
@click.option("--path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A local model directory (config.json or a PEFT adapter_config.json).")
@click.option("--name", help="Catalog name for --path (default: the directory name).")
@click.option("--revision", help="Hub branch, tag or commit to pin (default: main).")
@click.option("--domain", "domains", multiple=True, callback=_domains,
              help="Domain slug; replaces the domains read from the Hub tags. Repeatable.")
@click.option("--language", "languages", multiple=True, callback=_languages,
              help="ISO 639 code or group (sea); replaces the card's languages. Repeatable.")
@json_option
@pass_env
def add(env: Env, repo_id: str | None, path: Path | None, name: str | None, revision: str | None,
        domains: list[str], languages: list[str], json_: bool) -> None:
    """Add or refresh one model: REPO_ID from the Hub, or a local directory with --path."""
    if (repo_id is None) == (path is None):
        raise click.UsageError("give exactly one of REPO_ID or --path DIR")
    if path is not None and revision:
        raise click.UsageError("--revision applies to a Hub REPO_ID, not to --path")
    if repo_id is not None and name:
        raise click.UsageError("--name applies to --path; a Hub model is named by its repo id")
    if repo_id is not None:
        from almanac.cli.models_hub import hub_api, log_to_stderr
        from catalog.hubapi import fetch_entry

        log_to_stderr()  # retries, rate-limit waits, a card the Hub would not give
        entry = fetch_entry(repo_id, revision=revision, api=hub_api())
    else:
        from catalog.localmodels import entry_from_directory

        entry = entry_from_directory(path, name=name)
    # What the user states is curated: a later discovery or refresh keeps it.
    if domains:
        entry.domains = domains
        entry.curated.append("domains")
    if languages:
        entry.languages = languages
        entry.curated.append("languages")

    from catalog.models import fill_from_existing, to_record, upsert_model, utcnow

    refreshed_at = utcnow() if repo_id is not None else None  # the Hub described it just now
    with env.catalog().writing() as s:  # two adds of one model take turns, never collide
        record = to_record(s, upsert_model(s, fill_from_existing(s, entry), refreshed_at=refreshed_at))
    where = f"the Hub at {record.revision}" if record.source == "hub" else record.local_path
    warn(f"added {record.ref} from {where}")
    if json_:
        emit_json(record.to_json())
    else:
        click.echo(_line(record))


@click.command("scan-cache")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Hugging Face hub cache (default: $HF_HUB_CACHE, else $HF_HOME/hub).")
@json_option
@pass_env
def scan_cache(env: Env, cache_dir: Path | None, json_: bool) -> None:
    """Add every model already in the local Hugging Face cache. No network."""
    from catalog import hubcache
    from catalog.models import fill_from_existing, to_record, upsert_model

    entries, warnings = hubcache.scan_cache(cache_dir.resolve() if cache_dir else None)
    cache_dir = (cache_dir or hubcache.default_cache_dir()).resolve()
    if not cache_dir.is_dir():
        warn(f"no Hugging Face cache at {cache_dir} yet: nothing has been downloaded")
    for message in warnings:
        warn(f"warning: {message}")
    with env.catalog().writing() as s:
        records = [to_record(s, upsert_model(s, fill_from_existing(s, entry))) for entry in entries]
    warn(f"{cache_dir}: {len(records)} models added or refreshed, {len(warnings)} skipped")
    if json_:
        emit_json({
            "cache_dir": str(cache_dir),
            "models": [r.to_json() for r in records],
            "warnings": warnings,
        })
    else:
        for record in records:
            click.echo(_line(record))


def _line(record: ModelRecord) -> str:
    from catalog.sizes import format_params

    return "  ".join([
        record.ref, format_params(record.parameters),
        ",".join(record.domains) or "-", ",".join(record.languages) or "-",
    ])
