"""`almanac init`, `almanac domains`, `almanac languages`."""

from __future__ import annotations

import click

from almanac.cli.base import Env, echo_table, emit_json, json_option, pass_env, warn


@click.command()
@click.option("json_", "--json", is_flag=True, help="Print what was done as JSON.")
@pass_env
def init(env: Env, json_: bool) -> None:
    """Create the home and catalog, and load the curated seed list. Safe to repeat."""
    from catalog.seed import load_seed

    # The write lock first: concurrent `init`s take turns, and the later ones find the
    # seed already loaded.
    with env.catalog().writing() as s:
        counts = load_seed(s)
    summary = {"home": str(env.home.root), "catalog": str(env.home.catalog_db), "seed": counts}
    if json_:
        emit_json(summary)
    else:
        click.echo(
            f"home {env.home.root}: seed models {counts['added']} added, "
            f"{counts['updated']} updated, {counts['unchanged']} unchanged"
        )


@click.command()
@json_option
@pass_env
def domains(env: Env, json_: bool) -> None:
    """Domains (a tree of slugs) with their model counts; a parent counts its children."""
    from catalog.search import domain_counts
    from catalog.taxonomy import DOMAINS

    with env.catalog_reads() as db:
        counts = domain_counts(db)
    rows = [{"domain": slug, "title": title, "models": counts.get(slug, 0)} for slug, title in DOMAINS.items()]
    if json_:
        emit_json(rows)
        return
    echo_table(
        [["  " * r["domain"].count("/") + r["domain"], str(r["models"]), r["title"]] for r in rows],
        ["DOMAIN", "MODELS", "DESCRIPTION"],
    )


@click.command()
@json_option
@pass_env
def languages(env: Env, json_: bool) -> None:
    """Languages that catalog models cover, with model counts."""
    from catalog.search import language_counts
    from catalog.taxonomy import LANGUAGE_GROUPS, language_name

    with env.catalog_reads() as db:
        counts = language_counts(db)
    rows = [{"language": c, "name": language_name(c), "models": n} for c, n in counts.items()]
    if json_:
        emit_json({"languages": rows, "groups": {k: list(v) for k, v in LANGUAGE_GROUPS.items()}})
        return
    echo_table([[r["language"], str(r["models"]), r["name"]] for r in rows], ["CODE", "MODELS", "NAME"])
    warn("groups: " + ", ".join(f"{k} ({' '.join(v)})" for k, v in LANGUAGE_GROUPS.items()))
