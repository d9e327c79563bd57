"""Checking the prediction cache (`almanac cache verify`).

verify reads everything and changes nothing: every indexed shard exists, has
the size and SHA-256 the index recorded, is readable Parquet with the schema
and row count the index expects, holds rows of the job whose directory it sits in,
and holds at each indexed row the input id, key, failure state and candidate the
index says; each input has one latest; every Parquet file in a job's directory is
indexed, and none holds another job's rows.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from batch.cache.index import Index, ShardEntry
from batch.cache.landed import held
from batch.cache.schema import is_known, is_legacy
from batch.cache.shards import (
    CHECKED,
    DAMAGED_SUFFIX,
    FOREIGN_SUFFIX,
    ForeignShard,
    file_sha256,
    foreign,
    select_jobs,
)

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


def verify(root: Path, job: str | None = None) -> VerifyReport:
    """Checks the cache under `root` (a home's `predictions/`), or one job of it."""
    index = Index.open_readonly(root)
    report = VerifyReport()
    try:
        report.jobs = select_jobs(root, index, job)
        for name in report.jobs:
            _verify_job(root, index, name, report)
    finally:
        if index is not None:
            index.close()
    _recheck(root, report)
    return report


def _verify_job(root: Path, index: Index | None, job: str, report: VerifyReport) -> None:
    directory = root / job
    if directory.exists() and not directory.is_dir():
        report.problems.append(Finding(job, None, "not-a-directory",
                                       f"{directory.name} is not a directory: its shards cannot "
                                       "be read (move it aside, then `almanac cache repair`)"))
        return
    shards: dict[str, ShardEntry] = {}
    if index is not None:
        # One snapshot: the shard list and the records agree even while a run commits.
        with index.snapshot():
            shards = index.shards(job)
            seen: set[str] = set()
            for shard, rows in itertools.groupby(index.records_by_shard(job), key=lambda r: r[0]):
                seen.add(shard)
                if shard not in shards:
                    n = sum(1 for _ in rows)
                    report.problems.append(Finding(job, shard, "orphan-records",
                                                   f"{n} index records name a shard the index does not list"))
                    continue
                _verify_shard(directory, job, shards[shard], list(rows), report)
            for shard in sorted(set(shards) - seen):
                _verify_shard(directory, job, shards[shard], [], report)
            if n := index.latest_mismatches(job):
                report.problems.append(Finding(job, None, "latest-mismatch",
                                               f"{n} inputs have more than one latest record"))
            _rolled_back(directory, index, job, report)
    _scan_directory(directory, job, set(shards), report)


def _verify_shard(directory: Path, job: str, expected: ShardEntry,
                  rows: list[tuple[str, int, str, str, bool, str]], report: VerifyReport) -> None:
    name = expected.name
    path = directory / name
    problems = report.problems
    report.shards += 1
    if not path.exists():
        problems.append(Finding(job, name, "missing", "the index lists this shard; its file is gone"))
        return
    size = path.stat().st_size
    report.bytes += size
    if size != expected.bytes:
        problems.append(Finding(job, name, "size", f"{size} bytes; the index recorded {expected.bytes}"))
    elif file_sha256(path) != expected.sha256:
        problems.append(Finding(job, name, "checksum", "SHA-256 differs from the one indexed"))
    try:
        # Every column decoded, every page's checksum checked: "readable" means all of it.
        table = pq.read_table(path, **CHECKED)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        problems.append(Finding(job, name, "unreadable", str(exc)))
        return
    # A shard an earlier version wrote lacks later columns; readers fill them in.
    legacy = is_legacy(table.schema)
    if not is_known(table.schema):
        problems.append(Finding(job, name, "schema", "columns differ from schemas/prediction.schema.json"))
        return
    report.rows += table.num_rows
    if table.num_rows != expected.rows:
        problems.append(Finding(job, name, "rows",
                                f"{table.num_rows} rows; the index recorded {expected.rows}"))
    try:
        foreign(path, job, table)
    except ForeignShard as exc:
        problems.append(Finding(job, name, "foreign", str(exc)))
    ids, keys = table["input_id"].to_pylist(), table["key"].to_pylist()
    failed = table["error"].is_valid().to_pylist()
    labels = table["model" if legacy else "candidate"].to_pylist()
    bad = [(row, input_id) for _, row, input_id, key, fail, label in rows
           if row >= table.num_rows or ids[row] != input_id or keys[row] != key
           or failed[row] != fail or labels[row] != label]
    if bad:
        quoted = ", ".join(f"row {r} ({i!r})" for r, i in bad[:EXAMPLES])
        problems.append(Finding(job, name, "index-mismatch",
                                f"{len(bad)} indexed rows do not match the file: {quoted}"))


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
        elif name.startswith(".") and DAMAGED_SUFFIX in name:
            report.notes.append(Finding(job, name, "damaged-kept",
                                        "a damaged shard `cache repair` set aside; its rows left "
                                        "the index (delete the file once it has been examined)"))
        elif name.startswith(".") and FOREIGN_SUFFIX in name:
            report.notes.append(Finding(job, name, "foreign-kept",
                                        "another job's shard found here and set aside, never "
                                        "indexed (delete or move it once it has been examined)"))
        elif name.endswith(".parquet") and not name.startswith(".") and name not in indexed:
            report.problems.append(_unindexed(path, job))


def kept_name(path: Path) -> str:
    """The shard name a file set aside as `.<name>.damaged[.N]` had."""
    return path.name[1:].split(DAMAGED_SUFFIX)[0]


def _rolled_back(directory: Path, index: Index, job: str, report: VerifyReport) -> None:
    """Inputs answering with a version older than the one a damaged shard set aside held
    (an index rebuilt from the files without it): the version they answer with was
    replaced. Which inputs it held is read from its pages that still decode
    (batch.cache.landed); one that cannot tell is passed over."""
    if not directory.exists():
        return
    for kept in sorted(directory.glob(f".*{DAMAGED_SUFFIX}*")):
        older = rolled_back(index, job, kept)
        if older:
            report.problems.append(Finding(
                job, kept.name, "rolled-back",
                f"{len(older)} inputs (e.g. {older[0]!r}) answer with a version older than "
                f"the one this damaged shard held; `almanac cache repair` makes them missing, "
                "so their next run generates them"))


def rolled_back(index: Index, job: str, kept: Path) -> list[str]:
    """The inputs whose latest record is older than the version the damaged shard set
    aside as `kept` held, by name (none when it cannot tell which it held)."""
    if (pairs := held(kept)) is None:
        return []
    name = kept_name(kept)
    by_candidate: dict[str, list[str]] = {}
    for input_id, label in pairs:
        by_candidate.setdefault(label, []).append(input_id)
    return sorted(loc.input_id for label, ids in by_candidate.items()
                  for loc in index.latest_for(job, label, ids).values() if loc.shard < name)


def _unindexed(path: Path, job: str) -> Finding:
    """A shard in the job's directory the index does not list: a crash's (the next run or
    `cache repair` indexes it), or another job's, copied in (repair sets it aside)."""
    try:
        foreign(path, job, pq.read_table(path, columns=["job"], **CHECKED))
    except ForeignShard as exc:
        return Finding(job, path.name, "foreign", f"{exc}; `almanac cache repair` sets it aside")
    except (OSError, ValueError, KeyError):  # damage: repair decodes it whole, sets it aside
        pass
    return Finding(job, path.name, "unindexed", "not in the index (a crash after the write); "
                                                "the next run or `almanac cache repair` indexes it")


def _recheck(root: Path, report: VerifyReport) -> None:
    """Drops findings a concurrent run or gc explains: a shard that landed after the
    index was read, or one collected while it was being checked."""
    racy = [f for f in report.problems if f.kind in {"missing", "unindexed"}]
    if not racy:
        return
    index = Index.open_readonly(root)
    now = index.all_shards() if index is not None else set()
    if index is not None:
        index.close()
    for f in racy:
        listed = (f.job, f.shard) in now
        if (f.kind == "missing" and not listed) or (f.kind == "unindexed" and listed):
            report.problems.remove(f)
