"""Reading cached predictions: the Python API applications use.

    from batch.query import Predictions

    with Predictions.open(None, "fruit-families") as p:   # None: $ALMANAC_HOME, else the default home
        p.get("plum")                    # the latest record of one input, or None
        p.get_many(["plum", "pear"])     # {input_id: record} for the ids that exist
        p.by_key("3f2a…")                # a record by its content address
        p.search(contains="drupe", limit=20)

A record is a plain dict of the prediction columns (schemas/prediction.schema.json;
`created_at` is a timezone-aware datetime, `to_json` makes it a string).

A lookup is one primary-key query on the index (`latest`: (job, input_id) →
shard, row) and one Parquet row group read. The index connection and the
opened `ParquetFile`s stay open between lookups: opening a shard reads its
footer, which costs more than the row itself. Readers never take a write
lock, so they never block a run; a run's shards become visible when its
index transaction commits.
"""

from __future__ import annotations

import bisect
import os
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch.records import arrow_schema

CHUNK = 500  # SQLite host parameters per IN (...) query
OPEN_SHARDS = 128  # ParquetFile objects kept open (one file descriptor each)
# Flat string and integer columns: the ones whose Parquet statistics give back their value.
_FLAT = frozenset(f.name for f in arrow_schema() if pa.types.is_string(f.type) or pa.types.is_integer(f.type))
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # as schemas/job.schema.json


class QueryError(Exception):
    """A problem reading the cache; the message says what to do."""


class UnknownJobError(QueryError, LookupError):
    def __init__(self, job: str) -> None:
        super().__init__(f"no cached predictions for job {job!r}")
        self.job = job


class ShardUnavailableError(QueryError):
    """The index points at a shard that is missing or does not hold the expected row,
    even after re-reading the index once (a concurrent gc is retried transparently)."""


@dataclass(frozen=True)
class JobInfo:
    job: str
    rows: int  # inputs with a latest record
    failed: int  # of those, how many failed
    shards: int
    bytes: int
    last_written: datetime | None

    def to_json(self) -> dict[str, Any]:
        return to_json(asdict(self))


@dataclass(frozen=True)
class _Loc:
    input_id: str
    key: str
    shard: str
    row: int


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    """The same rule as almanac.paths.resolve_home (batch may not import almanac):
    an explicit path, else $ALMANAC_HOME, else the platform's user data dir."""
    if home:
        return Path(home).expanduser().resolve()
    if env := os.environ.get("ALMANAC_HOME"):
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("almanac", appauthor=False))


