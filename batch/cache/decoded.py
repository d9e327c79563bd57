"""Rows an open shard decoded, made records: Python objects from Arrow without pandas
(which pyarrow would load to turn a list into an array or a timestamp into a datetime:
half a second of a one-row lookup), each checked against the index (batch.cache.rowcheck)."""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pyarrow as pa

from batch.cache.index_rows import Located
from batch.cache.rowcheck import check_records
from batch.cache.schema import PredictionRecord, arrow_schema

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def int64_array(values: Sequence[int]) -> pa.Array:
    """`pa.array(values, pa.int64())` from the list's own bytes."""
    return pa.Array.from_buffers(pa.int64(), len(values),
                                 [None, pa.py_buffer(array.array("q", values))])


def pylist(table: pa.Table) -> list[dict[str, Any]]:
    """`table.to_pylist()`, UTC microsecond timestamps made datetimes here."""
    stamps = [f.name for f in table.schema
              if f.type == pa.timestamp("us", tz="UTC") or f.type == pa.timestamp("us", tz="+00:00")]
    for name in stamps:  # their int64 microseconds, viewed in place (a cast loads compute)
        i = table.schema.get_field_index(name)
        micros = [chunk.view(pa.int64()) for chunk in table.column(i).chunks]
        table = table.set_column(i, name, pa.chunked_array(micros, pa.int64()))
    rows = table.to_pylist()
    for row in rows:
        for name in stamps:
            if (us := row[name]) is not None:
                row[name] = _EPOCH + timedelta(microseconds=us)
    return rows



@dataclass(frozen=True)
class Fetched:
    """Rows an open shard decoded: their decoded columns, the columns constant over their
    row groups, and the columns the shard lacks (written before they existed)."""

    table: pa.Table
    constants: dict[str, Any]
    missing: list[str]

    def records(self, locs: list[Located]) -> list[PredictionRecord]:
        """The rows as records in the schema's column order, each checked to be its
        `loc`'s record (batch.cache.rowcheck)."""
        names = arrow_schema().names
        out = []
        for rec in pylist(self.table):
            rec.update(self.constants)
            for name in self.missing:
                rec[name] = rec["model"] if name == "candidate" else None
            out.append(cast(PredictionRecord, {c: rec[c] for c in names}))
        check_records(locs, out)
        return out
