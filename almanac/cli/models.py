"""`almanac models list|show|remove|export`."""

from __future__ import annotations

import csv
import json

import click

from almanac.cli.base import (
    MAX_INT,
    Env,
    LazyGroup,
    echo_table,
    emit_json,
    json_option,
    pass_env,
    warn,
)

# The filters' parser holds no SQLAlchemy: --help stays quick.
from catalog.filters import QUANTS, SORTS, SOURCES, FilterError, model_filter
from catalog.records import MeasuredEvalRecord, TrainingRecord
from schemas.output_path import STDOUT, open_output

EXPORT_COLUMNS = [
    "ref", "repo_id", "revision", "name", "parameters", "context_length", "dtype", "license",
    "task", "base_model", "relation", "adapter_rank", "source", "local_path", "gated",
    "downloads", "likes", "domains", "languages", "tags", "description",
]


@click.group(cls=LazyGroup, lazy={
    "add": "almanac.cli.models_import:add",
    "scan-cache": "almanac.cli.models_import:scan_cache",
    "discover": "almanac.cli.models_hub:discover",
    "refresh": "almanac.cli.models_hub:refresh",
})
def models() -> None:
    """Browse and maintain the model catalog."""


@models.command("list")
@click.option("--domain", "domains", multiple=True, help="Domain slug; includes its children (code → code/sql).")
@click.option("--language", "languages", multiple=True, help="ISO 639 code or group (sea).")
@click.option("--min-params", help="At least this many parameters (7B, 1.1B, 350M).")
@click.option("--max-params", help="At most this many parameters.")
@click.option("--license", "licenses", multiple=True, help="License id (apache-2.0, mit, llama2…).")
@click.option("--fits", "fits", help="Weights fit in this memory (24GB), with 20% headroom.")
@click.option("--quant", type=click.Choice(QUANTS), help="Assume this quantization for --fits.")
@click.option("--search", help="Full-text search over name, description, tags and card.")
@click.option("--source", type=click.Choice(SOURCES))
@click.option("--sort", default="name", show_default=True, metavar="SORT",
              help=f"One of {', '.join(SORTS)}, or score:JOB (best measured score on JOB first).")
@click.option("--limit", type=click.IntRange(1, MAX_INT), help="At most this many models.")
@click.option("--offset", type=click.IntRange(0, MAX_INT), default=0)
@click.option("--adapters-of", "adapters_of", metavar="BASE",
              help="Only the LoRA adapters of this base model (those `almanac train` made too).")
@json_option
@pass_env
def list_(env: Env, domains: tuple[str, ...], languages: tuple[str, ...],
          min_params: str | None, max_params: str | None, licenses: tuple[str, ...],
          fits: str | None, quant: str | None, search: str | None, source: str | None,
          sort: str, limit: int | None, offset: int, adapters_of: str | None,
          json_: bool) -> None:
    """List catalog models, filtered and sorted."""
    from catalog import sizes
    from catalog.search import list_models

    try:
        f = model_filter(
            domains=domains, languages=languages, min_params=min_params, max_params=max_params,
            licenses=licenses, fits=fits, quant=quant, search=search, source=source, sort=sort,
            limit=limit, offset=offset,
        )
    except FilterError as exc:  # named as the option the user typed
        option = "--" + exc.field.replace("_", "-")
        raise click.BadParameter(exc.problem, param_hint=f"'{option}'") from None
    with env.catalog_reads() as db:  # sqlite3 alone: SQLAlchemy's import costs more than the page
        if adapters_of:
            from catalog.plain import adapter_bases

            f.adapters_of = adapter_bases(db, adapters_of)  # an unknown base: exit 1, named
        records = list_models(db, f)
    if json_:
        emit_json([r.to_json() for r in records])
        return
    scored = sort.startswith("score:")
    echo_table(
        [[r.ref, sizes.format_params(r.parameters), ",".join(r.domains), ",".join(r.languages),
          r.license or "?", f"{r.performance.tokens_per_s:.0f}" if r.performance and r.performance.tokens_per_s else "",
          *([f"{r.score:.4g}" if r.score is not None else ""] if scored else [])]
         for r in records],
        ["MODEL", "PARAMS", "DOMAINS", "LANGUAGES", "LICENSE", "TOK/S", *(["SCORE"] if scored else [])],
    )


