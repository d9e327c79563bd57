"""The prediction cache on disk: immutable Parquet shards plus a SQLite index.

`predictions/<job>/` is one Parquet dataset any reader opens directly. A
shard is written under a hidden temporary name, fsynced, then renamed into
place, so a reader (or a `kill -9`) never sees half a file; only then is it
indexed. The files are the truth: a shard that landed but was not indexed
(a crash between rename and commit) is indexed on the next run's recovery.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.cache.schema import arrow_schema

INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    job TEXT NOT NULL, name TEXT NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL, run_id TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (job, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    job TEXT NOT NULL, input_id TEXT NOT NULL, key TEXT NOT NULL,
    shard TEXT NOT NULL, row INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (job, input_id, key)
) WITHOUT ROWID;
-- planning: is this key already generated anywhere (to copy it)? and lookups by key
CREATE INDEX IF NOT EXISTS records_by_key ON records (key, failed);
-- lookups by (job, input id): the newest record of each input
CREATE TABLE IF NOT EXISTS latest (
    job TEXT NOT NULL, input_id TEXT NOT NULL, key TEXT NOT NULL,
    shard TEXT NOT NULL, row INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (job, input_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fingerprints (
    path TEXT PRIMARY KEY, signature TEXT NOT NULL, digest TEXT NOT NULL
);
"""
CHUNK = 500  # SQLite host parameters per IN (...) query


