"""Collecting the prediction cache (`almanac cache gc`).

gc removes what no lookup of the latest predictions can reach:

- shards none of whose rows is the latest version of its input by one of the
  job's current candidates (superseded by later runs, made by a candidate the
  job no longer names, or never referenced). Their `records` rows go with them: the
  old versions leave `query --all`, and a prompt changed back to an old one
  is generated again instead of reused. `keep_versions` keeps any shard that
  `records` still references, so it collects only shards nothing points at;
- temporary files of writes a crash interrupted.

Shards that landed but were never indexed (a crash between rename and index
commit) hold good results: gc indexes them, as the job's next run would.

Safety. gc holds every job's lock, not only the collected job's: a run of
another job may plan to copy a record out of any job's shards, and it
would fail if that shard vanished between its plan and its read. If any
run is active, gc changes nothing and raises JobLockedError (exit 75: try
later). A reader (the Python API, the HTTP server) that located a row just
before the collection finds the file gone and re-reads the index once; a
reader that already has the shard open keeps reading it (POSIX unlink).

Order of a collection, inside one write transaction: delete the index rows,
rename each file to a hidden `.<name>.gc`, commit, then unlink. A committed
index therefore never names a file that is gone, and no moment leaves a
collected shard under its `.parquet` name without index rows (the next run's
recovery would index it again and resurrect old versions as latest). If gc
dies before the commit, the index still names the shard and the next gc
renames the file back; if it dies after, the next gc unlinks the leftover and
reports it among the shards it removed.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from batch.cache import shards
from batch.cache.index import Index
from batch.cache.lock import JobLock
from batch.cache.store import PredictionStore


@dataclass
class Collected:
    shard: str
    rows: int
    bytes: int


@dataclass
class JobGc:
    job: str
    removed_tmp: int = 0
    indexed: int = 0  # shards that landed without being indexed
    repaired: int = 0  # leftovers of an interrupted gc (those it had committed: in `collected`)
    collected: list[Collected] = field(default_factory=list)


@dataclass
class GcReport:
    dry_run: bool
    jobs: list[JobGc] = field(default_factory=list)

    @property
    def shards_removed(self) -> int:
        return sum(len(j.collected) for j in self.jobs)

    @property
    def bytes_freed(self) -> int:
        return sum(c.bytes for j in self.jobs for c in j.collected)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "shards_removed": self.shards_removed,
                "bytes_freed": self.bytes_freed}


def gc(root: Path, locks: Path, *, job: str | None = None, dry_run: bool = False,
       keep_versions: bool = False) -> GcReport:
    """Collects the cache under `root` (a home's `predictions/`), or one job of it.
    Raises JobLockedError, having changed nothing, while any job is running."""
    index = Index.open_readonly(root)
    try:
        targets = shards.select_jobs(root, index, job)
        everyone = shards.known_jobs(root, index)
    finally:
        if index is not None:
            index.close()
    if locks.exists():
        everyone |= {p.stem for p in locks.glob("*.lock")}
    report = GcReport(dry_run=dry_run)
    with ExitStack() as held:
        if not dry_run:
            for name in sorted(everyone):
                held.enter_context(JobLock(locks, name))
        if not targets:
            return report
        store = PredictionStore(root)
        held.callback(store.close)
        for name in targets:
            report.jobs.append(_gc_job(store, name, dry_run, keep_versions))
    return report


def _gc_job(store: PredictionStore, job: str, dry_run: bool, keep_versions: bool) -> JobGc:
    out = JobGc(job)
    index = store.index
    directory = store.job_dir(job)
    indexed = index.shards(job)
    if directory.exists():
        for left in shards.collected(directory):
            out.repaired += 1
            original = directory / left.name[1 : -len(".gc")]
            if original.name in indexed:  # the collection never committed: undo it
                if not dry_run:
                    os.rename(left, original)
                continue
            # Committed, not yet deleted: finishing it removes a shard, which is reported.
            out.collected.append(Collected(original.name, _rows(left), left.stat().st_size))
            if not dry_run:
                left.unlink()
        if dry_run:
            out.removed_tmp = len(shards.temporaries(directory))
            out.indexed = len(shards.landed(directory, indexed))
        else:
            recovered = store.recover(job)
            out.removed_tmp, out.indexed = recovered["removed_tmp"], recovered["indexed"]
            if out.indexed:
                indexed = index.shards(job)
    needed = index.shards_in_use(job, any_version=False)
    if keep_versions:
        needed |= index.shards_in_use(job, any_version=True)
    doomed = sorted(set(indexed) - needed)
    out.collected += [Collected(n, indexed[n].rows, indexed[n].bytes) for n in doomed]
    if doomed and not dry_run:
        _collect(index, directory, job, doomed)
    return out


def _rows(path: Path) -> int:
    """A shard's rows by its footer (0 when it cannot be read: it is deleted anyway)."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):
        return 0


def _collect(index: Index, directory: Path, job: str, names: list[str]) -> None:
    def hide(name: str) -> tuple[Path, Path] | None:
        hidden = directory / f".{name}.gc"
        try:
            os.rename(directory / name, hidden)
        except FileNotFoundError:
            return None  # already gone (verify reports that): dropping its rows heals the index
        return hidden, directory / name

    for hidden, _ in shards.forget_moving(index, job, names, hide):
        hidden.unlink()
    shards.fsync_path(directory)
