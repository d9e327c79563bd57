"""`almanac curate JOB -o DIR`: a job's predictions that pass a filter, without
duplicates, as a supervised fine-tuning dataset in chat form.

Steps, each counted in the card: the latest prediction of every input (of the chosen
candidates) → the successful ones → for a chained job, those made from the upstream
rows it currently reads (their lineage matches) → `--where` → `--dedupe` → a split
by a hash of each row's group. Rows are sorted by input id, then candidate, first:
the same cache gives the same files, byte for byte.

Writes each split (validation only if a row lands there) as Parquet and JSON Lines
named by its content, `train-<digest>.parquet` / `.jsonl`, and the card `README.md`
(batch.data.card) naming them, into DIR, replacing the set it held as one
(batch.data.curated_set).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch.cache.reader import Predictions
from batch.cache.scan import latest_table
from batch.data import card, curated_set, dedupe, sft
from batch.data.inputs import input_fields
from batch.data.lineage import LineageStore, PlanInfo
from batch.data.sources import SourceModel, source_models
from batch.data.where import WhereError, compile_where
from batch.score.store import value_columns
from schemas.errors import UsageError
from schemas.output_path import refuse_non_directory
from schemas.timings import StepTimings

if TYPE_CHECKING:  # the catalog is only asked for licenses
    from catalog.db import Catalog

READ = ["key", "input_id", "candidate", "model", "revision", "adapter", "run_id", "prompt",
        "output", "finish_reason", "prompt_tokens", "output_tokens", "error"]
OUT = ["job", "input_id", "candidate", "model", "revision", "adapter", "key", "run", "score",
       "source_job", "source_input_id", "source_key"]
DEDUPE = ("exact", "near")
# What is left of a row once filtered: what the files hold, and what the split reads.
KEEP = ["prompt", "output", "input_id", "candidate", "model", "revision", "adapter", "key",
        "run_id", "score", "source_job", "source_input_id", "source_key"]
# Columns whose values repeat (Parquet keeps them as dictionaries; the others would only
# fill a dictionary page and fall back).
LOW_CARDINALITY = ["messages.list.element.role", "job", "candidate", "model", "revision",
                   "adapter", "run", "source_job"]
WRITE_ROWS = 100_000  # rows per JSON Lines batch: string arrays stay under 2 GiB


class CurateError(UsageError):
    """Curate cannot run as asked: a bad option."""


@dataclass
class CurateReport(StepTimings):
    job: str
    output: Path
    command: str
    split: float
    candidates: list[str] = field(default_factory=list)
    counts: list[tuple[str, int]] = field(default_factory=list)
    split_rows: dict[str, int] = field(default_factory=dict)
    split_files: dict[str, str] = field(default_factory=dict)  # split → `train-<digest>`
    sources: list[SourceModel] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, measured here

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["output"] = str(self.output)
        out["counts"] = [{"step": s, "rows": n} for s, n in self.counts]
        return out


def curate(predictions_root: Path, job: str, output: Path, *, command: str,
           where: str | None = None, dedupe_by: str | None = None, split: float = 0.9,
           candidate: str | None = None, catalog: Catalog | None = None) -> CurateReport:
    if not 0 < split <= 1:
        raise CurateError(f"--split: {split} is not in (0, 1]: the share of rows to train on")
    if dedupe_by is not None and dedupe_by not in DEDUPE:
        raise CurateError(f"--dedupe: {dedupe_by!r} is not one of {', '.join(DEDUPE)}")
    refuse_non_directory(output)  # before any work: `-o /dev/null` is never replaced
    output = output.absolute()
    # An unknown job is UnknownJobError, not found (exit 1), as for query and compare.
    with Predictions.at(predictions_root, job) as predictions:
        labels = predictions.select(candidate)
    report = CurateReport(job, output, command, split, labels)
    fields = input_fields(predictions_root, job) if where and re.search(r"\brow\b", where) else None
    compiled = compile_where(where, fields.kinds if fields else {}) if where else None

    with report.timed("read"):
        table = _in_order(latest_table(predictions_root, job, READ, candidates=labels))
        report.counts.append(("latest predictions", table.num_rows))
        table = table.filter(pc.is_null(table["error"])).drop_columns(["error"])
        report.counts.append(("succeeded", table.num_rows))
    with report.timed("lineage and scores"):
        table = _with_sources(table, predictions_root, job, labels, report)
        table = _with_scores(table, predictions_root, job, labels)
    if compiled is not None:
        with report.timed("filter"):
            table = _with_lengths(table)
            if fields is not None:
                for name in compiled.fields:
                    table = table.append_column(f"row.{name}",
                                                fields.column(name, table["input_id"]))
            try:
                table = table.filter(compiled.expression)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                # What the parser's kinds did not foresee is the filter's problem, not a crash.
                raise WhereError(f"--where: cannot be applied to the rows: {exc}") from None
            report.counts.append((f"--where {where}", table.num_rows))
    table = table.select(KEEP).combine_chunks()
    with report.timed("messages"):
        text = sft.messages_text(table["prompt"].chunk(0), table["output"].chunk(0))
    if dedupe_by is not None:
        with report.timed("dedupe"):
            keep = dedupe.first_of_each(text) if dedupe_by == "exact" else \
                dedupe.near_unique(dedupe.plain_text(table["prompt"].chunk(0),
                                                     table["output"].chunk(0)))
            if len(keep) < table.num_rows:
                table, text = table.take(keep), text.take(keep)
            report.counts.append((f"--dedupe {dedupe_by}", table.num_rows))
    with report.timed("split and sources"):
        train = _in_train(table, split)
        report.sources, report.upstream = source_models(predictions_root, job, table, catalog)
    for s in report.sources:
        if s.restriction:
            report.warnings.append(f"{s.model} ({s.license}), answering in job {s.job}: "
                                   f"{s.restriction}")
    with report.timed("write"), curated_set.replacing(output) as new_set:
        _write_splits(new_set, train, table, text, job, report)
        new_set.card(card.render(report))
    report.files.append(curated_set.CARD)
    return report


def _write_splits(new_set: curated_set.NewSet, train: np.ndarray, table: pa.Table,
                  text: pa.Array, job: str, report: CurateReport) -> None:
    for name, mask in (("train", train), ("validation", ~train)):
        rows = int(mask.sum())
        report.split_rows[name] = rows
        if not rows:
            continue
        part = table if rows == table.num_rows else table.filter(mask)
        part_text = text if rows == table.num_rows else text.filter(mask)
        columns = _provenance(part)
        stem = new_set.split(name, partial(_write_jsonl, text=part_text, job=job, columns=columns),
                             partial(_write_parquet, table=part, job=job, columns=columns))
        report.split_files[name] = stem
        report.files += [f"{stem}.parquet", f"{stem}.jsonl"]


def _with_sources(table: pa.Table, root: Path, job: str, labels: list[str],
                  report: CurateReport) -> pa.Table:
    """A chained job's rows with the upstream record each was made from; rows whose
    lineage does not match (made from upstream rows it no longer reads) are dropped."""
    n = table.num_rows
    store = LineageStore.open_readonly(root)
    plans: dict[str, PlanInfo] = {}
    sources: dict[str, pa.Table] = {}
    if store is not None:
        with store:
            plans = store.plans(job)
            sources = {label: store.source_table(job, label) for label in labels if label in plans}
    nothing = pa.nulls(n, pa.string())
    if not plans:
        return table.append_column("source_job", nothing).append_column(
            "source_input_id", nothing).append_column("source_key", nothing)
    up_job, up_id, up_key = nothing, nothing, nothing
    keep = np.zeros(n, dtype=bool)
    for label, src in sources.items():
        # Each row of this candidate against the source planned for its input id.
        mine = pc.equal(table["candidate"], label)
        at = pc.if_else(mine, pc.index_in(table["input_id"], src["input_id"]), None)
        match = pc.fill_null(pc.equal(src["key"].take(at), table["key"]), False)
        keep |= match.to_numpy(zero_copy_only=False)
        up_job = pc.if_else(match, pa.scalar(plans[label].upstream), up_job)
        up_id = pc.if_else(match, src["up_input_id"].take(at), up_id)
        up_key = pc.if_else(match, src["up_key"].take(at), up_key)
    table = table.append_column("source_job", up_job).append_column(
        "source_input_id", up_id).append_column("source_key", up_key)
    table = table.filter(pa.array(keep))
    report.counts.append(("made from the current upstream rows", table.num_rows))
    return table


def _with_scores(table: pa.Table, root: Path, job: str, labels: list[str]) -> pa.Table:
    """Each row's score (null where it has none, or could not be scored), matched to its
    candidate and input id in Arrow."""
    score = pa.nulls(table.num_rows, pa.float64())
    for label in labels:
        ids, values = value_columns(root, job, label)
        if not len(ids):
            continue
        mine = pc.equal(table["candidate"], label)
        at = pc.if_else(mine, pc.index_in(table["input_id"], ids), None)
        score = pc.if_else(mine, values.take(at), score)
    return table.append_column("score", score)


def _with_lengths(table: pa.Table) -> pa.Table:
    return table.append_column("prompt_length", pc.utf8_length(table["prompt"])).append_column(
        "output_length", pc.utf8_length(table["output"]))


def _in_order(table: pa.Table) -> pa.Table:
    """The rows by input id, then candidate; shards usually hold them so already, and a
    check costs a fraction of a sort."""
    if table.num_rows < 2:
        return table
    ids, labels = table["input_id"], table["candidate"]
    a, b = ids.slice(0, len(ids) - 1), ids.slice(1)
    ordered = pc.or_(pc.less(a, b), pc.and_(pc.equal(a, b), pc.less_equal(
        labels.slice(0, len(ids) - 1), labels.slice(1))))
    if pc.all(ordered).as_py():
        return table
    return table.take(pc.sort_indices(table, [("input_id", "ascending"),
                                              ("candidate", "ascending")]))


def _in_train(table: pa.Table, split: float) -> np.ndarray:
    """Whether each row trains: by a hash of its group (the upstream row for a chained
    job, else its input id), so that a group's rows share a split."""
    if split >= 1:
        return np.ones(table.num_rows, dtype=bool)
    groups = pc.coalesce(table["source_input_id"], table["input_id"]).cast(pa.binary())
    digests = b"".join([hashlib.blake2b(g, digest_size=8).digest() for g in groups.to_pylist()])
    return np.frombuffer(digests, dtype=">u8") < np.uint64(int(split * 2**64))


def _provenance(table: pa.Table) -> dict[str, pa.Array]:
    """The provenance columns after `job` (the same in every row), as written."""
    return {name: table["run_id" if name == "run" else name].combine_chunks()
            for name in OUT[1:]}


def _write_parquet(path: Path, table: pa.Table, job: str, columns: dict[str, pa.Array]) -> None:
    lists = sft.messages_lists(table["prompt"].combine_chunks(), table["output"].combine_chunks())
    out = pa.table({"messages": lists, "job": pa.array([job] * table.num_rows, pa.string()),
                    **columns})
    pq.write_table(out, path, compression="zstd", use_dictionary=LOW_CARDINALITY)


def _write_jsonl(fh: curated_set.Writable, text: pa.Array, job: str,
                 columns: dict[str, pa.Array]) -> None:
    kinds = {name: "number" if name == "score" else "text" for name in columns}
    for start in range(0, len(text), WRITE_ROWS):
        stop = start + WRITE_ROWS
        batch: dict[str, tuple[Any, str]] = {"messages": (text[start:stop], "json"),
                                             "job": (job, "same")}
        batch.update({k: (v[start:stop], kinds[k]) for k, v in columns.items()})
        sft.write_lines(sft.jsonl_lines(batch), fh)
