"""The cache as a run writes it: shards written whole, then indexed; recovery after
a crash; the lookups a plan makes.

A shard is indexed only once it is on disk under its name (batch.cache.shards),
so the index never names a file that is not there. The files are the truth:
a shard that landed but was not indexed (a crash between rename and commit)
is indexed on the next run's recovery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from batch.cache import shards
from batch.cache.index import Index, Located
from batch.cache.schema import PredictionRecord

__all__ = ["Located", "PredictionStore", "ShardWriter"]


class PredictionStore:
    """The index (read-write) and the shard directories under one home's `predictions/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index = Index.open(root)

    def close(self) -> None:
        self.index.close()

    def job_dir(self, job: str) -> Path:
        return self.root / job

    # -- fingerprints of local model directories -------------------------------------------

    def fingerprint_get(self, path: str, signature: str) -> str | None:
        return self.index.fingerprint_get(path, signature)

    def fingerprint_put(self, path: str, signature: str, digest: str) -> None:
        self.index.fingerprint_put(path, signature, digest)

    # -- planning lookups ---------------------------------------------------------------------

    def latest_for(self, job: str, input_ids: list[str]) -> dict[str, Located]:
        return self.index.latest_for(job, input_ids)

    def versions_for(self, job: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Located]:
        """Earlier records of the same input with the same key (a prompt changed back)."""
        return self.index.versions_for(job, pairs)

    def generated_anywhere(self, keys: list[str]) -> dict[str, Located]:
        """One successful record per key, from any job, to copy instead of generating."""
        return self.index.generated_anywhere(keys)

    def repoint(self, job: str, located: Iterable[Located]) -> None:
        self.index.repoint(job, located)

    def read_rows(self, located: list[Located]) -> list[PredictionRecord]:
        """Full records for located rows, reading each shard once."""
        by_shard: dict[tuple[str, str], list[int]] = {}
        for loc in located:
            by_shard.setdefault((loc.job, loc.shard), []).append(loc.row)
        found: dict[tuple[str, str, int], PredictionRecord] = {}
        for (job, shard), rows in by_shard.items():
            wanted = sorted(set(rows))
            picked = shards.read_rows(self.job_dir(job) / shard, wanted).to_pylist()
            for row, record in zip(wanted, picked, strict=True):
                found[(job, shard, row)] = cast(PredictionRecord, record)
        return [found[(loc.job, loc.shard, loc.row)] for loc in located]

    # -- writing ------------------------------------------------------------------------------

    def write_shard(self, job: str, run_id: str, seq: int, records: list[Mapping[str, Any]],
                    row_group_rows: int, compression: str = "lz4") -> str:
        """Write one immutable shard and index it; returns its file name."""
        name = shards.shard_name(run_id, seq)
        size, digest = shards.write_shard(self.job_dir(job), name, records, row_group_rows,
                                          compression)
        rows = [(r["input_id"], r["key"], r["error"] is not None) for r in records]
        self.index.add_shard(job, name, run_id, rows, size, digest)
        return name

    def recover(self, job: str) -> dict[str, int]:
        """Call under the job's lock: drop temporaries a crash left, index shards that
        landed but were never indexed (oldest first, so `latest` ends up newest)."""
        directory = self.job_dir(job)
        if not directory.exists():
            return {"removed_tmp": 0, "indexed": 0}
        removed = 0
        for tmp in shards.temporaries(directory):
            tmp.unlink()
            removed += 1
        indexed = 0
        for shard in shards.landed(directory, self.index.shards(job)):
            run_id, rows = shards.index_entries(shard)
            self.index.add_shard(job, shard.name, run_id, rows, shard.stat().st_size,
                                 shards.file_sha256(shard))
            indexed += 1
        return {"removed_tmp": removed, "indexed": indexed}


class ShardWriter:
    """Buffers records and writes a shard every `shard_rows`; a closed writer has
    written everything it was given. Records are mappings of the prediction columns
    (a `PredictionRecord`, or a plain dict with the same keys)."""

    def __init__(self, store: PredictionStore, job: str, run_id: str, shard_rows: int,
                 row_group_rows: int, compression: str = "lz4") -> None:
        self.store, self.job, self.run_id = store, job, run_id
        self.shard_rows, self.row_group_rows = shard_rows, row_group_rows
        self.compression = compression
        self.buffer: list[Mapping[str, Any]] = []
        self.shards: list[str] = []
        self.rows_written = 0

    def add(self, record: PredictionRecord | Mapping[str, Any]) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        name = self.store.write_shard(self.job, self.run_id, len(self.shards), self.buffer,
                                      self.row_group_rows, self.compression)
        self.shards.append(name)
        self.rows_written += len(self.buffer)
        self.buffer = []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # On an exception the buffered rows are still good results: keep them.
        self.flush()
