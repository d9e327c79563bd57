"""Reading cached predictions: `CacheReader` (the index and the open shards under one
`predictions/` directory) and `Predictions` (one job's view). Callers outside the
cache reach them through the one door for reading, `batch.query` (which shows their
use); the CLI, the HTTP server, the TUI and `almanac.api` import only that.

A job with several candidates (models, or a model with an adapter) answers
listings with every candidate's rows (input id, then candidate order) and single
lookups only for one candidate, chosen by `candidate`, `model` or `adapter`
(batch.cache.choice: `CandidateRequiredError` or `UnknownCandidateError`, usage
errors, otherwise); a job with one candidate answers as if there were no candidates
at all.

A lookup asks the index once (the job, its candidates and the latest record's shard
and row of (job, input_id, candidate), under one hold of the connection) and reads
one Parquet row group. A view of a job (`CacheReader.job`) is only a name until its
first question, which also finds whether the job has anything cached
(`UnknownJobError`, a NotFoundError: exit 1, HTTP 404). The index connection
and the opened shards stay open between lookups: opening a shard checks its SHA-256
and reads its footer, which costs more than the row itself; every page read is
checked against its checksum, and a shard whose bytes are not those indexed is
refused (`ShardDamagedError`), never served. Readers never take a write lock, so
they never block a run; a run's shards become visible when its index
transaction commits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Self, TypeVar, cast

import numpy as np
import pyarrow as pa

from batch.cache.choice import choose, select
from batch.cache.errors import ShardDamagedError, ShardUnavailableError, UnknownJobError
from batch.cache.index import Index, JobInfo, Located
from batch.cache.index_rows import CandidateSummary
from batch.cache.schema import PredictionRecord
from batch.cache.shards import Fetched, OpenShard, ShardDamaged, ShardMismatch
from batch.cache.textsearch import CurrentText, OutputSearch
from schemas import is_job_name

OPEN_SHARDS = 128  # shards kept open (one file descriptor each)
PARALLEL_ROWS = 256  # rows read at once past which shards are decoded two at a time
_T = TypeVar("_T")
_NO_INDEX = object()  # what a question gets before any run has created the index


def unavailable(job: str, exc: Exception) -> ShardUnavailableError:
    """What a reader says when a shard still fails after the index was read again."""
    if isinstance(exc, ShardDamaged):
        return ShardDamagedError.of(job, exc)
    return ShardUnavailableError.of(job, exc)


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
        self.text = OutputSearch()

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()
            self.text.clear()
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
                self.text.clear()  # what it kept was of another connection's versions
            if self._index is None:
                return empty
            return ask(self._index)

    def has_job(self, job: str) -> bool:
        return is_job_name(job) and self.query(lambda ix: ix.has_job(job), False)

    def jobs(self) -> list[JobInfo]:
        return self.query(Index.jobs, [])

    def by_key(self, key: str, job: str | None = None) -> PredictionRecord | None:
        """A record with this content address (or its beginning, 8 characters or more,
        that no other key has: AmbiguousKeyError if one does), in `job` or in any job: a
        success if there is one, else the newest."""
        for attempt in range(2):
            found = self.query(lambda ix: ix.by_key(key, job), None)
            if found is None:
                return None
            try:
                return self.read(found.job, [found])[0]
            except (FileNotFoundError, ShardMismatch) as exc:
                if attempt:
                    raise unavailable(found.job, exc) from exc
        raise AssertionError("unreachable")

    def job(self, job: str) -> Predictions:
        """A view of `job`; its first question raises UnknownJobError if the cache holds
        nothing for it (asked together with that question: no round trip of its own)."""
        if not is_job_name(job):
            raise UnknownJobError(job)
        return Predictions(self, job, owns_reader=False, known=False)

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
            shard = OpenShard(path, listed.rows, listed.bytes, listed.sha256)
        except FileNotFoundError:
            raise  # gone (a gc): the caller re-reads the index
        except (OSError, pa.ArrowException) as exc:
            raise ShardDamaged(f"{name}: unreadable: {exc}") from exc
        self._shards[path] = shard
        if len(self._shards) > self._open_shards:
            _, evicted = self._shards.popitem(last=False)
            evicted.close()
        return shard

    def _forget(self, job: str, name: str) -> None:
        shard = self._shards.pop(self.root / job / name, None)
        if shard is not None:
            shard.close()

    def current_text(self, job: str, labels: list[str], all_versions: bool) -> CurrentText:
        """The current rows of these candidates with their outputs, kept while the index
        stays as it is (batch.cache.textsearch)."""
        with self._lock:
            version = self.query(lambda ix: ix.data_version(), 0)
            return self.text.current(
                (job, tuple(labels), all_versions), version,
                lambda: self.query(lambda ix: ix.current_rows(job, labels,
                                                              all_versions=all_versions),
                                   ({}, np.empty(0, dtype=np.int64))),
                lambda name: self._open(job, name))

    def read(self, job: str, locs: list[Located]) -> list[PredictionRecord]:
        """The records at `locs`, in order, each checked to be its `loc`'s (else
        RowMismatchError). FileNotFoundError or ShardMismatch: a shard is gone or not the
        one the index describes (the caller re-reads the index once: a gc may have moved it)."""
        by_shard: dict[str, list[int]] = {}
        for i, loc in enumerate(locs):
            by_shard.setdefault(loc.shard, []).append(i)
        out: list[PredictionRecord | None] = [None] * len(locs)
        opened: dict[str, OpenShard] = {}
        broken: list[str] = []

        def fetch(name: str) -> Fetched:
            try:
                return opened[name].fetch([locs[i].row for i in by_shard[name]])
            except (OSError, pa.ArrowException) as exc:  # a page checksum, a decoder
                broken.append(name)
                raise ShardDamaged(f"{name}: unreadable: {exc}") from exc

        # Many rows from many shards: two shards decode at once (Arrow releases the GIL)
        # while this thread makes records of those already decoded.
        many = len(by_shard) > 1 and len(locs) >= PARALLEL_ROWS
        with self._lock, ThreadPoolExecutor(2) if many else nullcontext() as pool:
            # Opened a cache's worth at a time, so none is closed before it is read.
            for start in range(0, len(by_shard), self._open_shards):
                chunk = list(by_shard)[start:start + self._open_shards]
                opened = {name: self._open(job, name) for name in chunk}
                for name, shard in opened.items():
                    if any(not 0 <= locs[i].row < shard.num_rows for i in by_shard[name]):
                        raise ShardMismatch(f"{name} has {shard.num_rows} rows; the index points past them")
                try:
                    done = pool.map(fetch, chunk) if pool is not None else map(fetch, chunk)
                    for name, fetched in zip(chunk, done, strict=True):
                        picked = fetched.records([locs[i] for i in by_shard[name]])
                        for i, record in zip(by_shard[name], picked, strict=True):
                            out[i] = record
                except ShardDamaged:
                    for name in broken:
                        self._forget(job, name)
                    raise
        return cast(list[PredictionRecord], out)


class Predictions:
    """One job's cached predictions. Open with `Predictions.at(predictions_root, job)`
    (the front door's `almanac.api.Predictions.open(home, job)` finds the home); close
    it (or use `with`) to release the index connection and open shards."""

    def __init__(self, reader: CacheReader, job: str, *, owns_reader: bool = True,
                 known: bool = True) -> None:
        self.reader = reader
        self.job = job
        self._owns_reader = owns_reader
        self._known = known  # the job is known to have predictions: no need to ask

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

    # -- candidates --------------------------------------------------------------------------

    def candidates(self) -> list[CandidateSummary]:
        """The job's current candidates in their order, with their latest records and
        failures."""
        def ask(ix: Index) -> list[CandidateSummary]:
            counts = ix.candidate_counts(self.job)
            return [CandidateSummary(c.label, c.model, c.revision, c.adapter, c.adapter_revision,
                                     c.ordinal, *counts.get(c.label, (0, 0)))
                    for c in ix.candidates(self.job)]

        return self._ask(ask, [])

    def select(self, candidate: str | None = None, model: str | None = None,
               adapter: str | None = None) -> list[str]:
        """The labels of the current candidates that match every criterion given (all of
        them without any). Raises UnknownCandidateError for a label the job lacks; a
        model or adapter no candidate has selects none."""
        return self._ask(lambda ix: select(self.job, ix.candidates(self.job), candidate,
                                           model, adapter), [])

    # -- lookups -----------------------------------------------------------------------------

    def get(self, input_id: str, candidate: str | None = None, model: str | None = None,
            adapter: str | None = None) -> PredictionRecord | None:
        """The latest record of one input (of the candidate chosen), or None."""
        return self.get_many([input_id], candidate, model, adapter).get(input_id)

    def get_many(self, ids: Iterable[str], candidate: str | None = None,
                 model: str | None = None, adapter: str | None = None
                 ) -> dict[str, PredictionRecord]:
        """{input_id: latest record} for the ids that have one (others are left out). A
        job with several candidates needs one chosen by `candidate`, `model` or `adapter`
        (batch.cache.choice)."""
        wanted = list(dict.fromkeys(ids))

        def locate() -> list[Located]:
            def ask(ix: Index) -> list[Located]:
                label = choose(self.job, ix.candidates(self.job), candidate, model, adapter)
                found = ix.latest_for(self.job, label, wanted) if label is not None else {}
                return [found[i] for i in wanted if i in found]

            return self._ask(ask, [])

        return {r["input_id"]: r for r in self._resolve(locate)}

    def versions(self, input_id: str, candidate: str | None = None, model: str | None = None,
                 adapter: str | None = None) -> list[PredictionRecord]:
        """Every cached version of one input (of the candidate chosen), oldest first."""
        def ask(ix: Index) -> list[Located]:
            label = choose(self.job, ix.candidates(self.job), candidate, model, adapter)
            return ix.versions(self.job, input_id, [label]) if label is not None else []

        return self._resolve(lambda: self._ask(ask, []))

    def by_key(self, key: str) -> PredictionRecord | None:
        """A record of this job with this content address (a success if there is one,
        else the newest)."""
        return self.reader.by_key(key, self.job)

    def search(self, *, contains: str | None = None, failed: bool | None = None,
               candidate: str | None = None, model: str | None = None,
               adapter: str | None = None, all_versions: bool = False, limit: int = 50,
               offset: int = 0) -> list[PredictionRecord]:
        """Records in input id order, then candidate order. `contains`: a case-insensitive
        substring of the output; `failed`: True only failures, False only successes;
        `candidate`, `model`, `adapter`: only the current candidates with this label,
        model reference or adapter reference (without them: every current candidate);
        `all_versions`: every version, not just the latest of each input. Filters on
        candidates and `failed` page through the index; `contains` searches the output
        columns this reader keeps (batch.cache.textsearch: the first search of a job
        reads them, about a second per million rows; later ones take milliseconds)."""
        return self.page(contains=contains, failed=failed, candidate=candidate, model=model,
                         adapter=adapter, all_versions=all_versions, limit=limit,
                         offset=offset, total=False)[0]

    def count(self, *, contains: str | None = None, failed: bool | None = None,
              candidate: str | None = None, model: str | None = None,
              adapter: str | None = None, all_versions: bool = False) -> int:
        """How many records `search` with the same filters pages through."""
        labels = self.select(candidate, model, adapter)
        if contains is None:
            return self._ask(lambda ix: ix.count(self.job, labels, failed=failed,
                                                 all_versions=all_versions), 0)
        return self.page(contains=contains, failed=failed, candidate=candidate, model=model,
                         adapter=adapter, all_versions=all_versions, limit=0)[1] or 0

    def page(self, *, contains: str | None = None, failed: bool | None = None,
             candidate: str | None = None, model: str | None = None,
             adapter: str | None = None, all_versions: bool = False, limit: int = 50,
             offset: int = 0, total: bool = True) -> tuple[list[PredictionRecord], int | None]:
        """`search` and `count` at once: one pass over the shards when filtering on text."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        labels = self.select(candidate, model, adapter)
        if contains is None:
            found = self._resolve(lambda: self._ask(lambda ix: ix.listing(
                self.job, labels, failed=failed, all_versions=all_versions, limit=limit,
                offset=offset), []))
            n = self._ask(lambda ix: ix.count(self.job, labels, failed=failed,
                                              all_versions=all_versions), 0) if total else None
            return found, n
        hits: list[int] = []

        def locate() -> list[Located]:
            """The page's matches as the index lists them now (a match a run superseded
            since the search is left out)."""
            current = self.reader.current_text(self.job, labels, all_versions)
            ranks = current.matching(contains, failed, None if total else offset + limit)
            hits[:] = [len(ranks)]
            wanted = current.located(ranks[offset : offset + limit])
            ids = sorted({input_id for _, _, input_id in wanted})
            listed = {(loc.shard, loc.row): loc for loc in self._ask(
                lambda ix: ix.current(self.job, ids, labels, all_versions=all_versions), [])}
            return [listed[(shard, row)] for shard, row, _ in wanted if (shard, row) in listed]

        found = self._resolve(locate)
        return found, hits[0] if total else None

    def info(self) -> JobInfo:
        for info in self.reader.jobs():
            if info.job == self.job:
                return info
        raise UnknownJobError(self.job)

    # -- internals ---------------------------------------------------------------------------

    def _ask(self, ask: Callable[[Index], _T], empty: _T) -> _T:
        """`ask(index)`; a view not yet known to hold anything also asks whether the job
        does, in the same hold of the index (UnknownJobError if not, or if there is no
        index yet)."""
        if self._known:
            return self.reader.query(ask, empty)

        def checked(ix: Index) -> _T:
            if not ix.has_job(self.job):
                raise UnknownJobError(self.job)
            answer = ask(ix)
            self._known = True
            return answer

        answer = self.reader.query(checked, _NO_INDEX)
        if answer is _NO_INDEX:
            raise UnknownJobError(self.job)
        return cast(_T, answer)

    def _resolve(self, locate: Callable[[], list[Located]]) -> list[PredictionRecord]:
        """Locate in the index, then read the shards; if a shard vanished or changed in
        between (a gc), locate again once: the index then points at the survivors."""
        for attempt in range(2):
            try:
                return self.reader.read(self.job, locate())
            except (FileNotFoundError, ShardMismatch) as exc:
                if attempt:
                    raise unavailable(self.job, exc) from exc
        raise AssertionError("unreachable")

