"""Reading a job's dataset: JSONL, CSV, Parquet and OpenAI batch files, row by row.

A row that cannot be read becomes an `InputRow` with an error instead of
stopping the job: the run records it as failed and goes on.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.run.spec import InputSpec
from schemas.errors import AlmanacError

# OpenAI batch body fields that map onto our sampling parameters.
OPENAI_SAMPLING = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
    "n": "n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


class InputError(AlmanacError, OSError):
    """The dataset as a whole cannot be read (missing file, unreadable Parquet)."""


@dataclass
class InputRow:
    position: int  # 1-based line or row number, for messages
    id: str
    fields: dict[str, Any] | None = None
    error: str | None = None
    # openai-batch rows: the request as given, and its sampling overrides
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    sampling: dict[str, Any] | None = None


def content_id(fields: dict[str, Any]) -> str:
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return "h" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_rows(spec: InputSpec) -> Iterator[InputRow]:
    if not spec.path.exists():
        raise InputError(f"input file not found: {spec.path}")
    readers = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet, "openai-batch": _openai}
    yield from readers[spec.format](spec.path, spec.id_field)


def _with_id(position: int, fields: dict[str, Any], id_field: str) -> InputRow:
    raw = fields.get(id_field)
    if raw is None or raw == "":
        return InputRow(position, content_id(fields), fields)
    return InputRow(position, str(raw), fields)


def _lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, decode error); bad bytes spoil one line, not the file."""
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                yield n, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield n, None, f"line {n}: not UTF-8 ({exc.reason})"


def _jsonl(path: Path, id_field: str) -> Iterator[InputRow]:
    for n, text, error in _lines(path):
        if error is None and text is not None and not text.strip():
            continue
        if error is None:
            try:
                fields = json.loads(text)
            except json.JSONDecodeError as exc:
                error = f"line {n}: invalid JSON: {exc.msg} at column {exc.colno}"
            else:
                if isinstance(fields, dict):
                    yield _with_id(n, fields, id_field)
                    continue
                error = f"line {n}: expected a JSON object, got {type(fields).__name__}"
        yield InputRow(n, f"line-{n}", error=error)


def _csv(path: Path, id_field: str) -> Iterator[InputRow]:
    # utf-8-sig: a spreadsheet's byte order mark must not become part of the first
    # column's name (the id column, usually).
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.DictReader(fh)
        for fields in reader:
            n = reader.line_num  # blank lines and quoted newlines count too
            if None in fields:
                yield InputRow(n, f"line-{n}", error=f"line {n}: more values than header columns")
                continue
            if None in fields.values():  # DictReader's filler for missing values
                yield InputRow(n, f"line-{n}", error=f"line {n}: fewer values than header columns")
                continue
            yield _with_id(n, dict(fields), id_field)


def _parquet(path: Path, id_field: str) -> Iterator[InputRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet file {path}: {exc}") from exc
    n = 0
    for batch in pf.iter_batches(batch_size=8192):
        for fields in batch.to_pylist():
            n += 1
            yield _with_id(n, fields, id_field)


def _openai(path: Path, id_field: str) -> Iterator[InputRow]:
    """OpenAI/vLLM batch lines run as they are: custom_id, body.messages or body.prompt."""
    for row in _jsonl(path, "custom_id"):
        if row.error is not None:
            yield row
            continue
        assert row.fields is not None
        body = row.fields.get("body")
        custom_id = row.fields.get("custom_id")
        problem = None
        if not isinstance(custom_id, str) or not custom_id:
            problem = "missing custom_id"
        elif not isinstance(body, dict):
            problem = "missing body"
        elif not isinstance(body.get("messages"), list) and not isinstance(body.get("prompt"), str):
            problem = "body has neither messages nor prompt"
        if problem:
            yield InputRow(row.position, row.id, error=f"line {row.position}: {problem}")
            continue
        sampling = {ours: body[theirs] for theirs, ours in OPENAI_SAMPLING.items() if theirs in body}
        if isinstance(sampling.get("stop"), str):
            sampling["stop"] = [sampling["stop"]]
        yield InputRow(
            row.position, custom_id, row.fields,
            messages=body.get("messages"), prompt=body.get("prompt"), sampling=sampling,
        )
