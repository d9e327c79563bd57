"""`almanac query` and `almanac export`: reading the cache."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from almanac.cli.base import (
    MAX_INT,
    Env,
    echo_table,
    emit_json,
    json_option,
    pass_env,
    warn,
)
from schemas.errors import NotFoundError

if TYPE_CHECKING:  # pyarrow loads in hundreds of milliseconds: not for `almanac --help`
    from batch.query import PredictionRecord, Predictions


# A content key as the table shows it: its first 12 characters, which `--key` takes (it
# takes any 8 or more that begin one key only, as git takes an abbreviated hash).
SHORT_KEY = 12


def one_blas_thread() -> None:
    """Called before the cache's modules load. pyarrow loads numpy, whose OpenBLAS starts
    a thread per core as it loads: on a busy two-core machine that costs a lookup about
    100 ms, more than the lookup, and reading the cache multiplies no matrices. A setting
    the user made stands."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _short(value: object, width: int = 60) -> str:
    text = "" if value is None else str(value).replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _revisions(env: Env, records: list[PredictionRecord]) -> dict[tuple[str, str | None], Any]:
    """Whether each (model, revision) the records were made on is the catalog's current
    revision of that model (catalog.history); nothing when there is no usable catalog.
    Read with sqlite3 alone (catalog.plain): SQLAlchemy's import would cost a lookup more
    than the lookup."""
    from catalog.plain import revision_statuses

    pairs = [(r["model"], r["revision"]) for r in records]
    if not pairs:
        return {}
    # Predictions read without a catalog say nothing of revisions.
    return revision_statuses(env.home.catalog_db, pairs) or {}


def _emit(records: list[PredictionRecord], fmt: str, env: Env) -> None:
    from batch.query import columns, to_json

    if fmt in ("json", "jsonl"):
        # Each record beside its model's current revision in the catalog: a `revision`
        # that differs was made before the model moved on.
        statuses = _revisions(env, records)
        out = []
        for r in records:
            status = statuses.get((r["model"], r["revision"]))
            out.append({**to_json(r),
                        "current_revision": status.current_revision if status else None})
        if fmt == "json":
            emit_json(out)
        else:
            for line in out:
                click.echo(json.dumps(line, ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns())
        for r in records:
            writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, list) else to_json(v)
                             for v in r.values()])
    else:
        several = len({r["candidate"] for r in records}) > 1  # then each row says whose
        echo_table([[r["input_id"], *([_short(r["candidate"], 40)] if several else []),
                     r["key"][:SHORT_KEY], _short(r["output"]), r["finish_reason"] or "",
                     str(r["output_tokens"] or ""), r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                     _short(r["error"], 50)] for r in records],
                   ["INPUT", *(["CANDIDATE"] if several else []), "KEY", "OUTPUT", "FINISH",
                    "TOKENS", "CREATED", "ERROR"])


def candidate_options(command: Callable[..., None]) -> Callable[..., None]:
    """--candidate, --model and --adapter: which of a job's candidates to read."""
    for option in reversed([
        click.option("--candidate", help="Only this candidate (its label; "
                                         "`almanac query JOB --candidates` lists them)."),
        click.option("--model", help="Only the candidates running this model reference."),
        click.option("--adapter", help="Only the candidates with this adapter (as the job "
                                       "names it: a catalog reference or a directory)."),
    ]):
        command = option(command)
    return command


def _adapter_ref(adapter: str | None) -> str | None:
    """A directory named relative to here, as a job names it once resolved: absolute."""
    if adapter is not None and Path(adapter).is_dir():
        return str(Path(adapter).resolve())
    return adapter


def _show_candidates(p: Predictions, json_: bool) -> None:
    found = p.candidates()
    if json_:
        emit_json([c.to_json() for c in found])
        return
    echo_table([[c.label, c.model, c.adapter or "", str(c.rows), str(c.failed)] for c in found],
               ["CANDIDATE", "MODEL", "ADAPTER", "ROWS", "FAILED"])


def _format(json_: bool, jsonl: bool, csv_: bool) -> str:
    chosen = [name for name, on in (("json", json_), ("jsonl", jsonl), ("csv", csv_)) if on]
    if len(chosen) > 1:
        raise click.UsageError("choose one of --json, --jsonl and --csv")
    return chosen[0] if chosen else "table"


def _lookup(p: Predictions, input_ids: tuple[str, ...], key: str | None, all_versions: bool,
            chosen: dict[str, str | None]) -> tuple[list[PredictionRecord], list[str]]:
    """The records asked for (of the candidate `chosen` by label, model or adapter), and
    what was asked for but is not cached."""
    if key is not None:
        from batch.query import MIN_PREFIX

        found = p.by_key(key)
        short = f" (a key's beginning needs {MIN_PREFIX} characters or more)" \
            if len(key) < MIN_PREFIX else ""
        return ([found], []) if found else ([], [f"key {key!r}{short}"])
    wanted = list(dict.fromkeys(input_ids))
    if all_versions:
        by_id = {i: p.versions(i, **chosen) for i in wanted}
    else:
        got = p.get_many(wanted, **chosen)
        by_id = {i: [got[i]] if i in got else [] for i in wanted}
    return [r for rs in by_id.values() for r in rs], [f"input {i!r}" for i, rs in by_id.items() if not rs]


