"""Exporting a job's cached predictions: Parquet, JSON Lines, CSV, or OpenAI batch output.

Rows come out in the order they were written (shard by shard), the latest
version of each input unless every version is asked for. The file appears
under its name only once complete (written beside it, then renamed), so a
consumer polling for it never reads half an export.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, cast

import pyarrow as pa
import pyarrow.parquet as pq

from batch.cache.errors import ShardUnavailableError, UnknownJobError
from batch.cache.reader import CacheReader, to_json
from batch.cache.schema import PredictionRecord, arrow_schema
from batch.cache.shards import read_rows
from schemas.errors import UsageError

FORMATS = ("parquet", "jsonl", "csv", "openai-batch")


class ExportError(UsageError, ValueError):
    pass


def _tables(reader: CacheReader, job: str, all_versions: bool) -> Iterator[pa.Table]:
    """The job's current rows, one table per shard, in the order they were written."""
    by_shard = reader.query(lambda ix: ix.rows_by_shard(job, all_versions=all_versions), {})
    for shard in sorted(by_shard):
        try:
            table = read_rows(reader.root / job / shard, sorted(by_shard.pop(shard)))
        except FileNotFoundError as exc:
            raise ShardUnavailableError(
                f"job {job!r}: shard {shard} disappeared during the export (a gc?); "
                "run the export again") from exc
        yield table


def openai_batch_line(rec: PredictionRecord) -> dict[str, Any]:
    """One line of an OpenAI batch output file: a chat completion, or an error."""
    request_hash = hashlib.sha256(f"{rec['job']}\0{rec['input_id']}\0{rec['key']}".encode())
    line: dict[str, Any] = {"id": f"batch_req_{request_hash.hexdigest()[:32]}",
                            "custom_id": rec["input_id"]}
    if rec["error"] is not None:
        return {**line, "response": None,
                "error": {"code": "generation_failed", "message": rec["error"]}}
    texts = rec["outputs"] or [rec["output"] or ""]
    prompt_tokens, output_tokens = rec["prompt_tokens"] or 0, rec["output_tokens"] or 0
    body = {
        "id": f"chatcmpl-{rec['key'][:32]}",
        "object": "chat.completion",
        "created": int(rec["created_at"].timestamp()),
        "model": rec["model"],
        "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": rec["finish_reason"]}
                    for i, text in enumerate(texts)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                  "total_tokens": prompt_tokens + output_tokens},
    }
    return {**line, "response": {"status_code": 200, "request_id": f"req_{rec['key'][:32]}",
                                 "body": body}, "error": None}


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


def export(predictions_root: Path, job: str, fmt: str, output: Path | None, *,
           all_versions: bool = False) -> int:
    """Writes the job's predictions to `output` (None: stdout, text formats only);
    returns how many rows were written."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if output is None and fmt == "parquet":
        raise ExportError("a Parquet export needs a file (-o PATH)")
    with CacheReader(predictions_root) as reader:
        if not reader.has_job(job):
            raise UnknownJobError(job)
        tables = _tables(reader, job, all_versions)
        if output is None:
            return _write_text(tables, fmt, sys.stdout)
        output = output.resolve()
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        try:
            n = _write_file(tables, fmt, tmp)
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
        return n


def _write_file(tables: Iterator[pa.Table], fmt: str, path: Path) -> int:
    if fmt == "parquet":
        n = 0
        with pq.ParquetWriter(path, arrow_schema(), compression="zstd") as writer:
            for table in tables:
                writer.write_table(table)
                n += table.num_rows
        return n
    with path.open("w", encoding="utf-8", newline="") as fh:
        n = _write_text(tables, fmt, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return n

