"""The prediction record's Parquet schema, built from schemas/prediction.schema.json."""

from __future__ import annotations

from functools import lru_cache

import pyarrow as pa

import schemas

_ARROW = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "timestamp[us, UTC]": pa.timestamp("us", tz="UTC"),
    "list<string>": pa.list_(pa.string()),
}


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
