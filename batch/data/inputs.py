"""A job's input fields by input id, for `curate --where "row.NAME ..."`: the rows its
job file reads now (the file it was last run from, as lineage.db recorded it), through
the same readers a run uses (a chained job's rows through batch.data.chains)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from batch.data.chains import UpstreamReader
from batch.data.lineage import LineageStore
from batch.data.where import WhereError
from batch.run.inputs import read_rows
from batch.run.spec.job import load_spec
from schemas.errors import AlmanacError

_ARROW = {"number": pa.float64(), "bool": pa.bool_(), "text": pa.string()}


@dataclass
class Fields:
    """Each input row's fields by id, and each field's kind (number, bool or text)."""

    values: dict[str, dict[str, Any]]
    kinds: dict[str, str]

    def column(self, name: str, input_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
        """Field `name` for each of `input_ids` (null where a row lacks it), as its kind."""
        kind = self.kinds[name]
        out: list[Any] = []
        for i in input_ids.to_pylist():
            v = (self.values.get(i) or {}).get(name)
            if v is not None and kind == "text" and not isinstance(v, str):
                v = json.dumps(v, ensure_ascii=False, default=str)
            elif kind == "number" and isinstance(v, int) and not isinstance(v, bool):
                v = _as_float(v)  # 10**30 is a number too: compared as the nearest float
            out.append(v)
        return pa.array(out, _ARROW[kind])


def _as_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:  # beyond the largest float: an infinity of its sign
        return math.inf if value > 0 else -math.inf


def input_fields(predictions_root: Path, job: str) -> Fields:
    store = LineageStore.open_readonly(predictions_root)
    path = None
    if store is not None:
        with store:
            path = store.job_file(job)
    if path is None or not path.is_file():
        was = f"it was last run from {path}, which is gone" if path else \
            "no run of it recorded its job file"
        raise WhereError(f"--where: row fields: cannot read the input of job {job!r} ({was})")
    try:
        spec = load_spec(path)
        rows = UpstreamReader(predictions_root).rows(spec) if spec.input.format == "job" \
            else read_rows(spec.input)
        values = {row.id: row.fields for row in rows if row.fields is not None}
    except AlmanacError as exc:
        raise WhereError(f"--where: row fields: cannot read the input of job {job!r}: {exc}") \
            from None
    seen: dict[str, set[str]] = {}
    for fields in values.values():
        for name, v in fields.items():
            if v is not None:
                seen.setdefault(name, set()).add(
                    "bool" if isinstance(v, bool) else
                    "number" if isinstance(v, int | float) else "text")
    kinds = {name: next(iter(k)) if len(k) == 1 else "text" for name, k in seen.items()}
    return Fields(values, kinds)
