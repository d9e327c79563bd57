"""Reading cached predictions: what the HTTP server, the TUI, the CLI and the
front door's Python API (almanac.api) read through.

    from batch.cache.reader import Predictions

    with Predictions.at(home / "predictions", "fruit-families") as p:
        p.get("plum")                    # the latest record of one input, or None
        p.get_many(["plum", "pear"])     # {input_id: record} for the ids that exist
        p.by_key("3f2a…")                # a record by its content address
        p.search(contains="drupe", limit=20)

A record is a `PredictionRecord`, a plain dict of the prediction columns
(schemas/prediction.schema.json; `created_at` is a timezone-aware datetime,
`to_json` makes it a string).

A lookup is one primary-key query on the index (`latest`: (job, input_id) →
shard, row) and one Parquet row group read. The index connection and the
opened shards stay open between lookups: opening a shard reads its footer,
which costs more than the row itself. Readers never take a write lock, so
they never block a run; a run's shards become visible when its index
transaction commits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self, TypeVar

import pyarrow as pa

from batch.cache.errors import QueryError, ShardUnavailableError, UnknownJobError
from batch.cache.index import Index, JobInfo, Located
from batch.cache.schema import PredictionRecord, columns
from batch.cache.shards import OpenShard, ShardMismatch, matching_rows
from catalog.records import jsonable as to_json  # re-exported for the front door
from schemas import is_job_name

__all__ = [
    "CacheReader", "JobInfo", "Predictions", "PredictionRecord", "QueryError",
    "ShardUnavailableError", "UnknownJobError", "columns", "list_jobs", "to_json",
]

OPEN_SHARDS = 128  # shards kept open (one file descriptor each)
_T = TypeVar("_T")


class CacheReader:
    """The index and the open shards under one `predictions/` directory, shared by
    every job's view. Thread-safe: one lock around the connection and the shard cache
    (lookups take milliseconds; the HTTP server calls from a thread pool)."""

    def __init__(self, root: Path, *, open_shards: int = OPEN_SHARDS) -> None:
        self.root = Path(root)
        self._lock = threading.RLock()
        self._shards: OrderedDict[Path, OpenShard] = OrderedDict()
        self._open_shards = open_shards
        self._index: Index | None = None

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()
            if self._index is not None:
                self._index.close()
                self._index = None

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the index ---------------------------------------------------------------------------

    def query(self, ask: Callable[[Index], _T], empty: _T) -> _T:
        """`ask(index)` under the lock, or `empty` while there is no index: a reader started
        before the first run (a server on a new home) connects once a run has created it."""
        with self._lock:
            if self._index is None:
                self._index = Index.open_readonly(self.root)
            if self._index is None:
                return empty
            return ask(self._index)

    def has_job(self, job: str) -> bool:
        return is_job_name(job) and self.query(lambda ix: ix.has_job(job), False)

    def jobs(self) -> list[JobInfo]:
        return self.query(Index.jobs, [])

    def by_key(self, key: str, job: str | None = None) -> PredictionRecord | None:
        """A record with this content address, in `job` or in any job: a success if
        there is one, else the newest."""
        for attempt in range(2):
            found = self.query(lambda ix: ix.by_key(key, job), None)
            if found is None:
                return None
            try:
                return self.read(found.job, [found])[0]
            except (FileNotFoundError, ShardMismatch) as exc:
                if attempt:
                    raise ShardUnavailableError.of(found.job, exc) from exc
        raise AssertionError("unreachable")

    def job(self, job: str) -> Predictions:
        if not self.has_job(job):
            raise UnknownJobError(job)
        return Predictions(self, job, owns_reader=False)

    # -- the shards --------------------------------------------------------------------------

    def _open(self, job: str, name: str) -> OpenShard:
        path = self.root / job / name
        shard = self._shards.get(path)
        if shard is not None:
            self._shards.move_to_end(path)
            return shard
        listed = self.query(lambda ix: ix.shard(job, name), None)
        if listed is None:
            raise ShardMismatch(f"{path} is no longer in the index")
        try:
            shard = OpenShard(path, listed.rows, listed.bytes)
        except FileNotFoundError:
            raise  # gone (a gc): the caller re-reads the index
        except (OSError, pa.ArrowException) as exc:
            raise ShardMismatch(f"{path}: unreadable: {exc}") from exc
        self._shards[path] = shard
        if len(self._shards) > self._open_shards:
            _, evicted = self._shards.popitem(last=False)
            evicted.close()
        return shard

    def _forget(self, job: str, name: str) -> None:
        shard = self._shards.pop(self.root / job / name, None)
        if shard is not None:
            shard.close()

    def read(self, job: str, locs: list[Located]) -> list[PredictionRecord]:
        """The records at `locs`, in order. Raises FileNotFoundError or ShardMismatch when
        a shard is gone or is not the one the index describes (the caller re-reads the
        index once: a gc may have moved things in between)."""
        by_shard: dict[str, list[int]] = {}
        for i, loc in enumerate(locs):
            by_shard.setdefault(loc.shard, []).append(i)
        out: dict[int, PredictionRecord] = {}
        with self._lock:
            for name, positions in by_shard.items():
                shard = self._open(job, name)
                picked = [locs[i] for i in positions]
                if any(loc.row < 0 or loc.row >= shard.num_rows for loc in picked):
                    raise ShardMismatch(f"{name} has {shard.num_rows} rows; the index points past them")
                try:
                    records = shard.read(picked)
                except (OSError, pa.ArrowException) as exc:
                    self._forget(job, name)
                    raise ShardMismatch(f"{name}: unreadable: {exc}") from exc
                out.update(zip(positions, records, strict=True))
        return [out[i] for i in range(len(locs))]


class Predictions:
    """One job's cached predictions. Open with `Predictions.at(predictions_root, job)`
    (the front door's `almanac.api.Predictions.open(home, job)` finds the home); close
    it (or use `with`) to release the index connection and open shards."""

    def __init__(self, reader: CacheReader, job: str, *, owns_reader: bool = True) -> None:
        self.reader = reader
        self.job = job
        self._owns_reader = owns_reader

    @classmethod
    def at(cls, predictions_root: Path, job: str) -> Self:
        """Raises UnknownJobError if the cache holds nothing for `job`."""
        reader = CacheReader(predictions_root)
        if not reader.has_job(job):
            reader.close()
            raise UnknownJobError(job)
        return cls(reader, job)

    def close(self) -> None:
        if self._owns_reader:
            self.reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups -----------------------------------------------------------------------------

    def get(self, input_id: str) -> PredictionRecord | None:
        """The latest record of one input, or None."""
        return self.get_many([input_id]).get(input_id)

    def get_many(self, ids: Iterable[str]) -> dict[str, PredictionRecord]:
        """{input_id: latest record} for the ids that have one (others are left out)."""
        wanted = list(dict.fromkeys(ids))

        def locate() -> list[Located]:
            found = self._ask(lambda ix: ix.latest_for(self.job, wanted), {})
            return [found[i] for i in wanted if i in found]

        return {r["input_id"]: r for r in self._resolve(locate)}

    def versions(self, input_id: str) -> list[PredictionRecord]:
        """Every cached version of one input, oldest first."""
        return self._resolve(lambda: self._ask(lambda ix: ix.versions(self.job, input_id), []))

    def by_key(self, key: str) -> PredictionRecord | None:
        """A record of this job with this content address (a success if there is one,
        else the newest)."""
        return self.reader.by_key(key, self.job)

    def search(self, *, contains: str | None = None, failed: bool | None = None,
               model: str | None = None, all_versions: bool = False, limit: int = 50,
               offset: int = 0) -> list[PredictionRecord]:
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
            return self._ask(lambda ix: ix.count(self.job, failed=failed,
                                                 all_versions=all_versions), 0)
        return len(self._scan(contains, failed, model, all_versions))

    def page(self, *, contains: str | None = None, failed: bool | None = None,
             model: str | None = None, all_versions: bool = False, limit: int = 50,
             offset: int = 0, total: bool = True) -> tuple[list[PredictionRecord], int | None]:
        """`search` and `count` at once: one pass over the shards when filtering on text."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        if contains is None and model is None:
            found = self._resolve(lambda: self._ask(lambda ix: ix.listing(
                self.job, failed=failed, all_versions=all_versions, limit=limit, offset=offset), []))
            n = self.count(failed=failed, all_versions=all_versions) if total else None
            return found, n
        hits: list[Located] = []

        def locate() -> list[Located]:
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

    def _ask(self, ask: Callable[[Index], _T], empty: _T) -> _T:
        return self.reader.query(ask, empty)

    def _resolve(self, locate: Callable[[], list[Located]]) -> list[PredictionRecord]:
        """Locate in the index, then read the shards; if a shard vanished or changed in
        between (a gc), locate again once: the index then points at the survivors."""
        for attempt in range(2):
            try:
                return self.reader.read(self.job, locate())
            except (FileNotFoundError, ShardMismatch) as exc:
                if attempt:
                    raise ShardUnavailableError.of(self.job, exc) from exc
        raise AssertionError("unreachable")

    def _scan(self, contains: str | None, failed: bool | None, model: str | None,
              all_versions: bool) -> list[Located]:
        """Filters on Parquet columns: scan the job's shards (only the filtered columns),
        then keep the matches the index still lists (a shard also holds superseded rows),
        with the index's failure flag applied, in input id order."""
        candidates: set[tuple[str, str, int]] = set()
        for name in self._ask(lambda ix: ix.shards(self.job), {}):
            try:
                rows = matching_rows(self.reader.root / self.job / name, contains=contains,
                                     model=model)
            except FileNotFoundError:
                continue  # collected since the index was read: its rows are not current
            candidates.update((input_id, name, row) for input_id, row in rows)
        ids = sorted({c[0] for c in candidates})
        listed = self._ask(lambda ix: ix.current(self.job, ids, all_versions=all_versions), [])
        out = [loc for loc in listed if (loc.input_id, loc.shard, loc.row) in candidates
               and (failed is None or loc.failed == failed)]
        out.sort(key=lambda h: (h.input_id, h.shard, h.row))
        return out


def list_jobs(predictions_root: Path) -> list[JobInfo]:
    """Every job with cached predictions, with its size."""
    with CacheReader(predictions_root) as reader:
        return reader.jobs()
