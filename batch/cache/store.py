"""The cache as a run writes it: shards written whole, then indexed; recovery after
a crash; the lookups a plan makes.

A shard is indexed only once it is on disk under its name (batch.cache.shards),
so the index never names a file that is not there. The files are the truth:
a shard that landed but was not indexed (a crash between rename and commit)
is indexed on the next run's recovery, once it decodes whole. Recovery also
looks at every shard the job's index lists (a stat each, and its SHA-256 again
when the stat changed since it last matched): one that is gone, truncated or
written over leaves the index (the file set aside, as `almanac cache repair`
does), so the run generates what it held instead of reporting it cached.
(Bit rot that leaves the stat alone is for readers, which refuse it, and for
`cache verify` / `cache repair`.) A copy's source is checked against its SHA-256 first; a
damaged one is passed over, and the row generated if no intact copy exists.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from batch.cache import shards
from batch.cache.errors import DiskFullError, ShardDamagedError
from batch.cache.index import CandidateInfo, Index, Located
from batch.cache.schema import PredictionRecord

log = logging.getLogger("almanac.batch.cache")

__all__ = ["CandidateInfo", "Located", "PredictionStore", "ShardWriter"]


@dataclass(frozen=True)
class LandedShard:
    """A shard file in place (renamed, synced) that the index does not list yet."""

    job: str
    name: str
    run_id: str
    rows: list[tuple[str, str, bool, str]]  # (input_id, key, failed, candidate)
    size: int
    digest: str


class PredictionStore:
    """The index (read-write) and the shard directories under one home's `predictions/`."""

    def __init__(self, root: Path, index: Index | None = None) -> None:
        self.root = root
        self.index = index if index is not None else Index.open(root)
        self.scratch = index is not None  # a dry run's: never written to disk
        self._sound: dict[tuple[str, str], str | None] = {}  # (job, shard): why not, or None

    @classmethod
    def for_dry_run(cls, root: Path, job: str) -> PredictionStore:
        """A store to plan against that writes nothing, yet plans what a real run would:
        shards a crash left unindexed are indexed in a copy of the index in memory, as
        the real run's recovery would index them in the file."""
        directory = shards.job_directory(root, job)
        index = Index.open_scratch(root)
        listed = index.checked(job)
        lost = [n for n, (_, checked) in listed.items()
                if shards.stat_signature(directory / n) != checked]
        if lost or (directory.exists() and shards.landed(directory, listed)):
            index.close()
            index = Index.open_scratch(root, copy=True)
        store = cls(root, index)
        dropped = store._drop_lost(job)
        if directory.exists():  # a damaged file a real run would set aside is no landed shard
            store._index_landed(job, skip=dropped)
        return store

    def close(self) -> None:
        self.index.close()

    def job_dir(self, job: str) -> Path:
        return shards.job_directory(self.root, job)

    # -- fingerprints of local model directories -------------------------------------------

    def fingerprint_get(self, path: str, signature: str) -> str | None:
        return self.index.fingerprint_get(path, signature)

    def fingerprint_put(self, path: str, signature: str, digest: str) -> None:
        if not self.scratch:  # a dry run computes fingerprints but keeps none
            self.index.fingerprint_put(path, signature, digest)

    # -- planning lookups ---------------------------------------------------------------------

    def latest_for(self, job: str, candidate: str, input_ids: list[str]) -> dict[str, Located]:
        return self.index.latest_for(job, candidate, input_ids)

    def latest_keys(self, job: str, candidate: str) -> tuple[list[str], list[str], list[bool]]:
        return self.index.latest_keys(job, candidate)

    def versions_for(self, job: str, candidate: str,
                     pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Located]:
        """Earlier records of the same input and candidate with the same key (a prompt
        changed back)."""
        return self.index.versions_for(job, candidate, pairs)

    def generated_anywhere(self, keys: list[str]) -> dict[str, Located]:
        """One successful record per key, from any job, to copy instead of generating: in
        a shard whose bytes are those indexed (checked once per shard), so that a copy
        never writes damage into a fresh shard with a fresh, valid checksum."""
        out: dict[str, Located] = {}
        for key, found in self.index.all_generated(keys).items():
            source = next((loc for loc in found if self.sound(loc.job, loc.shard)), None)
            if source is not None:
                out[key] = source
        return out

    def sound(self, job: str, shard: str) -> bool:
        """Whether the shard's file has the size and SHA-256 indexed (a warning if not)."""
        if (job, shard) not in self._sound:
            why = shards.damage(self.job_dir(job) / shard, self.index.shard(job, shard))
            self._sound[(job, shard)] = why
            if why is not None:
                log.warning("job %s: shard %s is damaged (%s): its rows are generated again "
                            "rather than copied; run `almanac cache repair %s`", job, shard, why, job)
        return self._sound[(job, shard)] is None

    def repoint(self, job: str, candidate: str, located: Iterable[Located]) -> None:
        self.index.repoint(job, candidate, located)

    def set_candidates(self, job: str, candidates: list[CandidateInfo]) -> None:
        """The job's current candidates, as this run names them."""
        self.index.set_candidates(job, candidates)

    def candidates(self, job: str) -> list[CandidateInfo]:
        return self.index.candidates(job)

    def read_rows(self, located: list[Located]) -> list[PredictionRecord]:
        """Full records for located rows, reading each shard once."""
        by_shard: dict[tuple[str, str], list[int]] = {}
        for loc in located:
            by_shard.setdefault((loc.job, loc.shard), []).append(loc.row)
        found: dict[tuple[str, str, int], PredictionRecord] = {}
        for (job, shard), rows in by_shard.items():
            wanted = sorted(set(rows))
            if not self.sound(job, shard):
                raise ShardDamagedError.of(job, shards.ShardDamaged(f"{shard}: "
                                                                    f"{self._sound[(job, shard)]}"))
            try:
                table = shards.read_rows(self.job_dir(job) / shard, wanted)
            except OSError as exc:  # a page checksum: damaged since it was checked
                raise ShardDamagedError.of(job, exc) from exc
            picked = table.to_pylist()
            for row, record in zip(wanted, picked, strict=True):
                found[(job, shard, row)] = cast(PredictionRecord, record)
        return [found[(loc.job, loc.shard, loc.row)] for loc in located]

    # -- writing ------------------------------------------------------------------------------

    def land_shard(self, job: str, run_id: str, seq: int, records: list[Mapping[str, Any]],
                   row_group_rows: int, compression: str = "lz4") -> LandedShard:
        """Write one immutable shard (temporary, fsync, rename), not yet indexed. A record
        without a candidate is its model's (as every record was before candidates)."""
        name = shards.shard_name(run_id, seq)
        records = [r if r.get("candidate") else {**r, "candidate": r["model"]} for r in records]
        size, digest = shards.write_shard(self.job_dir(job), name, records, row_group_rows,
                                          compression)
        rows = [(r["input_id"], r["key"], r["error"] is not None, r["candidate"]) for r in records]
        return LandedShard(job, name, run_id, rows, size, digest)

    def index_shard(self, landed: LandedShard) -> None:
        """Index a landed shard. Should this fail, the file stays: the next run's
        recovery indexes it, as it does a shard a crash left unindexed."""
        self.index.add_shard(landed.job, landed.name, landed.run_id, landed.rows, landed.size,
                             landed.digest,
                             shards.stat_signature(self.job_dir(landed.job) / landed.name))

    def recover(self, job: str) -> dict[str, int]:
        """Call under the job's lock: drop temporaries a crash left, index shards that
        landed but were never indexed (oldest first, so `latest` ends up newest), and
        drop from the index shards that are gone or truncated (set aside, kept)."""
        directory = self.job_dir(job)
        if not directory.exists():
            return {"removed_tmp": 0, "indexed": 0, "lost": len(self._drop_lost(job))}
        removed = 0
        for tmp in shards.temporaries(directory):
            tmp.unlink()
            removed += 1
        lost = len(self._drop_lost(job))
        return {"removed_tmp": removed, "indexed": self._index_landed(job), "lost": lost}

    def _drop_lost(self, job: str) -> set[str]:
        """Shards the index lists whose file is gone, truncated or written over: their rows
        leave the index (a damaged file is set aside), so this run generates them again."""
        lost = {}
        for name, (entry, checked) in self.index.checked(job).items():
            path = self.job_dir(job) / name
            now = shards.stat_signature(path)
            if now is None:
                lost[name] = "its file is gone"
                continue
            if now == checked:  # as it was when its SHA-256 last matched
                continue
            why = shards.damage(path, entry)
            if why is not None:
                lost[name] = why
            elif not self.scratch:
                self.index.set_checked(job, name, now)  # moved or touched, still whole
        if lost:
            with self.index.transaction():
                self.index.forget_shards(job, list(lost))
                for name in lost:
                    if not self.scratch and (self.job_dir(job) / name).exists():
                        shards.set_aside(self.job_dir(job) / name)
        for name, why in lost.items():
            log.warning("job %s: shard %s is damaged or lost (%s): its rows are generated "
                        "again (a damaged file is kept as .%s%s)", job, name, why, name,
                        shards.DAMAGED_SUFFIX)
        return set(lost)

    def _index_landed(self, job: str, skip: Container[str] = ()) -> int:
        indexed = 0
        for shard in shards.landed(self.job_dir(job), self.index.shards(job)):
            if shard.name in skip:
                continue
            try:
                run_id, rows = shards.index_entries(shard)
            except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                if not self.scratch:
                    kept = shards.set_aside(shard)
                    log.warning("job %s: shard %s landed unindexed and does not decode (%s): "
                                "set aside as %s", job, shard.name, exc, kept.name)
                continue
            checked = shards.stat_signature(shard)
            self.index.add_shard(job, shard.name, run_id, rows, shard.stat().st_size,
                                 shards.file_sha256(shard), checked)
            indexed += 1
        return indexed


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
        landed = self.store.land_shard(self.job, self.run_id, len(self.shards), self.buffer,
                                       self.row_group_rows, self.compression)
        # On disk now: were indexing to fail, writing these rows again would put them in
        # the dataset twice; recovery indexes the landed file instead.
        self.shards.append(landed.name)
        self.rows_written += len(self.buffer)
        self.buffer = []
        self.store.index_shard(landed)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # On an exception the buffered rows are still good results: keep them (unless
        # there is no room for them: the next run makes them again).
        if not isinstance(exc, DiskFullError):
            self.flush()
