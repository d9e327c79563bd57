"""Helpers for tests that read the prediction cache: records in the schema's shape,
written by the real ShardWriter into a real index (no engine needed)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
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


# -- the index file as any SQLite client sees it (format 3), in names rather than ids --------

_VIEWS = {
    "shards": "SELECT j.name, s.name, s.rows, s.bytes, s.sha256, s.run_id, s.created_at "
              "FROM shards s JOIN jobs j ON j.id = s.job",
    "records": "SELECT j.name, r.input_id, l.label, r.key, s.name, r.row, r.state & 1 "
               "FROM records r JOIN jobs j ON j.id = r.job JOIN labels l ON l.id = r.label "
               "JOIN shards s ON s.id = r.shard",
    "latest": "SELECT j.name, r.input_id, l.label, r.key, s.name, r.row, r.state & 1 "
              "FROM records r JOIN jobs j ON j.id = r.job JOIN labels l ON l.id = r.label "
              "JOIN shards s ON s.id = r.shard WHERE r.state >= 2",
    "candidates": "SELECT j.name, c.label, c.model, c.revision, c.adapter, c.adapter_revision, "
                  "c.ordinal FROM candidates c JOIN jobs j ON j.id = c.job",
}


def index_sql(root: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """A statement on `root`'s index.db through a plain SQLite connection."""
    db = sqlite3.connect(root / "index.db")
    try:
        with db:
            return db.execute(sql, params).fetchall()
    finally:
        db.close()


def index_table(root: Path, name: str) -> list[tuple[Any, ...]]:
    """`shards`, `records`, `latest` or `candidates` as rows of names (keys in hex), sorted."""
    rows = index_sql(root, _VIEWS[name])
    return sorted(tuple(v.hex() if isinstance(v, bytes) else v for v in row) for row in rows)


def unindex_shard(root: Path, name: str) -> None:
    """Forget a shard and its records behind the cache's back (a crash between its rename
    and its index commit)."""
    index_sql(root, "DELETE FROM records WHERE shard = (SELECT id FROM shards WHERE name = ?)", name)
    index_sql(root, "DELETE FROM shards WHERE name = ?", name)


def relabel_row(root: Path, shard: str, row: int, input_id: str) -> None:
    """Damage the index: say row `row` of `shard` holds another input."""
    index_sql(root, "UPDATE records SET input_id = ? WHERE row = ? AND shard = "
                    "(SELECT id FROM shards WHERE name = ?)", input_id, row, shard)