@dataclass(frozen=True)
class Located:
    job: str
    input_id: str
    key: str
    shard: str
    row: int
    failed: bool


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PredictionStore:
    """The index and the shard directories under one home's `predictions/`."""

    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "index.db", timeout=30, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        if not readonly:
            self.db.executescript(INDEX_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def job_dir(self, job: str) -> Path:
        return self.root / job

    # -- fingerprints of local model directories -------------------------------------------

    def fingerprint_get(self, path: str, signature: str) -> str | None:
        row = self.db.execute(
            "SELECT digest FROM fingerprints WHERE path = ? AND signature = ?", (path, signature)
        ).fetchone()
        return row[0] if row else None

    def fingerprint_put(self, path: str, signature: str, digest: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO fingerprints (path, signature, digest) VALUES (?, ?, ?)",
            (path, signature, digest),
        )

    # -- planning lookups ---------------------------------------------------------------------

    def latest_for(self, job: str, input_ids: list[str]) -> dict[str, Located]:
        out: dict[str, Located] = {}
        for part in _chunks(input_ids):
            marks = ",".join("?" * len(part))
            for row in self.db.execute(
                f"SELECT input_id, key, shard, row, failed FROM latest "
                f"WHERE job = ? AND input_id IN ({marks})", (job, *part),
            ):
                out[row[0]] = Located(job, row[0], row[1], row[2], row[3], bool(row[4]))
        return out

    def versions_for(self, job: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Located]:
        """Earlier records of the same input with the same key (a prompt changed back)."""
        out: dict[tuple[str, str], Located] = {}
        for input_id, key in pairs:
            row = self.db.execute(
                "SELECT shard, row, failed FROM records WHERE job = ? AND input_id = ? AND key = ?",
                (job, input_id, key),
            ).fetchone()
            if row:
                out[(input_id, key)] = Located(job, input_id, key, row[0], row[1], bool(row[2]))
        return out

    def generated_anywhere(self, keys: list[str]) -> dict[str, Located]:
        """One successful record per key, from any job, to copy instead of generating."""
        out: dict[str, Located] = {}
        for part in _chunks(keys):
            marks = ",".join("?" * len(part))
            for row in self.db.execute(
                f"SELECT job, input_id, key, shard, row FROM records "
                f"WHERE key IN ({marks}) AND failed = 0", part,
            ):
                out.setdefault(row[2], Located(row[0], row[1], row[2], row[3], row[4], False))
        return out

    def repoint(self, job: str, located: Iterable[Located]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR REPLACE INTO latest (job, input_id, key, shard, row, failed) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(job, r.input_id, r.key, r.shard, r.row, int(r.failed)) for r in located],
            )

    def read_rows(self, located: list[Located]) -> list[dict[str, Any]]:
        """Full records for located rows, reading each shard once."""
        by_shard: dict[tuple[str, str], list[int]] = {}
        for loc in located:
            by_shard.setdefault((loc.job, loc.shard), []).append(loc.row)
        found: dict[tuple[str, str, int], dict[str, Any]] = {}
        for (job, shard), rows in by_shard.items():
            table = pq.read_table(self.job_dir(job) / shard, schema=arrow_schema())
            picked = table.take(pa.array(sorted(set(rows)))).to_pylist()
            for row, record in zip(sorted(set(rows)), picked):
                found[(job, shard, row)] = record
        return [found[(loc.job, loc.shard, loc.row)] for loc in located]

    # -- writing ------------------------------------------------------------------------------

    def write_shard(self, job: str, run_id: str, seq: int, records: list[dict[str, Any]],
                    row_group_rows: int, compression: str = "lz4") -> str:
        """Write one immutable shard and index it; returns its file name."""
        directory = self.job_dir(job)
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        name = f"part-{stamp}-{run_id[:8]}-{seq:05d}.parquet"
        tmp = directory / f".{name}.tmp"
        table = pa.Table.from_pylist(records, schema=arrow_schema())
        with tmp.open("wb") as fh:
            pq.write_table(table, fh, row_group_size=row_group_rows, compression=compression)
            fh.flush()
            os.fsync(fh.fileno())
        digest = file_sha256(tmp)
        size = tmp.stat().st_size
        os.rename(tmp, directory / name)
        fsync_dir(directory)
        self._index_shard(job, name, run_id, records, size, digest)
        return name

    def _index_shard(self, job: str, name: str, run_id: str | None,
                     records: list[dict[str, Any]], size: int, digest: str) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR REPLACE INTO shards (job, name, rows, bytes, sha256, run_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job, name, len(records), size, digest, run_id,
                 datetime.now(timezone.utc).isoformat()),
            )
            rows = [
                (job, r["input_id"], r["key"], name, i, int(r["error"] is not None))
                for i, r in enumerate(records)
            ]
            self.db.executemany(
                "INSERT OR REPLACE INTO records (job, input_id, key, shard, row, failed) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows,
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO latest (job, input_id, key, shard, row, failed) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows,
            )

    def recover(self, job: str) -> dict[str, int]:
        """Call under the job's lock: drop temporaries a crash left, index shards that
        landed but were never indexed (oldest first, so `latest` ends up newest)."""
        directory = self.job_dir(job)
        if not directory.exists():
            return {"removed_tmp": 0, "indexed": 0}
        removed = 0
        for tmp in directory.glob(".*.tmp"):
            tmp.unlink()
            removed += 1
        known = {r[0] for r in self.db.execute("SELECT name FROM shards WHERE job = ?", (job,))}
        indexed = 0
        for shard in sorted(directory.glob("*.parquet")):
            if shard.name in known:
                continue
            table = pq.read_table(shard, columns=["input_id", "key", "error", "run_id"])
            records = table.to_pylist()
            run_id = records[0]["run_id"] if records else None
            self._index_shard(job, shard.name, run_id, records, shard.stat().st_size,
                              file_sha256(shard))
            indexed += 1
        return {"removed_tmp": removed, "indexed": indexed}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ShardWriter:
    """Buffers records and writes a shard every `shard_rows`; a closed writer has
    written everything it was given."""

    def __init__(self, store: PredictionStore, job: str, run_id: str, shard_rows: int,
                 row_group_rows: int, compression: str = "lz4") -> None:
        self.store, self.job, self.run_id = store, job, run_id
        self.shard_rows, self.row_group_rows = shard_rows, row_group_rows
        self.compression = compression
        self.buffer: list[dict[str, Any]] = []
        self.shards: list[str] = []
        self.rows_written = 0

    def add(self, record: dict[str, Any]) -> None:
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

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        # On an exception the buffered rows are still good results: keep them.
        self.flush()
