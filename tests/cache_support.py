"""Helpers for tests that read the prediction cache: records in the schema's shape,
written by the real ShardWriter into a real index (no engine needed)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from batch.cache.schema import columns
from batch.cache.store import PredictionStore, ShardWriter

RUN = "0123456789abcdef0123456789abcdef"
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def key_for(input_id: str, version: int = 1) -> str:
    return hashlib.sha256(f"{input_id}/{version}".encode()).hexdigest()


def record(input_id: str, *, version: int = 1, job: str = "fruits", output: str | None = "drupe",
           error: str | None = None, model: str = "tiny", run_id: str = RUN,
           created_at: datetime | None = None, **fields: object) -> dict[str, Any]:
    """A record in the shape of schemas/prediction.schema.json."""
    out: dict[str, Any] = {name: None for name in columns()}
    out.update(
        key=key_for(input_id, version), job=job, input_id=input_id, model=model,
        revision="sha256:abc", prompt=f"{input_id}: v{version}",
        output=None if error else output, finish_reason=None if error else "stop",
        prompt_tokens=3 + len(input_id), output_tokens=None if error else 1, run_id=run_id,
        created_at=created_at or WHEN + timedelta(seconds=version), error=error,
        params=json.dumps({"temperature": 0.0}),
    )
    out.update(fields)
    return out


def write(predictions: Path, records: list[dict[str, Any]], *, job: str = "fruits",
          shard_rows: int = 1000, row_group_rows: int = 4, run_id: str = RUN) -> list[str]:
    """Writes `records` as one run would; returns the new shards' names."""
    store = PredictionStore(predictions)
    try:
        with ShardWriter(store, job, run_id, shard_rows, row_group_rows) as writer:
            for r in records:
                writer.add(r)
    finally:
        store.close()
    return writer.shards
