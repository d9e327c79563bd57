"""The prediction index, `predictions/index.db`: its schema, its connections and every
query on it: the only module that speaks SQL to this file.

The index maps a job's inputs to the shard and row of their records:
`records` holds every version, `latest` the newest of each input, `shards`
what each Parquet file should be (rows, bytes, SHA-256). It is derived from
the shards (which are the truth) and can be rebuilt from them.

Two ways in: `Index.open(root)` for the one writer of a job at a time (a run,
or gc), creating the tables; `Index.open_readonly(root)` for readers, which
can never write nor take the write lock a run needs (in WAL mode they read
the last committed state while a run appends). Query methods return lists,
so no statement, and no read snapshot, stays open between calls.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from catalog.records import jsonable

INDEX_FILE = "index.db"
SCHEMA = """
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
_LOCATED = "job, input_id, key, shard, row, failed"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Located:
    """Where one record lives: row `row` of shard `shard` of `job`, and the index's
    flag of failure (the record's `error IS NOT NULL`)."""

    job: str
    input_id: str
    key: str
    shard: str
    row: int
    failed: bool


@dataclass(frozen=True)
class ShardEntry:
    """What the index recorded of one shard when it was written."""

    name: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class JobInfo:
    job: str
    rows: int  # inputs with a latest record
    failed: int  # of those, how many failed
    shards: int
    bytes: int
    last_written: datetime | None

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def _chunks(items: list[_T], size: int = CHUNK) -> Iterator[list[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _marks(part: list[Any]) -> str:
    return ",".join("?" * len(part))


def _located(row: tuple[Any, ...]) -> Located:
    job, input_id, key, shard, n, failed = row
    return Located(job, input_id, key, shard, n, bool(failed))


class Index:
    """One connection to `predictions/index.db`. Not locked: a caller that shares one
    between threads (the HTTP server's reader) serialises its calls."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, root: Path) -> Index:
        """Read-write, creating `root` and the tables if need be."""
        root.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(root / INDEX_FILE, timeout=30, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
        db.executescript(SCHEMA)
        return cls(db)

    @classmethod
    def open_readonly(cls, root: Path) -> Index | None:
        """Read-only, or None while no run has created the index yet."""
        path = root / INDEX_FILE
        if not path.exists():
            return None
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                             check_same_thread=False, timeout=30)
        db.execute("PRAGMA busy_timeout=30000")
        return cls(db)

    def close(self) -> None:
        self.db.close()

    def _all(self, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(query, tuple(params)).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (`IMMEDIATE`: a reader never blocks it,
        and two writers queue instead of failing half-way)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: the queries inside see one committed state even while a
        run commits new shards (WAL: this never blocks it)."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("ROLLBACK")  # nothing to keep

    # -- fingerprints of local model directories ----------------------------------------------

    def fingerprint_get(self, path: str, signature: str) -> str | None:
        rows = self._all("SELECT digest FROM fingerprints WHERE path = ? AND signature = ?",
                         (path, signature))
        return rows[0][0] if rows else None

    def fingerprint_put(self, path: str, signature: str, digest: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO fingerprints (path, signature, digest) VALUES (?, ?, ?)",
            (path, signature, digest))

    # -- writing -----------------------------------------------------------------------------

    def add_shard(self, job: str, name: str, run_id: str | None,
                  rows: list[tuple[str, str, bool]], size: int, digest: str) -> None:
        """Index a shard whose row i holds `rows[i]` = (input id, key, failed): every row
        becomes a version of its input and that input's latest."""
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO shards (job, name, rows, bytes, sha256, run_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job, name, len(rows), size, digest, run_id, datetime.now(UTC).isoformat()))
            values = [(job, input_id, key, name, i, int(failed))
                      for i, (input_id, key, failed) in enumerate(rows)]
            for table in ("records", "latest"):
                self.db.executemany(
                    f"INSERT OR REPLACE INTO {table} ({_LOCATED}) VALUES (?, ?, ?, ?, ?, ?)", values)

    def repoint(self, job: str, located: Iterable[Located]) -> None:
        """Make these records of `job` their inputs' latest (a prompt changed back)."""
        with self.transaction():
            self.db.executemany(
                f"INSERT OR REPLACE INTO latest ({_LOCATED}) VALUES (?, ?, ?, ?, ?, ?)",
                [(job, r.input_id, r.key, r.shard, r.row, int(r.failed)) for r in located])

    def forget_shards(self, job: str, names: list[str]) -> None:
        """Drop these shards and every record in them. Call inside `transaction()`: gc
        renames the files before it commits."""
        for part in _chunks(names):
            for table in ("records", "latest"):
                self.db.execute(f"DELETE FROM {table} WHERE job = ? AND shard IN ({_marks(part)})",
                                (job, *part))
            self.db.execute(f"DELETE FROM shards WHERE job = ? AND name IN ({_marks(part)})",
                            (job, *part))

    # -- locating records --------------------------------------------------------------------

    def latest_for(self, job: str, input_ids: list[str]) -> dict[str, Located]:
        """{input id: its latest record} for the ids that have one."""
        out: dict[str, Located] = {}
        for part in _chunks(input_ids):
            for row in self._all(f"SELECT {_LOCATED} FROM latest WHERE job = ? "
                                 f"AND input_id IN ({_marks(part)})", (job, *part)):
                out[row[1]] = _located(row)
        return out

    def versions_for(self, job: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Located]:
        """Earlier records of the same input with the same key (a prompt changed back)."""
        out: dict[tuple[str, str], Located] = {}
        for input_id, key in pairs:
            rows = self._all(f"SELECT {_LOCATED} FROM records WHERE job = ? AND input_id = ? "
                             "AND key = ?", (job, input_id, key))
            if rows:
                out[(input_id, key)] = _located(rows[0])
        return out

    def generated_anywhere(self, keys: list[str]) -> dict[str, Located]:
        """One successful record per key, from any job, to copy instead of generating."""
        out: dict[str, Located] = {}
        for part in _chunks(keys):
            for row in self._all(f"SELECT {_LOCATED} FROM records "
                                 f"WHERE key IN ({_marks(part)}) AND failed = 0", part):
                out.setdefault(row[2], _located(row))
        return out

    def by_key(self, key: str, job: str | None = None) -> Located | None:
        """A record with this content address, in `job` or in any job: a success if there
        is one, else the newest."""
        where, params = ("key = ? AND job = ?", (key, job)) if job else ("key = ?", (key,))
        rows = self._all(f"SELECT {_LOCATED} FROM records WHERE {where} "
                         "ORDER BY failed, shard DESC LIMIT 1", params)
        return _located(rows[0]) if rows else None

    def versions(self, job: str, input_id: str) -> list[Located]:
        """Every record of one input, oldest first."""
        return [_located(r) for r in self._all(
            f"SELECT {_LOCATED} FROM records WHERE job = ? AND input_id = ? ORDER BY shard, row",
            (job, input_id))]

    def listing(self, job: str, *, failed: bool | None, all_versions: bool, limit: int,
                offset: int) -> list[Located]:
        """One page of the job's records (the latest of each input, or every version) in
        input id order."""
        where, params = self._filter(job, failed)
        return [_located(r) for r in self._all(
            f"SELECT {_LOCATED} FROM {_table(all_versions)} WHERE {where} "
            "ORDER BY input_id, shard, row LIMIT ? OFFSET ?", (*params, int(limit), int(offset)))]

    def count(self, job: str, *, failed: bool | None, all_versions: bool) -> int:
        where, params = self._filter(job, failed)
        return self._all(f"SELECT count(*) FROM {_table(all_versions)} WHERE {where}", params)[0][0]

    @staticmethod
    def _filter(job: str, failed: bool | None) -> tuple[str, tuple[Any, ...]]:
        if failed is None:
            return "job = ?", (job,)
        return "job = ? AND failed = ?", (job, int(failed))

    def current(self, job: str, input_ids: list[str], *, all_versions: bool) -> list[Located]:
        """The records the index lists for these inputs: their latest, or every version."""
        out: list[Located] = []
        for part in _chunks(input_ids):
            out += [_located(r) for r in self._all(
                f"SELECT {_LOCATED} FROM {_table(all_versions)} WHERE job = ? "
                f"AND input_id IN ({_marks(part)})", (job, *part))]
        return out

    def rows_by_shard(self, job: str, *, all_versions: bool) -> dict[str, list[int]]:
        """{shard: its rows the index lists}, in one pass over the job (there is no index
        by shard, and a query per shard would scan the job's rows each time)."""
        out: dict[str, list[int]] = {}
        for shard, row in self._all(f"SELECT shard, row FROM {_table(all_versions)} WHERE job = ?",
                                    (job,)):
            out.setdefault(shard, []).append(row)
        return out

    def records_by_shard(self, job: str) -> Iterator[tuple[str, int, str, str, bool]]:
        """Every record of the job as (shard, row, input id, key, failed), shard by shard,
        row by row; lazily, so call inside `snapshot()` and consume it there."""
        for shard, row, input_id, key, failed in self.db.execute(
                "SELECT shard, row, input_id, key, failed FROM records WHERE job = ? "
                "ORDER BY shard, row", (job,)):
            yield shard, row, input_id, key, bool(failed)

    def latest_mismatches(self, job: str) -> int:
        """How many `latest` entries of the job do not match a record exactly."""
        return self._all(
            "SELECT count(*) FROM latest l LEFT JOIN records r ON r.job = l.job "
            "AND r.input_id = l.input_id AND r.key = l.key WHERE l.job = ? AND (r.shard IS NULL "
            "OR r.shard != l.shard OR r.row != l.row OR r.failed != l.failed)", (job,))[0][0]

    # -- jobs and shards ---------------------------------------------------------------------

    def has_job(self, job: str) -> bool:
        return bool(self._all("SELECT 1 FROM shards WHERE job = ? LIMIT 1", (job,)))

    def job_names(self) -> set[str]:
        return {r[0] for r in self._all("SELECT DISTINCT job FROM shards")}

    def jobs(self) -> list[JobInfo]:
        """Every job with a shard, by name, with its size."""
        shards = self._all("SELECT job, count(*), coalesce(sum(bytes), 0), max(created_at) "
                           "FROM shards GROUP BY job ORDER BY job")
        counts = {job: (n, failed) for job, n, failed in self._all(
            "SELECT job, count(*), coalesce(sum(failed), 0) FROM latest GROUP BY job")}
        return [JobInfo(job, *counts.get(job, (0, 0)), n, size,
                        datetime.fromisoformat(last) if last else None)
                for job, n, size, last in shards]

    def shard(self, job: str, name: str) -> ShardEntry | None:
        rows = self._all("SELECT name, rows, bytes, sha256 FROM shards WHERE job = ? AND name = ?",
                         (job, name))
        return ShardEntry(*rows[0]) if rows else None

    def shards(self, job: str) -> dict[str, ShardEntry]:
        """The job's shards by name, in name order (the order they were written)."""
        return {r[0]: ShardEntry(*r) for r in self._all(
            "SELECT name, rows, bytes, sha256 FROM shards WHERE job = ? ORDER BY name", (job,))}

    def all_shards(self) -> set[tuple[str, str]]:
        """(job, name) of every shard."""
        return {(job, name) for job, name in self._all("SELECT job, name FROM shards")}

    def shards_in_use(self, job: str, *, any_version: bool) -> set[str]:
        """The job's shards holding a latest record, or (`any_version`) any record."""
        return {r[0] for r in self._all(
            f"SELECT DISTINCT shard FROM {_table(any_version)} WHERE job = ?", (job,))}


def _table(all_versions: bool) -> str:
    return "records" if all_versions else "latest"
