"""Putting the cache right after damage or a crash (`almanac cache repair`).

The files are the truth; repair makes the index say only what they hold, so
that nothing damaged is ever served and the next run of a job generates
exactly what was lost, each input once:

- a shard whose file is gone leaves the index;
- a shard whose rows name another job than the directory it sits in (copied or moved
  there by hand) is renamed to `.<name>.foreign` and leaves the index, or is never
  indexed;
- a damaged shard (its size, SHA-256, a page checksum, its schema or its row
  count differ from what was indexed, or it does not decode) is renamed to
  `.<name>.damaged` beside the others (kept as evidence, never deleted; no
  reader, dataset or recovery looks at it) and leaves the index;
- the inputs whose latest record such a shard held then have none: the job's
  next run plans them as missing, and generates each (or copies it from an
  intact record with the same key);
- a crash's leftovers: temporary files are removed; shards that landed but
  were never indexed are decoded whole and indexed, or set aside if damaged;
- index entries that contradict intact files (rows that do not match,
  records naming a shard the index does not list, latest entries naming no
  record) are rebuilt from the files, keeping every latest choice that still
  names a record the files hold.
- inputs answering with a version older than the one a damaged shard set aside held
  (an index rebuilt from the files without it) are made missing: an earlier version
  never answers in place of a later one that was lost;
- an index.db that is not a readable database is set aside as
  `.index.db.damaged` and a new one is built from the shards (each decoded
  whole); the jobs' next runs name their candidates again.

Like gc, repair holds every job's lock: a run of another job may plan to copy
a record out of the shard being set aside. While any run is active it changes
nothing and raises JobLockedError (exit 75). Each step is one index
transaction whose files move before it commits (and move back if it fails),
so a crash of repair itself leaves at worst shards on disk the index does not
list, which the next run (or repair) indexes again.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batch.cache import shards
from batch.cache.errors import IndexUnavailableError
from batch.cache.index import INDEX_FILE, Index, Located
from batch.cache.landed import held
from batch.cache.lock import JobLock
from batch.cache.store import PredictionStore
from batch.cache.verify import Finding, kept_name, rolled_back, verify

# What verify finds about one shard's file, and what it finds about the index.
MISSING = "missing"
ROLLED_BACK = "rolled-back"
FOREIGN = "foreign"  # another job's rows: set aside as .NAME.foreign, indexed or not
FILE_DAMAGE = frozenset({"size", "checksum", "unreadable", "schema", FOREIGN})
INDEX_DAMAGE = frozenset({"rows", "index-mismatch", "orphan-records", "latest-mismatch"})


@dataclass
class Repaired:
    """One shard whose rows left the index."""

    job: str
    shard: str
    problem: str  # "missing", "damaged", "damaged-unindexed" (landed after a crash), "foreign"
    detail: str
    records: int  # index records dropped (every version the shard held)
    inputs: int  # latest records dropped: what the job's next run generates again
    kept_as: str | None  # the damaged file's new name in the job's directory


@dataclass
class RepairReport:
    dry_run: bool
    jobs: list[str] = field(default_factory=list)
    shards: list[Repaired] = field(default_factory=list)
    removed_tmp: int = 0
    indexed: int = 0  # shards that landed unindexed, checked and indexed
    rebuilt: list[str] = field(default_factory=list)  # jobs whose entries were rebuilt from files
    # inputs made missing: their latest version was in a damaged shard set aside, and an
    # older one had taken its place (an index rebuilt from the files)
    rolled_back: int = 0
    index_damaged: str | None = None  # why index.db itself could not be used
    index_kept_as: str | None = None  # its name once set aside (a new one rebuilt from the shards)

    @property
    def inputs(self) -> int:
        return sum(r.inputs for r in self.shards) + self.rolled_back

    @property
    def changed(self) -> bool:
        return bool(self.shards or self.removed_tmp or self.indexed or self.rebuilt
                    or self.index_kept_as or self.rolled_back)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "inputs": self.inputs, "changed": self.changed}


def repair(root: Path, locks: Path, *, job: str | None = None, dry_run: bool = False) -> RepairReport:
    """Repairs the cache under `root` (a home's `predictions/`), or one job of it.
    Raises JobLockedError, having changed nothing, while any job is running."""
    try:
        index = Index.open_readonly(root)
    except IndexUnavailableError as exc:
        if not exc.damaged:
            raise
        index, broken = None, exc  # set aside under the locks, then rebuilt from the shards
    else:
        broken = None
    try:
        targets = shards.select_jobs(root, index, job)
        everyone = shards.known_jobs(root, index)
    finally:
        if index is not None:
            index.close()
    if locks.exists():
        everyone |= {p.stem for p in locks.glob("*.lock")}
    report = RepairReport(dry_run=dry_run, jobs=targets)
    with ExitStack() as held:
        if not dry_run:
            for name in sorted(everyone):
                held.enter_context(JobLock(locks, name))
        if broken is not None:
            report.index_damaged = str(broken)
            if dry_run:
                return report
            report.index_kept_as = _set_index_aside(root)
            targets = report.jobs = shards.select_jobs(root, None, job)
        if not targets:
            return report
        # Under the locks no run or gc moves anything: what verify finds stays true.
        try:
            found = verify(root, job)
        except IndexUnavailableError as exc:  # damage deeper in the file than its header
            if not exc.damaged or report.index_kept_as is not None:
                raise
            report.index_damaged = str(exc)
            if dry_run:
                return report
            report.index_kept_as = _set_index_aside(root)
            found = verify(root, job)
        if dry_run:
            _plan_only(root, targets, found.problems, report)
            return report
        store = PredictionStore(root)
        held.callback(store.close)
        for name in targets:
            _repair_job(store, name, [f for f in found.problems if f.job == name], report)
    return report


def _set_index_aside(root: Path) -> str:
    """Rename a damaged index.db (and its WAL files, which a new one must not replay) to
    `.index.db.damaged…`; the next open makes an empty one, recovery fills it."""
    kept = shards.set_aside(root / INDEX_FILE)
    for suffix in ("-wal", "-shm"):
        extra = root / f"{INDEX_FILE}{suffix}"
        if extra.exists():
            os.rename(extra, root / f"{kept.name}{suffix}")
    return kept.name


def _by_shard(problems: list[Finding]) -> tuple[dict[str, Finding], dict[str, Finding], bool]:
    """The job's missing shards and damaged ones (each with its first finding), and
    whether the index contradicts intact files anywhere."""
    missing: dict[str, Finding] = {}
    damaged: dict[str, Finding] = {}
    for f in problems:
        if f.shard is None:
            continue
        if f.kind == MISSING:
            missing[f.shard] = f
        elif f.kind in FILE_DAMAGE:
            damaged.setdefault(f.shard, f)
    lost = missing.keys() | damaged.keys()
    contradicted = any(f.kind in INDEX_DAMAGE and f.shard not in lost for f in problems)
    return missing, damaged, contradicted


def _plan_only(root: Path, targets: list[str], problems: list[Finding], report: RepairReport) -> None:
    index = Index.open_readonly(root)
    try:
        for job in targets:
            own = [f for f in problems if f.job == job]
            missing, damaged, contradicted = _by_shard(own)
            latest, records = _counts(index, job)
            for shard, f in sorted({**missing, **damaged}.items()):
                report.shards.append(Repaired(
                    job, shard, _problem(shard, missing, damaged), f.detail,
                    records.get(shard, 0), latest.get(shard, 0), None))
            report.indexed += sum(1 for f in own if f.kind == "unindexed")
            if index is not None:
                report.rolled_back += sum(len(rolled_back(index, job, root / job / f.shard))
                                          for f in own if f.kind == ROLLED_BACK)
            if contradicted:
                report.rebuilt.append(job)
            directory = shards.job_directory(root, job)  # a file in its place: refused
            if directory.exists():
                report.removed_tmp += len(shards.temporaries(directory))
    finally:
        if index is not None:
            index.close()


def _counts(index: Index | None, job: str) -> tuple[dict[str, int], dict[str, int]]:
    """{shard: latest records it holds}, {shard: records it holds}."""
    if index is None:
        return {}, {}
    latest = {s: len(rows) for s, rows in index.rows_by_shard(job, all_versions=False).items()}
    records = {s: len(rows) for s, rows in index.rows_by_shard(job, all_versions=True).items()}
    return latest, records


def _repair_job(store: PredictionStore, job: str, problems: list[Finding],
                report: RepairReport) -> None:
    missing, damaged, contradicted = _by_shard(problems)
    directory = store.job_dir(job)
    if missing or damaged:
        latest, records = _counts(store.index, job)
        kept = _drop(store.index, directory, job, sorted(missing), damaged)
        for shard, f in sorted({**missing, **damaged}.items()):
            report.shards.append(Repaired(
                job, shard, _problem(shard, missing, damaged), f.detail,
                records.get(shard, 0), latest.get(shard, 0), kept.get(shard)))
    if directory.exists():
        # A landed shard has no digest in the index to check it against: recovery decodes
        # it whole before it indexes it, and sets it aside if damaged (its inputs' earlier
        # versions then do not answer in place of what it held: batch.cache.landed).
        start = len(store.set_aside)
        recovered = store.recover(job, whole=True)
        report.shards += [Repaired(job, a.shard, f"{a.kind}-unindexed", a.why, 0, a.superseded,
                                   a.kept_as) for a in store.set_aside[start:]]
        report.removed_tmp += recovered["removed_tmp"]
        report.indexed += recovered["indexed"]
    if contradicted:
        _rebuild(store, job)
        report.rebuilt.append(job)
    for f in problems:
        if f.kind == ROLLED_BACK:
            kept = directory / f.shard
            report.rolled_back += store.index.supersede(job, kept_name(kept), held(kept))


def _problem(shard: str, missing: dict[str, Finding], damaged: dict[str, Finding]) -> str:
    if shard in missing:
        return MISSING
    return FOREIGN if damaged[shard].kind == FOREIGN else "damaged"


def _drop(index: Index, directory: Path, job: str, missing: list[str],
          damaged: dict[str, Finding]) -> dict[str, str]:
    """Forget these shards and set the damaged (and foreign) files aside, in one
    transaction (the files move before it commits, and back if it fails); {shard: the
    name it is kept as}."""
    def aside(name: str) -> tuple[Path, Path] | None:
        path = directory / name
        if name not in damaged or not path.exists():
            return None
        suffix = shards.FOREIGN_SUFFIX if damaged[name].kind == FOREIGN else shards.DAMAGED_SUFFIX
        return shards.set_aside(path, suffix), path

    moved = shards.forget_moving(index, job, missing + sorted(damaged), aside)
    return {original.name: kept.name for kept, original in moved}


def _rebuild(store: PredictionStore, job: str) -> None:
    """Index the job again from its files (every shard is intact by now), oldest first
    as recovery does, then restore each latest choice that still names a record the
    files hold (a prompt changed back had made an older version the latest)."""
    index = store.index
    directory = store.job_dir(job)
    before = index.listing(job, None, failed=None, all_versions=False, limit=1 << 62, offset=0)
    listed = index.shards(job)
    with index.transaction():
        index.forget_shards(job, list(listed))
        index.forget_orphans(job)
    held: dict[tuple[str, int], tuple[str, str, bool, str]] = {}
    for name in sorted(listed):
        path = directory / name
        run_id, rows = shards.index_entries(path, job)
        index.add_shard(job, name, run_id, rows, listed[name].bytes, listed[name].sha256)
        held.update(((name, i), row) for i, row in enumerate(rows))
    keep: dict[str, list[Located]] = {}
    for loc in before:
        if held.get((loc.shard, loc.row)) == (loc.input_id, loc.key, loc.failed, loc.candidate):
            keep.setdefault(loc.candidate, []).append(loc)
    for candidate, located in keep.items():
        index.repoint(job, candidate, located)
