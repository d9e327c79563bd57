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
_UTC_MICROS = (pa.timestamp("us", tz="UTC"), pa.timestamp("us", tz="+00:00"))


def int64_array(values: Sequence[int]) -> pa.Array:
    """`pa.array(values, pa.int64())` from the list's own bytes."""
    return pa.Array.from_buffers(pa.int64(), len(values),
                                 [None, pa.py_buffer(array.array("q", values))])


def pycolumns(table: pa.Table) -> dict[str, list[Any]]:
    """{column: its values as Python objects}, UTC microsecond timestamps made datetimes
    here. Column by column: one conversion per column, not a dict per row."""
    out: dict[str, list[Any]] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        if field.type in _UTC_MICROS:
            # Their int64 microseconds, viewed in place (a cast loads compute).
            micros = pa.chunked_array([c.view(pa.int64()) for c in column.chunks], pa.int64())
            out[field.name] = [None if us is None else _EPOCH + timedelta(microseconds=us)
                               for us in micros.to_pylist()]
        else:
            out[field.name] = column.to_pylist()
    return out


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
        n = self.table.num_rows
        columns = pycolumns(self.table)
        for name, value in self.constants.items():
            columns[name] = [value] * n
        for name in self.missing:
            columns[name] = columns["model"] if name == "candidate" else [None] * n
        names = arrow_schema().names
        out = [cast(PredictionRecord, dict(zip(names, values, strict=True)))
               for values in zip(*(columns[c] for c in names), strict=True)]
        check_records(locs, out)
        return out