@click.command()
@click.argument("job")
@click.option("--input-id", "input_ids", multiple=True, help="Look up this input (repeatable).")
@click.option("--key", help="Look up a prediction by its content address: the whole key, "
                             "or its beginning (8 characters or more; the KEY column shows "
                             "12) if no other key of the job begins so.")
@click.option("--contains", help="Only outputs containing this text (case-insensitive).")
@candidate_options
@click.option("--candidates", "list_candidates", is_flag=True,
              help="List the job's candidates (label, model, adapter, rows) instead.")
@click.option("--failed", is_flag=True, help="Only failed rows.")
@click.option("--all", "all_versions", is_flag=True, help="Every cached version, not only the latest.")
@click.option("--limit", type=click.IntRange(1, MAX_INT), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0, MAX_INT), default=0)
@json_option
@click.option("--jsonl", is_flag=True, help="Print one JSON record per line.")
@click.option("csv_", "--csv", is_flag=True, help="Print CSV with every column.")
@pass_env
def query(env: Env, job: str, input_ids: tuple[str, ...], key: str | None, contains: str | None,
          candidate: str | None, model: str | None, adapter: str | None, list_candidates: bool,
          failed: bool, all_versions: bool, limit: int, offset: int, json_: bool, jsonl: bool,
          csv_: bool) -> None:
    """Cached predictions of JOB: the latest per input, in input id order (then candidate
    order, for a job with several candidates).

    With --input-id or --key, exactly those (exit 1 if one is not cached); a job with
    several candidates needs --candidate, --model or --adapter to look up an input.

    With --json or --jsonl each record also carries `current_revision`: the catalog's
    current revision of the record's model (null when the catalog does not know one).
    A record whose `revision` differs was made on a revision the model has moved on
    from."""
    one_blas_thread()
    from batch.query import Predictions

    fmt = _format(json_, jsonl, csv_)
    lookup = bool(input_ids) or key is not None
    adapter = _adapter_ref(adapter)
    if input_ids and key is not None:
        raise click.UsageError("--input-id and --key are two ways to look up: use one")
    if lookup and (contains is not None or failed):
        raise click.UsageError("--contains and --failed filter listings, not lookups")
    with Predictions.at(env.home.predictions, job) as p:
        if list_candidates:
            _show_candidates(p, json_)
            return
        if lookup:
            records, missing = _lookup(p, input_ids, key, all_versions,
                                       {"candidate": candidate, "model": model,
                                        "adapter": adapter})
        else:
            records, total = p.page(contains=contains, candidate=candidate, model=model,
                                    adapter=adapter, failed=True if failed else None,
                                    all_versions=all_versions, limit=limit, offset=offset,
                                    total=fmt == "table")
            missing = []
            if total is not None and total > offset + len(records):
                warn(f"{offset + 1}–{offset + len(records)} of {total}; --offset {offset + limit} for more")
    if records or not lookup:  # a lookup that found nothing says so on stderr alone
        _emit(records, fmt, env)
    if fmt == "table":
        for (model, revision), status in _revisions(env, records).items():
            if status.is_current is False:
                warn(f"note: predictions of {model} were made on revision {revision}; the "
                     f"catalog's current revision is {status.current_revision}")
    if missing:
        raise NotFoundError(f"job {job!r} has no prediction for {', '.join(missing)}")


@click.command("export")
@click.argument("job")
@click.option("--format", "fmt", required=True,
              type=click.Choice(["parquet", "jsonl", "csv", "openai-batch"]),
              help="openai-batch: OpenAI batch output lines (custom_id = input id) of one "
                   "candidate.")
@click.option("-o", "--output", required=True, type=click.Path(allow_dash=True), metavar="PATH",
              help="File to write ('-': stdout). A file is replaced only once the export is "
                   "complete; a device or FIFO (/dev/null, /dev/stdout) is written through.")
@click.option("--all", "all_versions", is_flag=True, help="Every cached version, not only the latest.")
@click.option("--errors", "errors", type=click.Path(allow_dash=True), metavar="PATH",
              help="openai-batch: write failed rows to this file as error lines, apart from "
                   "the output (as OpenAI's batch error file).")
@candidate_options
@pass_env
def export(env: Env, job: str, fmt: str, output: str, all_versions: bool,
           errors: str | None, candidate: str | None, model: str | None,
           adapter: str | None) -> None:
    """Export JOB's predictions (the latest per input, of every candidate unless one is
    chosen) to a file, a device or stdout.

    --format openai-batch writes one candidate's answers, the latest per input: an OpenAI
    batch output file answers each request (custom_id) once, from one model. A job with
    several candidates needs --candidate (or --model / --adapter naming one); export
    each to a file of its own. Each line's body.model names the candidate as its request
    would: an adapter by its own name (as `vllm serve` names LoRA modules), otherwise
    the model.

    Exit codes: 0 ok (also when a reader of the output stops early, as `| head` does),
    1 error (an unknown job; the output could not be written: permissions, a full disk),
    2 a bad option (openai-batch of several candidates, none chosen), or an output path
    that cannot take it (a directory, a socket, Parquet to a terminal)."""
    one_blas_thread()
    from batch.cache.export import export as run_export

    done = run_export(env.home.predictions, job, fmt, output, all_versions=all_versions,
                      errors=errors, candidate=candidate, model=model,
                      adapter=_adapter_ref(adapter))
    warn(f"exported {done.written} predictions of {job} to {'stdout' if output == '-' else output}"
         + (f" and {done.failed} failed lines to {'stdout' if errors == '-' else errors}"
            if errors is not None else ""))
