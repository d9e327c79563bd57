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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch.cache.errors import UnknownJobError
from batch.cache.reader import Predictions
from batch.cache.scan import latest_table
from batch.data import card, curated_set, dedupe, sft
from batch.data.inputs import input_fields
from batch.data.lineage import LineageStore
from batch.data.sources import SourceModel, source_models
from batch.data.where import WhereError, compile_where
from batch.score.store import scores_for
from schemas.errors import UsageError
from schemas.output_path import refuse_non_directory

if TYPE_CHECKING:  # the catalog is only asked for licenses
    from catalog.db import Catalog

READ = ["key", "input_id", "candidate", "model", "revision", "adapter", "run_id", "prompt",
        "output", "finish_reason", "prompt_tokens", "output_tokens", "error"]
OUT = ["job", "input_id", "candidate", "model", "revision", "adapter", "key", "run", "score",
       "source_job", "source_input_id", "source_key"]
DEDUPE = ("exact", "near")
WRITE_ROWS = 100_000  # rows per JSON Lines batch: string arrays stay under 2 GiB


class CurateError(UsageError):
    """Curate cannot run as asked: no such job, a bad option."""


@dataclass
class CurateReport:
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

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - began

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
    try:
        with Predictions.at(predictions_root, job) as predictions:
            labels = predictions.select(candidate)
    except UnknownJobError:
        raise CurateError(f"no cached predictions for job {job!r} (`almanac runs` lists the jobs that ran)") \
            from None
    report = CurateReport(job, output, command, split, labels)
    fields = input_fields(predictions_root, job) if where and re.search(r"\brow\b", where) else None
    compiled = compile_where(where, fields.kinds if fields else {}) if where else None

    with report.timed("read"):
        table = latest_table(predictions_root, job, READ, candidates=labels)
        table = table.take(pc.sort_indices(table, [("input_id", "ascending"),
                                                   ("candidate", "ascending")]))
        report.counts.append(("latest predictions", table.num_rows))
        table = table.filter(pc.is_null(table["error"]))
        report.counts.append(("succeeded", table.num_rows))
    with report.timed("lineage and scores"):
        table = _with_sources(table, predictions_root, job, labels, report)
        table = _with_scores(table, predictions_root, job)
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
    with report.timed("messages"):
        lists, text = sft.messages(table["prompt"].combine_chunks(),
                                   table["output"].combine_chunks())
    if dedupe_by is not None:
        with report.timed("dedupe"):
            keep = dedupe.first_of_each(text) if dedupe_by == "exact" else \
                dedupe.near_unique(_plain(lists))
            table, lists, text = table.take(keep), lists.take(keep), text.take(keep)
            report.counts.append((f"--dedupe {dedupe_by}", table.num_rows))
    with report.timed("split and sources"):
        train = _in_train(table, split)
        report.sources, report.upstream = source_models(predictions_root, job, table, catalog)
    for s in report.sources:
        if s.restriction:
            report.warnings.append(f"{s.model} ({s.license}), answering in job {s.job}: "
                                   f"{s.restriction}")
    columns = _provenance(table, job)
    with report.timed("write"), curated_set.replacing(output) as new_set:
        _write_splits(new_set, train, lists, text, columns, report)
        new_set.card(card.render(report))
    report.files.append(curated_set.CARD)
    return report


def _write_splits(new_set: curated_set.NewSet, train: np.ndarray, lists: pa.Array,
                  text: pa.Array, columns: dict[str, pa.Array], report: CurateReport) -> None:
    for name, mask in (("train", train), ("validation", ~train)):
        idx = pa.array(np.flatnonzero(mask))
        report.split_rows[name] = len(idx)
        if not len(idx):
            continue
        part = {k: v.take(idx) for k, v in columns.items()}
        split_lists, split_text = lists.take(idx), text.take(idx)
        stem = new_set.split(name, partial(_write_jsonl, text=split_text, columns=part),
                             partial(_write_parquet, lists=split_lists, columns=part))
        report.split_files[name] = stem
        report.files += [f"{stem}.parquet", f"{stem}.jsonl"]


