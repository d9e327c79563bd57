"""The cache as a run writes it: shards written whole, then indexed; recovery after
a crash; the lookups a plan makes.

A shard is indexed only once it is on disk under its name (batch.cache.shards),
so the index never names a file that is not there. The files are the truth:
a shard that landed but was not indexed (a crash between rename and commit)
is indexed on the next run's recovery, once it decodes whole and its rows name the
job whose directory holds it (a shard copied in from another job is set aside as
`.<name>.foreign`, never indexed). Recovery also
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
from collections.abc import Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import pyarrow.parquet as pq

from batch.cache import landed, shards
from batch.cache.errors import DiskFullError, ShardDamagedError
from batch.cache.index import CandidateInfo, Index, Located
from batch.cache.rowcheck import check_records, mismatch
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


@dataclass(frozen=True)
class SetAside:
    """A shard that landed unindexed and was set aside instead of indexed."""

    job: str
    shard: str
    kind: str  # "damaged" or "foreign"
    why: str
    superseded: int  # latest records it took: inputs whose latest version it held
    kept_as: str | None  # its name once set aside (None in a dry run)


class PredictionStore:
    """The index (read-write) and the shard directories under one home's `predictions/`."""

    def __init__(self, root: Path, index: Index | None = None) -> None:
        self.root = root
        self.index = index if index is not None else Index.open(root)
        self.scratch = index is not None  # a dry run's: never written to disk
        self._sound: dict[tuple[str, str], str | None] = {}  # (job, shard): why not, or None
        self.set_aside: list[SetAside] = []  # landed shards recovery did not index
        self._identity: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (job, shard): its rows'

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
        changed back), in a sound shard at a row that is the record (to copy, as
        `generated_anywhere`'s)."""
        found = self.index.versions_for(job, candidate, pairs)
        return {pair: loc for pair, loc in found.items()
                if self.sound(loc.job, loc.shard) and self._holds(loc)}

    def generated_anywhere(self, keys: list[str]) -> dict[str, Located]:
        """One successful record per key, from any job, to copy instead of generating: in
        a shard whose bytes are those indexed (checked once per shard), at a row that is
        the record the index says (batch.cache.rowcheck), so that a copy never writes
        damage, or another row's answer, into a fresh shard with a fresh, valid checksum."""
        out: dict[str, Located] = {}
        for key, found in self.index.all_generated(keys).items():
            source = next((loc for loc in found if self.sound(loc.job, loc.shard)
                           and self._holds(loc)), None)
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

    def _holds(self, loc: Located) -> bool:
        """Whether the row `loc` points at is its record (a warning if not). The shard's
        identity columns are read once per shard."""
        held = self._identity.get((loc.job, loc.shard))
        if held is None:
            held = self._identity[(loc.job, loc.shard)] = shards.identities(
                self.job_dir(loc.job) / loc.shard)
        found = mismatch(loc, held[loc.row]) if 0 <= loc.row < len(held) else "no such row"
        if found is not None:
            log.warning("job %s: the index points input %s at row %d of %s, which holds %s: "
                        "it is generated again rather than copied; run `almanac cache verify "
                        "%s`, then `almanac cache repair %s`", loc.job, loc.input_id, loc.row,
                        loc.shard, found, loc.job, loc.job)
        return found is None

    def set_candidates(self, job: str, candidates: list[CandidateInfo]) -> None:
        """The job's current candidates, as this run names them."""
        self.index.set_candidates(job, candidates)

    def candidates(self, job: str) -> list[CandidateInfo]:
        return self.index.candidates(job)

    def read_rows(self, located: list[Located]) -> list[PredictionRecord]:
        """Full records for located rows, reading each shard once; each checked to be the
        record its `loc` names (RowMismatchError if not), so a copy never carries another
        row's answer."""
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
            except (OSError, IndexError) as exc:  # a page checksum; a row past the end
                raise ShardDamagedError.of(job, exc) from exc
            picked = table.to_pylist()
            for row, record in zip(wanted, picked, strict=True):
                found[(job, shard, row)] = cast(PredictionRecord, record)
        out = [found[(loc.job, loc.shard, loc.row)] for loc in located]
        check_records(located, out)
        return out

    def landed_counts(self, job: str, run_id: str) -> dict[str, int]:
        """What a run wrote, counted from its shards (for a run killed before it could
        count): rows generated (answers and the engine's refusals' tokens once per
        request), copied (a success an earlier shard already held) and failed."""
        names = self.index.run_shards(job, run_id)
        if not names:
            return {}
        rows: list[dict[str, Any]] = []
        for name in names:
            try:
                rows += pq.read_table(self.job_dir(job) / name, columns=[
                    "key", "error", "prompt_tokens", "output_tokens"], **shards.CHECKED).to_pylist()
            except (OSError, ValueError):  # damaged since: its rows are not counted
                continue
        first = names[0]
        earlier = self.index.all_generated(list({r["key"] for r in rows if r["error"] is None}))
        copied = {key for key, found in earlier.items()
                  if any(loc.job != job or loc.shard < first for loc in found)}
        counts = dict.fromkeys(("generated", "copied", "failed", "prompt_tokens",
                                "output_tokens"), 0)
        requests: set[str] = set()
        for r in rows:
            kind = "failed" if r["error"] is not None else \
                "copied" if r["key"] in copied else "generated"
            counts[kind] += 1
            if kind == "generated" and r["key"] not in requests:  # tokens once per request
                requests.add(r["key"])
                counts["prompt_tokens"] += r["prompt_tokens"] or 0
                counts["output_tokens"] += r["output_tokens"] or 0
        return counts

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

    def recover(self, job: str, *, whole: bool = False) -> dict[str, int]:
        """Call under the job's lock: drop temporaries a crash left, index shards that
        landed but were never indexed (oldest first; `whole`: each decoded whole first,
        as `cache repair` checks them), and drop from the index shards that are gone or
        truncated (set aside, kept). What it sets aside is listed in `set_aside`."""
        directory = self.job_dir(job)
        if not directory.exists():
            return {"removed_tmp": 0, "indexed": 0, "lost": len(self._drop_lost(job))}
        removed = 0
        for tmp in shards.temporaries(directory):
            tmp.unlink()
            removed += 1
        lost = len(self._drop_lost(job))
        return {"removed_tmp": removed, "indexed": self._index_landed(job, whole=whole),
                "lost": lost}

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

    def _index_landed(self, job: str, skip: Container[str] = (), whole: bool = False) -> int:
        """Index the shards that landed unindexed, oldest first; set aside those that are
        damaged (their inputs' earlier versions do not take their place: landed.py) or
        hold another job's rows."""
        indexed = 0
        for shard in shards.landed(self.job_dir(job), self.index.shards(job)):
            if shard.name in skip:
                continue
            try:
                if whole and (why := landed.undecodable(shard)) is not None:
                    raise ValueError(why)
                run_id, rows = shards.index_entries(shard, job)
            except shards.ForeignShard as exc:
                self._set_aside(job, shard, "foreign", str(exc))
                continue
            except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                pairs = landed.held(shard)
                superseded = self.index.supersede(job, shard.name, pairs)
                self._set_aside(job, shard, "damaged", str(exc), superseded)
                continue
            checked = shards.stat_signature(shard)
            self.index.add_shard(job, shard.name, run_id, rows, shard.stat().st_size,
                                 shards.file_sha256(shard), checked)
            indexed += 1
        return indexed

    def _set_aside(self, job: str, shard: Path, kind: str, why: str, superseded: int = 0) -> None:
        """A landed shard that must not be indexed, out of the dataset (a dry run moves
        nothing)."""
        kept = None
        if not self.scratch:
            suffix = shards.FOREIGN_SUFFIX if kind == "foreign" else shards.DAMAGED_SUFFIX
            kept = shards.set_aside(shard, suffix).name
        self.set_aside.append(SetAside(job, shard.name, kind, why, superseded, kept))
        log.warning("job %s: shard %s landed unindexed and is %s (%s): set aside as %s, not "
                    "indexed%s", job, shard.name, kind, why, kept,
                    f"; {superseded} inputs whose latest version it held are missing"
                    if superseded else "")


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
