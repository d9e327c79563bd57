"""Reading cached predictions: the Python API applications use.

    from batch.cache.reader import Predictions

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

from batch.cache.schema import arrow_schema
from catalog.records import jsonable as to_json  # re-exported for the front door
from schemas.errors import AlmanacError

CHUNK = 500  # SQLite host parameters per IN (...) query
OPEN_SHARDS = 128  # ParquetFile objects kept open (one file descriptor each)
# Flat string and integer columns: the ones whose Parquet statistics give back their value.
_FLAT = frozenset(f.name for f in arrow_schema() if pa.types.is_string(f.type) or pa.types.is_integer(f.type))
_FROM_INDEX = frozenset({"input_id", "key"})
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # as schemas/job.schema.json


class QueryError(AlmanacError):
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
    failed: bool = False  # the index's flag: error IS NOT NULL


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    """The same rule as almanac.paths.resolve_home (batch may not import almanac):
    an explicit path, else $ALMANAC_HOME, else the platform's user data dir."""
    if home:
        return Path(home).expanduser().resolve()
    if env := os.environ.get("ALMANAC_HOME"):
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("almanac", appauthor=False))


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Shard:
    """An open shard, where each of its row groups starts, and which columns each
    row group need not decode."""

    def __init__(self, path: Path, rows: int, size: int) -> None:
        # memory_map: a row group read is then a slice of the page cache, not a read().
        # Size and row count as indexed: a cheap sign that this is the file the index
        # describes (`cache verify` compares checksums and every row).
        self.source = pa.memory_map(str(path))
        try:
            if self.source.size() != size:
                raise _Mismatch(f"{path} is {self.source.size()} bytes; the index recorded {size}")
            self.file = pq.ParquetFile(self.source)
            meta = self.file.metadata
            if meta.num_rows != rows:
                raise _Mismatch(f"{path} has {meta.num_rows} rows; the index recorded {rows}")
        except BaseException:
            self.source.close()
            raise
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

    def read(self, locs: list[_Loc]) -> list[dict[str, Any]]:
        """The records at `locs`. `input_id`, `key` and (for successes) the null `error`
        come from the index, which was built from these very rows (shards are immutable
        and never renamed): decoding them costs a third of a lookup, and `cache verify`
        checks every row against the index."""
        rows = [loc.row for loc in locs]
        groups = sorted({self.group_of(r) for r in rows})
        constants = dict(self.constants(groups[0]))
        for g in groups[1:]:
            other = self.constants(g)
            constants = {k: v for k, v in constants.items() if k in other and other[k] == v}
        if not any(loc.failed for loc in locs):
            constants["error"] = None  # the index's flag is `error IS NOT NULL`
        names = arrow_schema().names
        wanted = [c for c in names if c not in constants and c not in _FROM_INDEX]
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
        out = []
        for loc, rec in zip(locs, picked):
            rec.update(constants, input_id=loc.input_id, key=loc.key)
            out.append({c: rec[c] for c in names})  # the schema's column order
        return out

    def close(self) -> None:
        self.file.close()
        self.source.close()


