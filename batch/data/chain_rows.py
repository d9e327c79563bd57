"""A chain's rows as Arrow columns, so that planning compares a hundred thousand of them
with what it found last time at once, and only the rows that changed become Python rows
(batch.data.chains, batch.run.upstream).

An upstream input in JSON Lines is read whole into Arrow: its lines cut at their
newlines, each line's id parsed by Arrow's JSON reader, and a line's `basis` made of
its text (the fields are a function of it), the upstream answer, key and score, and
the row's id. Anything that reader cannot take the way the row reader takes it (another
format, a line that is not UTF-8 or over the length limit, ids that are neither all
text nor all integers, a line Arrow cannot parse) leaves the file to the row reader
(`None` here), whose rows are compared all the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from batch.run.inputs import MAX_LINE, jsonl_row
from batch.run.spec.files import FileProblem, check_regular
from batch.run.spec.job import InputSpec
from batch.run.upstream import Known, Remembered

MAX_FILE = 1 << 30  # bytes of an input read whole; a larger one goes row by row
# Separates the basis of a line from one of fields (batch.run.upstream.row_basis).
_PERSON = b"almanac-line"


@dataclass
class Lines:
    """The rows of a JSON Lines input: id, line number and the line's bytes, one per
    non-blank line, in file order."""

    ids: pa.Array
    positions: pa.Array
    text: pa.Array


def jsonl_lines(spec: InputSpec) -> Lines | None:
    """The input's lines read in Arrow, or None when the row reader must read it."""
    if spec.format != "jsonl" or spec.path is None:
        return None
    try:
        if check_regular(spec.path).st_size > MAX_FILE:
            return None
        data = spec.path.read_bytes()
    except (FileProblem, OSError):
        return None  # the row reader says why
    raw = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    starts = np.concatenate([[0], ends + 1])
    ends = np.concatenate([ends, [len(raw)]])
    if len(data) and data.endswith(b"\n"):
        starts, ends = starts[:-1], ends[:-1]
    if not len(starts):
        return Lines(pa.array([], pa.string()), pa.array([], pa.int64()), pa.array([], pa.binary()))
    if int((ends - starts).max()) > MAX_LINE:
        return None
    # Lines and the newlines between them alternate: the even ones are the lines.
    offsets = pa.py_buffer(np.stack([starts, ends], axis=1).ravel().astype(np.int32))
    cut = pa.Array.from_buffers(pa.binary(), 2 * len(starts) - 1, [None, offsets, pa.py_buffer(data)])
    text = cut.take(pa.array(np.arange(0, 2 * len(starts), 2, dtype=np.int64)))
    try:
        strings = text.cast(pa.string())
    except pa.ArrowInvalid:
        return None  # a line that is not UTF-8: the row reader fails it alone
    lines = np.flatnonzero(pc.not_equal(pc.utf8_trim_whitespace(strings), "").to_numpy(
        zero_copy_only=False))
    ids = _ids(data, spec.id_field, len(lines), int((ends - starts).max(initial=0)))
    if ids is None:
        return None
    text = text.take(pa.array(lines))
    positions = pa.array(lines + 1, pa.int64())
    missing = np.flatnonzero(pc.fill_null(pc.equal(ids, ""), True).to_numpy(zero_copy_only=False))
    if len(missing):  # rows without an id are named by their content, as the row reader does
        named = [jsonl_row(int(positions[i].as_py()), text[int(i)].as_py().decode(), spec.id_field)
                 for i in missing]
        if any(row.error is not None for row in named):
            return None
        ids = pc.replace_with_mask(ids, pa.array(np.isin(np.arange(len(ids)), missing)),
                                   pa.array([row.id for row in named], pa.string()))
    return Lines(ids, positions, text)


def _ids(data: bytes, id_field: str, rows: int, longest: int) -> pa.Array | None:
    """Each line's id as text (null where it has none), if every line parses and the ids
    are all text or all integers (as `str` writes them)."""
    options = pa_json.ReadOptions(block_size=max(1 << 20, longest + 2), use_threads=True)
    for kind in (pa.string(), pa.int64()):
        try:
            table = pa_json.read_json(pa.BufferReader(data), read_options=options,
                                      parse_options=pa_json.ParseOptions(
                                          explicit_schema=pa.schema([(id_field, kind)]),
                                          unexpected_field_behavior="ignore"))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue
        if table.num_rows != rows:
            return None
        return table.column(id_field).combine_chunks().cast(pa.string())
    return None


def line_basis(text: pa.Array, output: pa.Array, key: pa.Array, score: pa.Array,
               ids: pa.Array) -> list[str]:
    """Each row's basis from its line, answer, key, score and id: equal bases mean equal
    fields. Each part is written with its length (or as null), so no two rows' parts
    run into each other."""
    parts: list[pa.Array | bytes] = []
    for values in (text, output, key, ids):
        values = values.cast(pa.binary())
        length = pc.binary_length(values).cast(pa.string()).cast(pa.binary())
        parts += [pc.fill_null(pc.binary_join_element_wise(length, b":", values, b""), b"-"),
                  b";"]
    parts.append(pc.fill_null(score.cast(pa.string()).cast(pa.binary()), b"-"))
    blobs = pc.binary_join_element_wise(*parts, b"")
    return [hashlib.blake2b(b, digest_size=16, person=_PERSON).hexdigest()
            for b in blobs.to_pylist()]


def remembered(ids: pa.Array, basis: pa.Array, memo: pa.Table, known: Known,
               retry_failed: bool) -> tuple[np.ndarray, Remembered]:
    """Which rows this candidate remembers (their basis is the one the memo holds, and
    their latest record has the key that basis gave), and those rows' keys and states."""
    cur_ids, cur_keys, cur_failed = known.current
    at_memo = pc.index_in(ids, memo["input_id"])
    at_now = pc.index_in(ids, pa.array(cur_ids, pa.string()))
    key = pa.array(cur_keys, pa.string()).take(at_now)
    failed = pa.array(cur_failed, pa.bool_()).take(at_now)
    same = pc.and_(pc.equal(memo["basis"].take(at_memo), basis),
                   pc.equal(memo["key"].take(at_memo), key))
    if retry_failed:
        same = pc.and_(same, pc.invert(failed))
    mask = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    rows = pa.array(np.flatnonzero(mask))
    return mask, Remembered(ids.take(rows).to_pylist(), key.take(rows).to_pylist(),
                            failed.take(rows).to_pylist())


def first_of_each_id(ids: pa.Array) -> np.ndarray:
    """Positions of the first row of each id, in order (a later row of an id is skipped)."""
    codes = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
    return np.sort(np.unique(codes, return_index=True)[1])

