"""Reading a job's dataset: JSONL, CSV, Parquet and OpenAI batch files, row by row.

A row that cannot be read becomes an `InputRow` with an error instead of
stopping the job: the run records it as failed and goes on. A row without an id it
can use (unreadable, a duplicate, an id that is not text) is named by its position,
`<row N>`; a row's own id of that form is refused, so such a name is never another
row's.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.run.openai_batch import LineError, parse_line
from batch.run.spec.files import FileMissing, FileProblem, check_regular
from batch.run.spec.job import InputSpec
from schemas.errors import AlmanacError

MAX_LINE = 256 * 1024 * 1024  # bytes of one JSONL line


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
    # A digest of everything in the row a prompt can depend on (batch.run.keys.row_basis),
    # from sources that give one (chains): planning may then reuse the key it made last time.
    basis: str | None = None


_POSITION_ID = re.compile(r"<row [0-9]+(?:\.[0-9]+)?>")
# A JSON escape of a UTF-16 surrogate: a pair decodes to one character, a lone one
# (`"\ud800"`) to a string no encoder takes. Only lines holding one are searched.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def position_id(position: int, nth: int = 1) -> str:
    """The id of the row at `position` (a line or row number) that has no usable id of its
    own; `nth` tells apart rows that share a position (a chain's exploded items)."""
    return f"<row {position}>" if nth == 1 else f"<row {position}.{nth}>"


def is_position_id(value: str) -> bool:
    return _POSITION_ID.fullmatch(value) is not None


def content_id(fields: dict[str, Any]) -> str:
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return "h" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_rows(spec: InputSpec, *, max_line: int = MAX_LINE) -> Iterator[InputRow]:
    """The input's rows; a JSONL line over `max_line` bytes becomes a failed row."""
    if spec.path is None:  # a chain's rows come from the cache, through the runner's Upstream
        raise InputError(f"input.job {spec.job!r}: another job's predictions are read by "
                         "the runner's upstream reader (batch.data.chains), not from a file")
    try:
        check_regular(spec.path)  # a device or FIFO would be read without end
    except FileMissing:
        raise InputError(f"input file not found: {spec.path}") from None
    except FileProblem as exc:
        raise InputError(f"input file {spec.path} {exc}") from None
    if spec.format in ("jsonl", "openai-batch"):
        lines = _jsonl if spec.format == "jsonl" else _openai
        yield from lines(spec.path, spec.id_field, max_line)
        return
    readers = {"csv": _csv, "parquet": _parquet}
    yield from readers[spec.format](spec.path, spec.id_field)


def _with_id(position: int, fields: dict[str, Any], id_field: str) -> InputRow:
    raw = fields.get(id_field)
    if raw is None or raw == "":
        return InputRow(position, content_id(fields), fields)
    ident = str(raw)
    if is_position_id(ident):
        return InputRow(position, position_id(position),
                        error=f"row {position}: id {ident!r} has the form that names rows "
                              "without a usable id (<row N>)")
    return InputRow(position, ident, fields)


def _lone_surrogate(value: Any, where: str) -> str | None:
    """Where in a decoded JSON value a string (or an object's key) holds a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if (found := _lone_surrogate(key, path)) or (found := _lone_surrogate(item, path)):
                return found.encode("utf-8", "backslashreplace").decode()
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if found := _lone_surrogate(item, f"{where}[{i}]"):
                return found
    return None


def _lines(path: Path, max_line: int) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, decode error); bad bytes spoil one line, not the file, and so
    does a line over `max_line` bytes (read no further than that: memory stays bounded)."""
    with path.open("rb") as fh:
        n = 0
        while raw := fh.readline(max_line + 1):
            n += 1
            if len(raw) > max_line and not raw.endswith(b"\n"):
                while (rest := fh.readline(max_line)) and not rest.endswith(b"\n"):
                    pass  # skip to the end of the line
                yield n, None, f"line {n}: longer than {max_line:,} bytes"
                continue
            try:
                yield n, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield n, None, f"line {n}: not UTF-8 ({exc.reason})"


def _jsonl(path: Path, id_field: str, max_line: int = MAX_LINE) -> Iterator[InputRow]:
    for n, text, error in _lines(path, max_line):
        if error is None and text is not None and not text.strip():
            continue
        yield jsonl_row(n, text, id_field) if error is None and text is not None else \
            InputRow(n, position_id(n), error=error)


def jsonl_row(n: int, text: str, id_field: str) -> InputRow:
    """Line `n` of a JSONL input (not blank) as its row, or a failed row saying why."""
    try:
        fields = _object(text)
    except json.JSONDecodeError as exc:
        error = f"line {n}: invalid JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        error = f"line {n}: invalid JSON: nested too deeply"
    else:
        if not isinstance(fields, dict):
            error = f"line {n}: expected a JSON object, got {type(fields).__name__}"
        elif "\\u" in text and _SURROGATE_ESCAPE.search(text) \
                and (where := _lone_surrogate(fields, "")):
            error = (f"line {n}: field {where} holds a lone surrogate (a \\uD800-"
                     "\\uDFFF escape without its pair), which is not Unicode text")
        else:
            return _with_id(n, fields, id_field)
    return InputRow(n, position_id(n), error=error)


def _object(text: str) -> Any:
    """json.loads(text), without its two regular-expression scans for whitespace (a
    third of the time of a short line); json.loads itself words any error."""
    stripped = text.strip(" \t\n\r")  # JSON's whitespace, no other
    try:
        value, end = _DECODE(stripped)
    except json.JSONDecodeError:
        value, end = None, -1
    if end != len(stripped):
        return json.loads(text)  # raises, with json's own message and column
    return value


_DECODE = json.JSONDecoder().raw_decode


def _csv(path: Path, id_field: str) -> Iterator[InputRow]:
    # utf-8-sig: a spreadsheet's byte order mark must not become part of the first
    # column's name (the id column, usually).
    if csv.field_size_limit() < MAX_LINE:  # the default, 128 KiB, is less than a long document
        csv.field_size_limit(MAX_LINE)
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.DictReader(fh)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # a NUL byte, a field over the limit: this row only
                n = reader.line_num
                yield InputRow(n, position_id(n), error=f"line {n}: unreadable CSV: {exc}")
                continue
            n = reader.line_num  # blank lines and quoted newlines count too
            if None in fields:
                yield InputRow(n, position_id(n),
                               error=f"line {n}: more values than header columns")
                continue
            if None in fields.values():  # DictReader's filler for missing values
                yield InputRow(n, position_id(n),
                               error=f"line {n}: fewer values than header columns")
                continue
            yield _with_id(n, dict(fields), id_field)


def _parquet(path: Path, id_field: str) -> Iterator[InputRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet file {path}: {exc}") from exc
    n = 0
    batches = pf.iter_batches(batch_size=8192)
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # damage past the footer shows only when a page is read
            raise InputError(f"cannot read Parquet file {path} after row {n}: {exc}") from exc
        if batch is None:
            return
        for fields in batch.to_pylist():
            n += 1
            yield _with_id(n, fields, id_field)


def _openai(path: Path, id_field: str, max_line: int = MAX_LINE) -> Iterator[InputRow]:
    """OpenAI/vLLM batch lines run as they are (batch.run.openai_batch reads each)."""
    for row in _jsonl(path, "custom_id", max_line):
        if row.error is not None:
            yield row
            continue
        assert row.fields is not None
        try:
            line = parse_line(row.fields)
        except LineError as exc:
            # A line without a custom_id is named by its position, not by a content hash.
            custom_id = row.fields.get("custom_id")
            ident = row.id if isinstance(custom_id, str) and custom_id else position_id(row.position)
            yield InputRow(row.position, ident, error=f"line {row.position}: {exc}")
            continue
        yield InputRow(row.position, line.custom_id, row.fields, messages=line.messages,
                       prompt=line.prompt, sampling=line.sampling)