class CacheReader:
    """The index and the open shards under one `predictions/` directory, shared by
    every job's view. Thread-safe: one lock around the connection and the shard cache
    (lookups take milliseconds; the HTTP server calls from a thread pool)."""

    def __init__(self, root: Path, *, open_shards: int = OPEN_SHARDS) -> None:
        self.root = Path(root)
        self._lock = threading.RLock()
        self._shards: OrderedDict[Path, _Shard] = OrderedDict()
        self._open_shards = open_shards
        self.db: sqlite3.Connection | None = None
        self._connect()

    def _connect(self) -> None:
        """Opened when the index exists: a reader started before the first run (a
        server on a new home) connects once a run has created it."""
        index = self.root / "index.db"
        if self.db is None and index.exists():
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
        with self._lock:
            self._connect()
            if self.db is None:
                return []
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

    def by_key(self, key: str, job: str | None = None) -> dict[str, Any] | None:
        """A record with this content address, in `job` or in any job: a success if
        there is one, else the newest."""
        where, params = ("key = ? AND job = ?", (key, job)) if job else ("key = ?", (key,))
        for attempt in range(2):
            rows = self.sql(f"SELECT job, input_id, key, shard, row, failed FROM records WHERE {where} "
                            "ORDER BY failed, shard DESC LIMIT 1", params)
            if not rows:
                return None
            found_job, input_id, found_key, shard, row, failed = rows[0]
            try:
                return self.read(found_job, [_Loc(input_id, found_key, shard, row, bool(failed))])[0]
            except (FileNotFoundError, _Mismatch) as exc:
                if attempt:
                    raise _unavailable(found_job, exc) from exc
        raise AssertionError("unreachable")

    def job(self, job: str) -> "Predictions":
        if not self.has_job(job):
            raise UnknownJobError(job)
        return Predictions(self, job, owns_reader=False)

    # -- the shards --------------------------------------------------------------------------

    def _open(self, job: str, name: str) -> _Shard:
        path = self.root / job / name
        shard = self._shards.get(path)
        if shard is not None:
            self._shards.move_to_end(path)
            return shard
        listed = self.sql("SELECT rows, bytes FROM shards WHERE job = ? AND name = ?", (job, name))
        if not listed:
            raise _Mismatch(f"{path} is no longer in the index")
        try:
            shard = _Shard(path, *listed[0])
        except FileNotFoundError:
            raise  # gone (a gc): the caller re-reads the index
        except (OSError, pa.ArrowException) as exc:
            raise _Mismatch(f"{path}: unreadable: {exc}") from exc
        self._shards[path] = shard
        if len(self._shards) > self._open_shards:
            _, evicted = self._shards.popitem(last=False)
            evicted.close()
        return shard

    def _forget(self, job: str, name: str) -> None:
        shard = self._shards.pop(self.root / job / name, None)
        if shard is not None:
            shard.close()

    def read(self, job: str, locs: list[_Loc]) -> list[dict[str, Any]]:
        """The records at `locs`, in order. Raises FileNotFoundError or _Mismatch when a
        shard is gone or is not the one the index describes (the caller re-reads the
        index once: a gc may have moved things in between)."""
        by_shard: dict[str, list[int]] = {}
        for i, loc in enumerate(locs):
            by_shard.setdefault(loc.shard, []).append(i)
        out: list[dict[str, Any] | None] = [None] * len(locs)
        with self._lock:
            for name, positions in by_shard.items():
                shard = self._open(job, name)
                picked = [locs[i] for i in positions]
                if any(loc.row < 0 or loc.row >= shard.num_rows for loc in picked):
                    raise _Mismatch(f"{name} has {shard.num_rows} rows; the index points past them")
                try:
                    records = shard.read(picked)
                except (OSError, pa.ArrowException) as exc:
                    self._forget(job, name)
                    raise _Mismatch(f"{name}: unreadable: {exc}") from exc
                for i, record in zip(positions, records):
                    out[i] = record
        return out  # type: ignore[return-value]


class _Mismatch(Exception):
    """Internal: the index and a shard disagree (retried once, then ShardUnavailableError)."""


