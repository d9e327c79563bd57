"""Exporting a job's cached predictions: Parquet, JSON Lines, CSV, or OpenAI batch output.

Rows come out in the order they were written (shard by shard), the latest
version of each input unless every version is asked for. Where they go follows
`schemas.output_path`: a file appears under its name only once complete (written beside
it, then renamed), so a consumer polling for it never reads half an export; a device,
a FIFO or standard output is written as a stream, never replaced. Parquet is written
front to back (its footer last), so it streams to a pipe as well as to a file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, cast

import pyarrow as pa
import pyarrow.parquet as pq

from batch.cache.choice import choose
from batch.cache.errors import (
    CandidateRequiredError,
    ShardDamagedError,
    ShardUnavailableError,
    UnknownJobError,
)
from batch.cache.openai_output import ErrorsApart, openai_batch_line
from batch.cache.reader import CacheReader
from batch.cache.rowcheck import check_table
from batch.cache.schema import PredictionRecord, arrow_schema
from batch.cache.shards import ShardDamaged, damage, job_directory, read_rows
from catalog.records import jsonable as to_json
from schemas.errors import UsageError
from schemas.output_path import STDOUT, open_output

FORMATS = ("parquet", "jsonl", "csv", "openai-batch")


class ExportError(UsageError, ValueError):
    pass


@dataclass(frozen=True)
class Exported:
    """What an export wrote: rows to the output, and failed rows to the errors file
    (`--errors`; 0 without one)."""

    written: int
    failed: int = 0


def _tables(reader: CacheReader, job: str, all_versions: bool,
            labels: list[str]) -> Iterator[pa.Table]:
    """The job's current rows of these candidates, one table per shard, in the order
    they were written; each row checked to be the record the index says it is."""
    claims = reader.query(lambda ix: ix.claims(job, labels, all_versions=all_versions), None)
    listed = reader.query(lambda ix: ix.shards(job), {})
    directory = job_directory(reader.root, job)
    for shard, said in claims.by_shard() if claims is not None else ():
        path = directory / shard
        # The whole file against its SHA-256 (it is read whole anyway), then every page
        # against its checksum: damage stops the export, whose file never appears.
        why = damage(path, listed.get(shard))
        if why == "its file is gone":
            raise ShardUnavailableError(
                f"job {job!r}: shard {shard} disappeared during the export (a gc?), or is "
                f"missing; run the export again, or `almanac cache verify {job}`")
        try:
            if why is not None:
                raise ShardDamaged(f"{shard}: {why}")
            table = read_rows(path, said.rows.tolist())
        except (OSError, IndexError, ShardDamaged) as exc:
            raise ShardDamagedError.of(job, exc) from exc
        check_table(job, shard, table, said)
        yield table


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return to_json(value)


def _write_text(tables: Iterator[pa.Table], fmt: str, out: TextIO) -> int:
    n = 0
    writer = None
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(arrow_schema().names)
    for table in tables:
        for rec in table.to_pylist():
            if writer is not None:
                writer.writerow([_csv_value(v) for v in rec.values()])
            else:
                line = openai_batch_line(cast(PredictionRecord, rec)) if fmt == "openai-batch" \
                    else to_json(rec)
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
            n += 1
    return n


def export(predictions_root: Path, job: str, fmt: str, output: str | Path | None, *,
           all_versions: bool = False, candidate: str | None = None, model: str | None = None,
           adapter: str | None = None, errors: str | Path | None = None) -> Exported:
    """Writes the job's predictions to `output` (`-` or None: stdout): those of the
    current candidates `candidate`, `model` and `adapter` select (all without them);
    with `errors` (openai-batch), failed rows go to that path instead, as OpenAI's
    batch error file holds them.

    An OpenAI batch output file answers one request per `custom_id` (the input id), each
    sent to one model: openai-batch exports one candidate, the latest version of each
    input. A job with several candidates needs one chosen (ExportError, exit 2, naming
    them); each line's `body.model` names the candidate as its request would have: the
    adapter's name for an adapter (as `vllm serve` names LoRA modules), else the model's."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if errors is not None and fmt != "openai-batch":
        raise ExportError("--errors writes OpenAI batch error lines: use it with "
                          "--format openai-batch")
    if all_versions and fmt == "openai-batch":
        raise ExportError("--all: an OpenAI batch output file holds one line per request "
                          "(custom_id): export the latest versions, or every version with "
                          "--format jsonl")
    target = STDOUT if output is None else os.fspath(output)
    if errors is not None and _same(target, os.fspath(errors)):
        raise ExportError("--errors names the same file as -o: give the failed rows a file "
                          "of their own")
    with CacheReader(predictions_root) as reader, contextlib.ExitStack() as stack:
        if not reader.has_job(job):
            raise UnknownJobError(job)
        if fmt == "openai-batch":
            labels = _one_candidate(reader, job, candidate, model, adapter)
        else:
            labels = reader.job(job).select(candidate, model, adapter)
        tables = _tables(reader, job, all_versions, labels)
        # The output first: when both are files, the errors file lands before it.
        out = stack.enter_context(open_output(target, binary=fmt == "parquet"))
        apart = None
        if errors is not None:
            apart = ErrorsApart(stack.enter_context(open_output(errors, option="--errors")))
            tables = apart.split(tables)
        if fmt == "parquet":
            n = 0
            with pq.ParquetWriter(out, arrow_schema(), compression="zstd") as writer:
                for table in tables:
                    writer.write_table(table)
                    n += table.num_rows
        else:
            n = _write_text(tables, fmt, out)
        return Exported(n, apart.failed if apart is not None else 0)


def _one_candidate(reader: CacheReader, job: str, candidate: str | None, model: str | None,
                   adapter: str | None) -> list[str]:
    """The one candidate an openai-batch export writes (none listed: a job written before
    candidates were, whose records are all one model's)."""
    try:
        label = reader.query(lambda ix: choose(job, ix.candidates(job), candidate, model,
                                               adapter), None)
    except CandidateRequiredError as exc:
        raise ExportError(
            f"job {job!r} has {len(exc.labels)} candidates ({', '.join(exc.labels)}): an "
            "OpenAI batch output file answers each request (custom_id) once, from one "
            "model: choose one with --candidate LABEL (one file per candidate)") from None
    return [label] if label is not None else reader.job(job).select()


def _same(output: str, errors: str) -> bool:
    """Whether two user paths name one file, which the second rename would take from the
    first (two streams may share a device or stdout: their lines interleave)."""
    if STDOUT in (output, errors):
        return False
    try:
        return os.path.samefile(output, errors) and os.path.isfile(output)
    except OSError:
        return os.path.realpath(output) == os.path.realpath(errors)