def to_json(value: Any) -> Any:
    """A record (or anything holding records) with datetimes as ISO 8601 strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Shard:
    """An open shard, where each of its row groups starts, and which columns each
    row group need not decode."""

    def __init__(self, path: Path) -> None:
        # memory_map: a row group read is then a slice of the page cache, not a read().
        self.file = pq.ParquetFile(path, memory_map=True)
        meta = self.file.metadata
        self.starts = [0]
        for i in range(meta.num_row_groups):
            self.starts.append(self.starts[-1] + meta.row_group(i).num_rows)
        self.num_rows = meta.num_rows
        self._constants: dict[int, dict[str, Any]] = {}

    def group_of(self, row: int) -> int:
        return bisect.bisect_right(self.starts, row) - 1

    def constants(self, group: int) -> dict[str, Any]:
        """Columns whose statistics prove them all null, or one value throughout, in
        this row group. Decoding a column chunk has a fixed cost (a zstd context, a
        dictionary page) that dominates a one-row read, and a job's `job`, `model`,
        `revision`, `run_id`, `adapter`, `logprobs`… rarely vary within 1024 rows."""
        if (found := self._constants.get(group)) is not None:
            return found
        found = {}
        meta = self.file.metadata.row_group(group)
        for j in range(meta.num_columns):
            chunk = meta.column(j)
            name = chunk.path_in_schema
            stats = chunk.statistics
            if name not in _FLAT or stats is None or not stats.has_null_count:
                continue
            if stats.null_count == meta.num_rows:
                found[name] = None
            elif stats.null_count == 0 and stats.has_min_max and stats.min == stats.max:
                # Equal min and max are exact: a writer truncating long values would
                # have made them differ.
                found[name] = stats.min
        self._constants[group] = found
        return found

    def read(self, rows: list[int]) -> list[dict[str, Any]]:
        groups = sorted({self.group_of(r) for r in rows})
        constants = dict(self.constants(groups[0]))
        for g in groups[1:]:
            other = self.constants(g)
            constants = {k: v for k, v in constants.items() if k in other and other[k] == v}
        names = arrow_schema().names
        wanted = [c for c in names if c not in constants]
        # Only the row groups holding the rows: 1024 rows decoded, not the shard. Threads
        # decode columns in parallel, which pays off even for one row group (measured).
        table = self.file.read_row_groups(groups, columns=wanted, use_threads=True)
        offsets, base = {}, 0
        for g in groups:
            offsets[g] = base
            base += self.starts[g + 1] - self.starts[g]
        take = [offsets[g] + r - self.starts[g] for r in rows for g in (self.group_of(r),)]
        if len(take) == 1:
            picked = table.slice(take[0], 1).to_pylist()
        else:
            picked = table.take(pa.array(take, pa.int64())).to_pylist()
        if not constants:
            return picked
        return [{c: rec[c] if c in rec else constants[c] for c in names} for rec in picked]

    def close(self) -> None:
        self.file.close()


class CacheReader:
    """The index and the open shards under one `predictions/` directory, shared by
    every job's view. Thread-safe: one lock around the connection and the shard cache
    (lookups take milliseconds; the HTTP server calls from a thread pool)."""

    def __init__(self, root: Path, *, open_shards: int = OPEN_SHARDS) -> None:
        self.root = Path(root)
        self._lock = threading.RLock()
        self._shards: OrderedDict[Path, _Shard] = OrderedDict()
        self._open_shards = open_shards
        index = self.root / "index.db"
        self.db: sqlite3.Connection | None = None
        if index.exists():
            # mode=ro: a reader can never write, nor take the write lock a run needs;
            # in WAL mode it reads the last committed state while a run appends.
            self.db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, isolation_level=None,
                                      check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA busy_timeout=30000")

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()
            if self.db is not None:
                self.db.close()
                self.db = None

    def __enter__(self) -> "CacheReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the index ---------------------------------------------------------------------------

    def sql(self, query: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Every row at once, so no statement (and no read snapshot) stays open."""
        if self.db is None:
            return []
        with self._lock:
            return self.db.execute(query, tuple(params)).fetchall()

    def has_job(self, job: str) -> bool:
        if not JOB_NAME.match(job):
            return False
        return bool(self.sql("SELECT 1 FROM shards WHERE job = ? LIMIT 1", (job,)))

    def jobs(self) -> list[JobInfo]:
        shards = self.sql("SELECT job, count(*), coalesce(sum(bytes), 0), max(created_at) "
                          "FROM shards GROUP BY job ORDER BY job")
        counts = {job: (n, failed) for job, n, failed in self.sql(
            "SELECT job, count(*), coalesce(sum(failed), 0) FROM latest GROUP BY job")}
        return [JobInfo(job, *counts.get(job, (0, 0)), n, size,
                        datetime.fromisoformat(last) if last else None)
                for job, n, size, last in shards]

    def job(self, job: str) -> "Predictions":
        if not self.has_job(job):
            raise UnknownJobError(job)
        return Predictions(self, job, owns_reader=False)

    # -- the shards --------------------------------------------------------------------------

    def _open(self, path: Path) -> _Shard:
        shard = self._shards.get(path)
        if shard is not None:
            self._shards.move_to_end(path)
            return shard
        shard = _Shard(path)
        self._shards[path] = shard
        if len(self._shards) > self._open_shards:
            _, evicted = self._shards.popitem(last=False)
            evicted.close()
        return shard

    def _forget(self, path: Path) -> None:
        shard = self._shards.pop(path, None)
        if shard is not None:
            shard.close()

    def read(self, job: str, locs: list[_Loc]) -> list[dict[str, Any]]:
        """The records at `locs`, in order. Raises FileNotFoundError or _Mismatch when a
        shard is gone or does not hold the row the index promised (the caller re-reads
        the index once: a gc may have moved things in between)."""
        by_shard: dict[str, list[int]] = {}
        for i, loc in enumerate(locs):
            by_shard.setdefault(loc.shard, []).append(i)
        out: list[dict[str, Any] | None] = [None] * len(locs)
        with self._lock:
            for name, positions in by_shard.items():
                path = self.root / job / name
                try:
                    shard = self._open(path)
                except FileNotFoundError:
                    raise
                except (OSError, pa.ArrowException) as exc:
                    raise _Mismatch(f"{path}: unreadable: {exc}") from exc
                rows = [locs[i].row for i in positions]
                for i, record in zip(positions, self._rows(shard, path, rows)):
                    loc = locs[i]
                    if record["input_id"] != loc.input_id or record["key"] != loc.key:
                        self._forget(path)
                        raise _Mismatch(f"{path} row {loc.row} is not {loc.input_id!r}")
                    out[i] = record
        return out  # type: ignore[return-value]

    def _rows(self, shard: _Shard, path: Path, rows: list[int]) -> list[dict[str, Any]]:
        if any(r < 0 or r >= shard.num_rows for r in rows):
            self._forget(path)
            raise _Mismatch(f"{path} has {shard.num_rows} rows; the index points past them")
        try:
            return shard.read(rows)
        except (OSError, pa.ArrowException) as exc:
            self._forget(path)
            raise _Mismatch(f"{path}: unreadable: {exc}") from exc