def _unavailable(job: str, exc: Exception) -> ShardUnavailableError:
    return ShardUnavailableError(
        f"job {job!r}: the index points at a shard that is missing or damaged ({exc}); "
        f"run `almanac cache verify {job}`")


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
            "SELECT input_id, key, shard, row, failed FROM records WHERE job = ? AND input_id = ? "
            "ORDER BY shard, row", (self.job, input_id)))

    def by_key(self, key: str) -> dict[str, Any] | None:
        """A record of this job with this content address (a success if there is one,
        else the newest)."""
        return self.reader.by_key(key, self.job)

    def search(self, *, contains: str | None = None, failed: bool | None = None,
               model: str | None = None, all_versions: bool = False, limit: int = 50,
               offset: int = 0) -> list[dict[str, Any]]:
        """Records in input id order. `contains`: a case-insensitive substring of the
        output; `failed`: True only failures, False only successes; `model`: the model
        reference; `all_versions`: every version, not just the latest of each input.
        Filters on `failed` alone page through the index; `contains` and `model` read
        those columns of every shard of the job (about a second per million rows)."""
        return self.page(contains=contains, failed=failed, model=model,
                         all_versions=all_versions, limit=limit, offset=offset, total=False)[0]

    def count(self, *, contains: str | None = None, failed: bool | None = None,
              model: str | None = None, all_versions: bool = False) -> int:
        """How many records `search` with the same filters pages through."""
        if contains is None and model is None:
            query, params = self._index_query(failed, all_versions, "count(*)", "")
            return self.reader.sql(query, params)[0][0]
        return len(self._scan(contains, failed, model, all_versions))

    def page(self, *, contains: str | None = None, failed: bool | None = None,
             model: str | None = None, all_versions: bool = False, limit: int = 50,
             offset: int = 0, total: bool = True) -> tuple[list[dict[str, Any]], int | None]:
        """`search` and `count` at once: one pass over the shards when filtering on text."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        if contains is None and model is None:
            found = self._resolve(lambda: self._locate(*self._index_query(
                failed, all_versions, "input_id, key, shard, row, failed",
                f"LIMIT {int(limit)} OFFSET {int(offset)}")))
            n = self.count(failed=failed, all_versions=all_versions) if total else None
            return found, n
        hits: list[_Loc] = []

        def locate() -> list[_Loc]:
            hits[:] = self._scan(contains, failed, model, all_versions)
            return hits[offset : offset + limit]

        found = self._resolve(locate)
        return found, len(hits) if total else None

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
                    raise _unavailable(self.job, exc) from exc
        raise AssertionError("unreachable")

    def _locate(self, query: str, params: tuple) -> list[_Loc]:
        return [_Loc(i, k, s, r, bool(f)) for i, k, s, r, f in self.reader.sql(query, params)]

    def _latest(self, ids: list[str]) -> list[_Loc]:
        found: dict[str, _Loc] = {}
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            for row in self.reader.sql(
                f"SELECT input_id, key, shard, row, failed FROM latest WHERE job = ? "
                f"AND input_id IN ({marks})", (self.job, *part)):
                found[row[0]] = _Loc(*row[:4], bool(row[4]))
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
        then keep the matches the index still lists, in input id order."""
        shards = [r[0] for r in self.reader.sql(
            "SELECT name FROM shards WHERE job = ? ORDER BY name", (self.job,))]
        wanted = ["input_id"] + (["output"] if contains is not None else []) + \
            (["model"] if model is not None else [])
        candidates: set[tuple[str, str, int]] = set()
        for name in shards:
            try:
                table = pq.read_table(self.reader.root / self.job / name, columns=wanted)
            except FileNotFoundError:
                continue  # collected since the index was read: its rows are not current
            mask = None
            if contains is not None:
                mask = pc.fill_null(pc.match_substring(table["output"], contains,
                                                       ignore_case=True), False)
            if model is not None:
                same = pc.fill_null(pc.equal(table["model"], model), False)
                mask = same if mask is None else pc.and_(mask, same)
            rows = pc.indices_nonzero(mask).to_pylist()
            ids = table["input_id"].take(pa.array(rows, pa.int64())).to_pylist()
            candidates.update((i, name, r) for i, r in zip(ids, rows))
        return self._listed(candidates, failed, all_versions)

    def _listed(self, candidates: set[tuple[str, str, int]], failed: bool | None,
                all_versions: bool) -> list[_Loc]:
        """The candidates the index lists (a shard also holds superseded rows), with the
        index's failure flag applied."""
        table = "records" if all_versions else "latest"
        out: list[_Loc] = []
        for part in _chunks(sorted({c[0] for c in candidates})):
            marks = ",".join("?" * len(part))
            for input_id, key, shard, row, fail in self.reader.sql(
                f"SELECT input_id, key, shard, row, failed FROM {table} WHERE job = ? "
                f"AND input_id IN ({marks})", (self.job, *part)):
                if (input_id, shard, row) in candidates and (failed is None or bool(fail) == failed):
                    out.append(_Loc(input_id, key, shard, row, bool(fail)))
        out.sort(key=lambda h: (h.input_id, h.shard, h.row))
        return out


def list_jobs(predictions_root: Path) -> list[JobInfo]:
    """Every job with cached predictions, with its size."""
    with CacheReader(predictions_root) as reader:
        return reader.jobs()


def columns() -> list[str]:
    return arrow_schema().names
