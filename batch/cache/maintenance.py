"""Checking and collecting the prediction cache (`almanac cache verify`, `almanac cache gc`).

verify reads everything and changes nothing: every indexed shard exists, has
the size and SHA-256 the index recorded, is readable Parquet with the schema
and row count the index expects, and holds at each indexed row the input id,
key and failure state the index says; `latest` agrees with `records`; every
Parquet file in a job's directory is indexed.

gc removes what no lookup of the latest predictions can reach:

- shards none of whose rows is the latest version of its input (superseded
  by later runs, or never referenced). Their `records` rows go with them: the
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
renames the file back; if it dies after, the next gc unlinks the leftover.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from batch.cache.lock import JobLock
from batch.cache.reader import JOB_NAME, UnknownJobError
from batch.cache.schema import arrow_schema
from batch.cache.store import PredictionStore, file_sha256, fsync_dir

EXAMPLES = 3  # mismatching rows quoted per shard; the count says how many in all


@dataclass
class Finding:
    job: str
    shard: str | None
    kind: str
    detail: str


@dataclass
class VerifyReport:
    jobs: list[str] = field(default_factory=list)
    shards: int = 0
    rows: int = 0
    bytes: int = 0
    problems: list[Finding] = field(default_factory=list)  # damage: exit non-zero
    notes: list[Finding] = field(default_factory=list)  # not damage (crash temporaries)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


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
    repaired: int = 0  # leftovers of an interrupted gc
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


def _connect_ro(root: Path) -> sqlite3.Connection | None:
    index = root / "index.db"
    if not index.exists():
        return None
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, isolation_level=None, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    return db


def _indexed_jobs(db: sqlite3.Connection | None) -> set[str]:
    return {r[0] for r in db.execute("SELECT DISTINCT job FROM shards")} if db else set()


def _job_dirs(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {p.name for p in root.iterdir() if p.is_dir() and JOB_NAME.match(p.name)}


def _targets(root: Path, db: sqlite3.Connection | None, job: str | None) -> list[str]:
    known = _indexed_jobs(db) | _job_dirs(root)
    if job is None:
        return sorted(known)
    if job not in known:
        raise UnknownJobError(job)
    return [job]


# -- verify ------------------------------------------------------------------------------------


def verify(root: Path, job: str | None = None) -> VerifyReport:
    """Checks the cache under `root` (a home's `predictions/`), or one job of it."""
    db = _connect_ro(root)
    report = VerifyReport()
    try:
        report.jobs = _targets(root, db, job)
        for name in report.jobs:
            _verify_job(root, db, name, report)
        _recheck(root, report)
    finally:
        if db is not None:
            db.close()
    return report


def _verify_job(root: Path, db: sqlite3.Connection | None, job: str, report: VerifyReport) -> None:
    directory = root / job
    shards: dict[str, tuple[int, int, str]] = {}
    if db is not None:
        # One read transaction: the shard list and the records agree even while a run
        # commits new shards (WAL: this never blocks it).
        db.execute("BEGIN")
        try:
            shards = {n: (r, b, h) for n, r, b, h in db.execute(
                "SELECT name, rows, bytes, sha256 FROM shards WHERE job = ?", (job,))}
            records = db.execute("SELECT shard, row, input_id, key, failed FROM records "
                                 "WHERE job = ? ORDER BY shard, row", (job,))
            seen: set[str] = set()
            for shard, rows in itertools.groupby(records, key=lambda r: r[0]):
                seen.add(shard)
                if shard not in shards:
                    n = sum(1 for _ in rows)
                    report.problems.append(Finding(job, shard, "orphan-records",
                                                   f"{n} index records name a shard the index does not list"))
                    continue
                _verify_shard(directory, job, shard, shards[shard], list(rows), report)
            for shard in sorted(set(shards) - seen):
                _verify_shard(directory, job, shard, shards[shard], [], report)
            _verify_latest(db, job, report)
        finally:
            db.execute("ROLLBACK")  # a read transaction: nothing to keep
    _scan_directory(directory, job, set(shards), report)


def _verify_shard(directory: Path, job: str, name: str, expected: tuple[int, int, str],
                  rows: list[tuple], report: VerifyReport) -> None:
    want_rows, want_bytes, want_sha = expected
    path = directory / name
    problems = report.problems
    report.shards += 1
    if not path.exists():
        problems.append(Finding(job, name, "missing", "the index lists this shard; its file is gone"))
        return
    size = path.stat().st_size
    report.bytes += size
    if size != want_bytes:
        problems.append(Finding(job, name, "size", f"{size} bytes; the index recorded {want_bytes}"))
    elif file_sha256(path) != want_sha:
        problems.append(Finding(job, name, "checksum", "SHA-256 differs from the one indexed"))
    try:
        table = pq.read_table(path)  # every column decoded: "readable" means all of it
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        problems.append(Finding(job, name, "unreadable", str(exc)))
        return
    if not table.schema.equals(arrow_schema(), check_metadata=False):
        problems.append(Finding(job, name, "schema", "columns differ from schemas/prediction.schema.json"))
        return
    report.rows += table.num_rows
    if table.num_rows != want_rows:
        problems.append(Finding(job, name, "rows", f"{table.num_rows} rows; the index recorded {want_rows}"))
    ids, keys = table["input_id"].to_pylist(), table["key"].to_pylist()
    failed = table["error"].is_valid().to_pylist()
    bad = [(row, input_id) for _, row, input_id, key, fail in rows
           if row >= table.num_rows or ids[row] != input_id or keys[row] != key
           or failed[row] != bool(fail)]
    if bad:
        quoted = ", ".join(f"row {r} ({i!r})" for r, i in bad[:EXAMPLES])
        problems.append(Finding(job, name, "index-mismatch",
                                f"{len(bad)} indexed rows do not match the file: {quoted}"))


def _verify_latest(db: sqlite3.Connection, job: str, report: VerifyReport) -> None:
    (n,) = db.execute(
        "SELECT count(*) FROM latest l LEFT JOIN records r ON r.job = l.job "
        "AND r.input_id = l.input_id AND r.key = l.key WHERE l.job = ? AND (r.shard IS NULL "
        "OR r.shard != l.shard OR r.row != l.row OR r.failed != l.failed)", (job,)).fetchone()
    if n:
        report.problems.append(Finding(job, None, "latest-mismatch",
                                       f"{n} latest entries do not match a record"))


def _scan_directory(directory: Path, job: str, indexed: set[str], report: VerifyReport) -> None:
    if not directory.exists():
        return
    for path in sorted(directory.iterdir()):
        name = path.name
        if name.startswith(".") and name.endswith(".tmp"):
            report.notes.append(Finding(job, name, "temporary",
                                        "a write in progress, or one a crash interrupted (gc removes it)"))
        elif name.startswith(".") and name.endswith(".gc"):
            report.notes.append(Finding(job, name, "interrupted-gc", "gc finishes or undoes it"))
        elif name.endswith(".parquet") and not name.startswith(".") and name not in indexed:
            report.problems.append(Finding(job, name, "unindexed",
                                           "not in the index (a crash after the write); "
                                           "the next run or `almanac cache gc` indexes it"))


def _recheck(root: Path, report: VerifyReport) -> None:
    """Drops findings a concurrent run or gc explains: a shard that landed after the
    index was read, or one collected while it was being checked."""
    racy = [f for f in report.problems if f.kind in {"missing", "unindexed"}]
    if not racy:
        return
    db = _connect_ro(root)
    now = ({(j, n) for j, n in db.execute("SELECT job, name FROM shards")} if db else set())
    if db is not None:
        db.close()
    for f in racy:
        listed = (f.job, f.shard) in now
        if (f.kind == "missing" and not listed) or (f.kind == "unindexed" and listed):
            report.problems.remove(f)


# -- gc ----------------------------------------------------------------------------------------


def gc(root: Path, locks: Path, *, job: str | None = None, dry_run: bool = False,
       keep_versions: bool = False) -> GcReport:
    """Collects the cache under `root` (a home's `predictions/`), or one job of it.
    Raises JobLockedError, having changed nothing, while any job is running."""
    db = _connect_ro(root)
    try:
        targets = _targets(root, db, job)
        everyone = _indexed_jobs(db) | _job_dirs(root)
    finally:
        if db is not None:
            db.close()
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
    directory = store.job_dir(job)
    indexed = {r[0]: (r[1], r[2]) for r in store.db.execute(
        "SELECT name, rows, bytes FROM shards WHERE job = ?", (job,))}
    if directory.exists():
        for left in directory.glob(".*.gc"):
            out.repaired += 1
            if not dry_run:
                original = directory / left.name[1 : -len(".gc")]
                if original.name in indexed:
                    os.rename(left, original)  # the collection never committed: undo it
                else:
                    left.unlink()
        if dry_run:
            out.removed_tmp = sum(1 for _ in directory.glob(".*.tmp"))
            out.indexed = sum(1 for p in directory.glob("*.parquet")
                              if not p.name.startswith(".") and p.name not in indexed)
        else:
            recovered = store.recover(job)
            out.removed_tmp, out.indexed = recovered["removed_tmp"], recovered["indexed"]
            if out.indexed:
                indexed = {r[0]: (r[1], r[2]) for r in store.db.execute(
                    "SELECT name, rows, bytes FROM shards WHERE job = ?", (job,))}
    needed = {r[0] for r in store.db.execute("SELECT DISTINCT shard FROM latest WHERE job = ?", (job,))}
    if keep_versions:
        needed |= {r[0] for r in store.db.execute(
            "SELECT DISTINCT shard FROM records WHERE job = ?", (job,))}
    doomed = sorted(set(indexed) - needed)
    out.collected = [Collected(n, *indexed[n]) for n in doomed]
    if doomed and not dry_run:
        _collect(store, job, doomed)
    return out


def _collect(store: PredictionStore, job: str, names: list[str]) -> None:
    directory = store.job_dir(job)
    db = store.db
    moved: list[tuple[Path, Path]] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for part in (names[i : i + 500] for i in range(0, len(names), 500)):
            marks = ",".join("?" * len(part))
            for table in ("records", "latest"):
                db.execute(f"DELETE FROM {table} WHERE job = ? AND shard IN ({marks})", (job, *part))
            db.execute(f"DELETE FROM shards WHERE job = ? AND name IN ({marks})", (job, *part))
        for name in names:
            hidden = directory / f".{name}.gc"
            try:
                os.rename(directory / name, hidden)
            except FileNotFoundError:
                continue  # already gone (verify reports that): dropping its rows heals the index
            moved.append((hidden, directory / name))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        for hidden, original in moved:
            os.rename(hidden, original)
        raise
    for hidden, _ in moved:
        hidden.unlink()
    fsync_dir(directory)