class _Mismatch(Exception):
    """Internal: the index and a shard disagree (retried once, then ShardUnavailableError)."""


class Predictions:
    """One job's cached predictions. Open with `Predictions.open(home, job)`; close it
    (or use `with`) to release the index connection and open shards."""

    def __init__(self, reader: CacheReader, job: str, *, owns_reader: bool = True) -> None:
        self.reader = reader
        self.job = job
        self._owns_reader = owns_reader

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None, job: str) -> "Predictions":
        """`home` is an Almanac home (None: $ALMANAC_HOME, else the platform default).
        Raises UnknownJobError if the cache holds nothing for `job`."""
        return cls.at(resolve_home(home) / "predictions", job)

    @classmethod
    def at(cls, predictions_root: Path, job: str) -> "Predictions":
        reader = CacheReader(predictions_root)
        if not reader.has_job(job):
            reader.close()
            raise UnknownJobError(job)
        return cls(reader, job)

    def close(self) -> None:
        if self._owns_reader:
            self.reader.close()

    def __enter__(self) -> "Predictions":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups -----------------------------------------------------------------------------

    def get(self, input_id: str) -> dict[str, Any] | None:
        """The latest record of one input, or None."""
        return self.get_many([input_id]).get(input_id)

    def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """{input_id: latest record} for the ids that have one (others are left out)."""
        wanted = list(dict.fromkeys(ids))
        return {r["input_id"]: r for r in self._resolve(lambda: self._latest(wanted))}

    def versions(self, input_id: str) -> list[dict[str, Any]]:
        """Every cached version of one input, oldest first."""
        return self._resolve(lambda: self._locate(
            "SELECT input_id, key, shard, row FROM records WHERE job = ? AND input_id = ? "
            "ORDER BY shard, row", (self.job, input_id)))

    def by_key(self, key: str) -> dict[str, Any] | None:
        """A record of this job with this content address (a success if there is one,
        else the newest)."""
        found = self._resolve(lambda: self._locate(
            "SELECT input_id, key, shard, row FROM records WHERE key = ? AND job = ? "
            "ORDER BY failed, shard DESC LIMIT 1", (key, self.job)))
        return found[0] if found else None

    def search(self, *, contains: str | None = None, failed: bool | None = None,
               model: str | None = None, all_versions: bool = False, limit: int = 50,
               offset: int = 0) -> list[dict[str, Any]]:
        """Records in input id order. `contains`: a case-insensitive substring of the
        output; `failed`: True only failures, False only successes; `model`: the model
        reference; `all_versions`: every version, not just the latest of each input."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")

        def page() -> list[_Loc]:
            if contains is None and model is None:
                return self._locate(*self._index_query(failed, all_versions, "input_id, key, "
                                    "shard, row", f"LIMIT {int(limit)} OFFSET {int(offset)}"))
            return self._scan(contains, failed, model, all_versions)[offset : offset + limit]

        return self._resolve(page)

    def count(self, *, contains: str | None = None, failed: bool | None = None,
              model: str | None = None, all_versions: bool = False) -> int:
        """How many records `search` with the same filters pages through."""
        if contains is None and model is None:
            query, params = self._index_query(failed, all_versions, "count(*)", "")
            return self.reader.sql(query, params)[0][0]
        return len(self._scan(contains, failed, model, all_versions))

    def info(self) -> JobInfo:
        for info in self.reader.jobs():
            if info.job == self.job:
                return info
        raise UnknownJobError(self.job)

    # -- internals ---------------------------------------------------------------------------

    def _resolve(self, locate) -> list[dict[str, Any]]:  # noqa: ANN001 - () -> list[_Loc]
        """Locate in the index, then read the shards; if a shard vanished or changed in
        between (a gc), locate again once: the index then points at the survivors."""
        for attempt in range(2):
            try:
                return self.reader.read(self.job, locate())
            except (FileNotFoundError, _Mismatch) as exc:
                if attempt:
                    raise ShardUnavailableError(
                        f"job {self.job!r}: the index points at a shard that is missing or "
                        f"damaged ({exc}); run `almanac cache verify {self.job}`") from exc
        raise AssertionError("unreachable")

    def _locate(self, query: str, params: tuple) -> list[_Loc]:
        return [_Loc(*row) for row in self.reader.sql(query, params)]

    def _latest(self, ids: list[str]) -> list[_Loc]:
        found: dict[str, _Loc] = {}
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            for row in self.reader.sql(
                f"SELECT input_id, key, shard, row FROM latest WHERE job = ? "
                f"AND input_id IN ({marks})", (self.job, *part)):
                found[row[0]] = _Loc(*row)
        return [found[i] for i in ids if i in found]

    def _index_query(self, failed: bool | None, all_versions: bool, columns: str,
                     tail: str) -> tuple[str, tuple]:
        table = "records" if all_versions else "latest"
        where, params = "job = ?", [self.job]
        if failed is not None:
            where += " AND failed = ?"
            params.append(int(failed))
        order = "ORDER BY input_id, shard, row" if columns != "count(*)" else ""
        return f"SELECT {columns} FROM {table} WHERE {where} {order} {tail}", tuple(params)

    def _scan(self, contains: str | None, failed: bool | None, model: str | None,
              all_versions: bool) -> list[_Loc]:
        """Filters on Parquet columns: scan the job's shards (only the filtered columns),
        then keep the matches the index still lists. Costs a pass over the job."""
        shards = [r[0] for r in self.reader.sql(
            "SELECT name FROM shards WHERE job = ? ORDER BY name", (self.job,))]
        hits: list[_Loc] = []
        for name in shards:
            path = self.reader.root / self.job / name
            try:
                table = pq.read_table(path, columns=["input_id", "key", "output", "model",
                                                     "error"])
            except FileNotFoundError:
                continue  # collected since the index was read: its rows are not current
            mask = pa.array([True] * table.num_rows)
            if contains is not None:
                mask = pc.and_(mask, pc.fill_null(pc.match_substring(
                    table["output"], contains, ignore_case=True), False))
            if model is not None:
                mask = pc.and_(mask, pc.equal(table["model"], model))
            if failed is not None:
                mask = pc.and_(mask, pc.is_valid(table["error"]) if failed
                               else pc.is_null(table["error"]))
            rows = pc.indices_nonzero(mask).to_pylist()
            picked = table.select(["input_id", "key"]).take(pa.array(rows, pa.int64()))
            hits += [_Loc(i, k, name, r) for i, k, r in zip(
                picked["input_id"].to_pylist(), picked["key"].to_pylist(), rows)]
        hits = self._current(hits, all_versions)
        hits.sort(key=lambda h: (h.input_id, h.shard, h.row))
        return hits

    def _current(self, hits: list[_Loc], all_versions: bool) -> list[_Loc]:
        """Only rows the index still points at (a shard may hold superseded rows)."""
        table = "records" if all_versions else "latest"
        listed: set[tuple[str, str, int]] = set()
        ids = sorted({h.input_id for h in hits})
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            listed.update((i, s, r) for i, s, r in self.reader.sql(
                f"SELECT input_id, shard, row FROM {table} WHERE job = ? "
                f"AND input_id IN ({marks})", (self.job, *part)))
        return [h for h in hits if (h.input_id, h.shard, h.row) in listed]


def list_jobs(predictions_root: Path) -> list[JobInfo]:
    """Every job with cached predictions, with its size."""
    with CacheReader(predictions_root) as reader:
        return reader.jobs()


def columns() -> list[str]:
    return arrow_schema().names