@models.command()
@click.argument("ref")
@json_option
@pass_env
def show(env: Env, ref: str, json_: bool) -> None:
    """Everything the catalog knows about one model: lineage, evals, measured speed."""
    from catalog import sizes
    from catalog.detail import model_detail
    from catalog.lookup import get_model

    with env.catalog().sessions() as s:
        record = model_detail(s, get_model(s, ref))
    if json_:
        emit_json(record.to_json())
        return
    lines = [
        ("model", record.ref), ("name", record.name), ("source", record.source),
        ("revision", record.revision), ("parameters", sizes.format_params(record.parameters)),
        ("architecture", record.architecture), ("context", record.context_length),
        ("dtype", record.dtype), ("license", record.license), ("task", record.task),
        ("base model", f"{record.base_model} ({record.relation})" if record.base_model else None),
        ("adapter rank", record.adapter_rank), ("adapters", ", ".join(record.adapters) or None),
        ("domains", ", ".join(record.domains)), ("languages", ", ".join(record.languages)),
        ("tags", ", ".join(record.tags) or None), ("local path", record.local_path),
        ("gated", "yes" if record.gated else None), ("downloads", record.downloads), ("likes", record.likes),
    ]
    for label, value in lines:
        if value not in (None, ""):
            click.echo(f"{label:>13}: {value}")
    if record.refreshed_at:
        click.echo(f"{'from the Hub':>13}: {record.refreshed_at:%Y-%m-%d %H:%M} UTC")
    if record.curated:
        click.echo(f"{'kept as set':>13}: {', '.join(record.curated)}")
    for e in record.evals:
        source = f"  ({e.source})" if e.source else ""
        click.echo(f"{'card eval':>13}: {e.benchmark} {e.metric} = {e.value:g}{source}")
    for m in record.measured:  # scored by Almanac on users' jobs, apart from the card's claims
        click.echo(f"{'measured eval':>13}: {_measured(m, record.ref)}")
    if p := record.performance:
        click.echo(f"{'measured':>13}: {p.tokens_per_s:.1f} tokens/s, engine start "
                   f"{p.engine_start_s or 0:.1f} s on {p.hardware} ({p.runs} runs)")
    if t := record.training:  # how Almanac trained it: its lineage
        click.echo(f"{'lineage':>13}: {_lineage(t)}")
        click.echo(f"{'trained on':>13}: {t.data_path} ({t.data_digest[:19]}: {t.train_rows} "
                   f"train, {t.validation_rows} validation rows"
                   + (f", --where {t.data_filter}" if t.data_filter else "") + ")")
        losses = ", ".join(f"{n} loss {v:.4g}" for n, v in (("train", t.train_loss),
                                                            ("eval", t.eval_loss)) if v is not None)
        click.echo(f"{'trained':>13}: {t.steps} steps in {t.seconds:.1f} s on {t.device} "
                   f"({t.dtype}{', ' + t.hardware if t.hardware else ''})"
                   + (f"; {losses}" if losses else ""))
        click.echo(f"{'settings':>13}: " + ", ".join(f"{k} {_setting(v)}" for k, v
                                                      in t.settings.items() if v is not None))
    for h in record.history:
        click.echo(f"{'old revision':>13}: {h.revision} (replaced by {h.replaced_by} on {h.replaced_at:%Y-%m-%d})")
    if record.description:
        click.echo("\n" + record.description)


def _lineage(t: TrainingRecord) -> str:
    made = f"a LoRA adapter of {t.base_ref}"
    if t.distilled_from:
        return f"{made}, distilled from {t.distilled_from}"
    return made


def _setting(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _measured(m: MeasuredEvalRecord, shown: str) -> str:
    """One measured score of the model `shown`: an adapter's own names the base it ran
    on; a base's with an adapter the catalog does not hold names that adapter."""
    adapter = f" (on {m.model_ref})" if m.model_ref != shown else f" + {m.adapter}" if m.adapter else ""
    interval = f" [{m.ci_low:.3g}, {m.ci_high:.3g}]" if m.ci_low is not None and m.ci_high is not None else ""
    when = f", {m.measured_at:%Y-%m-%d}" if m.measured_at else ""
    return f"{m.task}{adapter}: {m.metric} = {m.value:.4g}{interval} (n={m.n}{when})"


@models.command()
@click.argument("ref")
@pass_env
def remove(env: Env, ref: str) -> None:
    """Remove a model from the catalog (its cached predictions stay)."""
    from catalog.models import remove_model

    with env.catalog().sessions.begin() as s:
        removed = remove_model(s, ref)
    warn(f"removed {removed}")


@models.command()
@click.option("--format", "format_", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(allow_dash=True), metavar="PATH", default="-",
              help="File to write ('-', the default: stdout). A file is replaced only once "
                   "complete; a device or FIFO is written through.")
@pass_env
def export(env: Env, format_: str, output: str) -> None:
    """Export the whole catalog.

    Exit codes: 0 ok, 1 error (the output could not be written), 2 an output path that
    cannot take it (a directory, a socket)."""
    from catalog.search import ModelFilter, list_models

    with env.catalog_reads() as db:
        records = list_models(db, ModelFilter(sort="name"))
    with open_output(output) as out:
        if format_ == "json":
            json.dump([r.to_json() for r in records], out, indent=2, ensure_ascii=False)
            out.write("\n")
        else:
            writer = csv.writer(out)
            writer.writerow(EXPORT_COLUMNS)
            for r in records:
                row = r.to_json()
                writer.writerow([";".join(row[c]) if isinstance(row[c], list) else row[c]
                                 for c in EXPORT_COLUMNS])
    if output != STDOUT:
        warn(f"wrote {len(records)} models to {output}")