def _with_sources(table: pa.Table, root: Path, job: str, labels: list[str],
                  report: CurateReport) -> pa.Table:
    """A chained job's rows with the upstream record each was made from; rows whose
    lineage does not match (made from upstream rows it no longer reads) are dropped."""
    n = table.num_rows
    store = LineageStore.open_readonly(root)
    plans, sources = {}, {}
    if store is not None:
        with store:
            plans = store.plans(job)
            sources = {label: store.sources(job, label) for label in labels if label in plans}
    if not plans:
        nothing = pa.nulls(n, pa.string())
        return table.append_column("source_job", nothing).append_column(
            "source_input_id", nothing).append_column("source_key", nothing)
    up_job, up_id, up_key, keep = [], [], [], np.zeros(n, dtype=bool)
    for i, (label, input_id, key) in enumerate(zip(table["candidate"].to_pylist(),
                                                   table["input_id"].to_pylist(),
                                                   table["key"].to_pylist(), strict=True)):
        src = sources.get(label, {}).get(input_id)
        match = src is not None and src.key == key
        keep[i] = match
        up_job.append(plans[label].upstream if match else None)
        up_id.append(src.up_input_id if match and src else None)
        up_key.append(src.up_key if match and src else None)
    table = table.append_column("source_job", pa.array(up_job, pa.string())).append_column(
        "source_input_id", pa.array(up_id, pa.string())).append_column(
        "source_key", pa.array(up_key, pa.string()))
    table = table.filter(pa.array(keep))
    report.counts.append(("made from the current upstream rows", table.num_rows))
    return table


def _with_scores(table: pa.Table, root: Path, job: str) -> pa.Table:
    scores = scores_for(root, job)
    values = [scores.get((c, i)) for c, i in zip(table["candidate"].to_pylist(),
                                                 table["input_id"].to_pylist(), strict=True)] \
        if scores else [None] * table.num_rows
    return table.append_column("score", pa.array(values, pa.float64()))


def _with_lengths(table: pa.Table) -> pa.Table:
    return table.append_column("prompt_length", pc.utf8_length(table["prompt"])).append_column(
        "output_length", pc.utf8_length(table["output"]))


def _plain(lists: pa.Array) -> list[str]:
    """Each conversation's turns as one text (what near deduplication compares)."""
    return [" ".join(m["content"] or "" for m in row) for row in lists.to_pylist()]


def _in_train(table: pa.Table, split: float) -> np.ndarray:
    """Whether each row trains: by a hash of its group (the upstream row for a chained
    job, else its input id), so that a group's rows share a split."""
    groups = pc.coalesce(table["source_input_id"], table["input_id"]).to_pylist()
    limit = int(split * 2**64)
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "big") < limit
         for g in groups), dtype=bool, count=len(groups)) if split < 1 else \
        np.ones(len(groups), dtype=bool)


def _provenance(table: pa.Table, job: str) -> dict[str, pa.Array]:
    n = table.num_rows
    out = {"job": pa.array([job] * n, pa.string())}
    for name in OUT[1:]:
        source = "run_id" if name == "run" else name
        out[name] = table[source].combine_chunks()
    return out


def _write_parquet(path: Path, lists: pa.Array, columns: dict[str, pa.Array]) -> None:
    pq.write_table(pa.table({"messages": lists, **columns}), path, compression="zstd")


def _write_jsonl(fh: curated_set.Writable, text: pa.Array, columns: dict[str, pa.Array]) -> None:
    kinds = {name: "number" if name == "score" else "text" for name in columns}
    for start in range(0, len(text), WRITE_ROWS):
        stop = start + WRITE_ROWS
        batch = {"messages": (text[start:stop], "json")}
        batch.update({k: (v[start:stop], kinds[k]) for k, v in columns.items()})
        sft.write_lines(sft.jsonl_lines(batch), fh)
