"""The prediction record: its Parquet schema and its Python type, both from
schemas/prediction.schema.json (the single source; a test holds `PredictionRecord`
to it, column by column and type by type)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, TypedDict

import pyarrow as pa

import schemas

_ARROW = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "timestamp[us, UTC]": pa.timestamp("us", tz="UTC"),
    "list<string>": pa.list_(pa.string()),
    "bool": pa.bool_(),
}
_PYTHON: dict[str, Any] = {  # types and generic aliases: both take `| None`
    "string": str,
    "int32": int,
    "int64": int,
    "timestamp[us, UTC]": datetime,
    "list<string>": list[str],
    "bool": bool,
}


class PredictionRecord(TypedDict):
    """One row of `predictions/<job>/*.parquet`, as the reader returns it and the writer
    takes it (the writer accepts any mapping of these columns). A plain dict at run time."""

    key: str
    job: str
    input_id: str
    model: str
    revision: str | None
    adapter: str | None
    candidate: str
    adapter_revision: str | None
    prompt: str | None
    output: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    run_id: str
    created_at: datetime
    error: str | None
    outputs: list[str] | None
    logprobs: str | None
    params: str | None
    chat: bool | None


@lru_cache(maxsize=1)
def arrow_schema() -> pa.Schema:
    spec = schemas.load("prediction")
    props = spec["properties"]
    return pa.schema(
        [
            pa.field(name, _ARROW[props[name]["x-arrow"]], nullable=props[name].get("x-nullable", True))
            for name in spec["x-columns"]
        ]
    )


def columns() -> list[str]:
    return arrow_schema().names


# Columns added since the first shards were written, and the columns each earlier
# generation of shards lacks (oldest first): readers fill them (`conform`).
LATER_COLUMNS = ("candidate", "adapter_revision", "chat")
EARLIER = (("candidate", "adapter_revision", "chat"),  # before candidates
           ("chat",))  # before the record said whether its request was chat


def conform(table: pa.Table) -> pa.Table:
    """A table read from a shard, in the schema's columns and order: a shard written
    before candidates has no `candidate` (its rows' candidate is their `model`), and no
    `adapter_revision` (null); one written before `chat` has no `chat` (null: unknown).
    Only columns the table has are kept or filled."""
    names = table.column_names
    for name in LATER_COLUMNS:
        if name in names:
            continue
        field = arrow_schema().field(name)
        if name == "candidate" and "model" in names:
            table = table.append_column(field, table["model"])
        else:
            table = table.append_column(field.with_nullable(True),
                                        pa.nulls(table.num_rows, field.type))
    order = [c for c in arrow_schema().names if c in table.column_names]
    return table.select(order)


def _without(names: tuple[str, ...]) -> pa.Schema:
    return pa.schema([f for f in arrow_schema() if f.name not in names])


def is_legacy(schema: pa.Schema) -> bool:
    """A shard's schema is the one written before candidates (its rows' candidate is their
    model)."""
    return schema.equals(_without(EARLIER[0]), check_metadata=False)


def is_known(schema: pa.Schema) -> bool:
    """A shard's schema is this version's, or one an earlier version wrote."""
    return schema.equals(arrow_schema(), check_metadata=False) or \
        any(schema.equals(_without(lacking), check_metadata=False) for lacking in EARLIER)


def declared_types() -> dict[str, object]:
    """{column: the Python type the JSON Schema implies}, in column order: what
    `typing.get_type_hints(PredictionRecord)` must give."""
    spec = schemas.load("prediction")
    out: dict[str, object] = {}
    for name in spec["x-columns"]:
        prop = spec["properties"][name]
        python = _PYTHON[prop["x-arrow"]]
        out[name] = python | None if prop.get("x-nullable", True) else python
    return out
