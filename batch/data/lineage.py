"""`predictions/lineage.db`: its schema, its connections and every query on it, the only
module that speaks SQL to this file.

It holds what chains need to remember between runs:

- `job_files`: the job file each job was last run from, so that a chain naming its
  upstream job by name can read that job's input rows (their fields travel down);
- `plans`: per chain job and candidate, the upstream job and candidate it reads and the
  digest (batch.run.keys.plan_digest) its rows' keys were planned under;
- `lineage`: per chain row and candidate, the key it was last planned with, the basis
  (a digest of its fields) that key came from, and the upstream record that fed it
  (input id, key, and the item's position when the job explodes answers).

It is derived data: losing it costs one full planning of each chain (every row
rendered once) and the sources of rows planned before; nothing cached is lost.
Writers open it read-write (`LineageStore.open`), readers read-only
(`LineageStore.open_readonly`, None until a first run created it), as every side
store (batch.cache.sidestore); its failures are `LineageStoreError`s (exit 1, HTTP 503).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from batch.cache.errors import SideStoreError
from batch.cache.sidestore import SideStore

LINEAGE_FILE = "lineage.db"
FORMAT = 1  # PRAGMA user_version of the layout below
SCHEMA = """
CREATE TABLE IF NOT EXISTS job_files (
    job TEXT PRIMARY KEY, path TEXT NOT NULL, recorded_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS plans (
    job TEXT NOT NULL, candidate TEXT NOT NULL, digest TEXT NOT NULL,
    upstream TEXT NOT NULL, upstream_candidate TEXT NOT NULL,
    PRIMARY KEY (job, candidate)
) WITHOUT ROWID;
-- one chain's rows of one candidate, read whole: the memo at planning, sources at curate
CREATE TABLE IF NOT EXISTS lineage (
    job TEXT NOT NULL, candidate TEXT NOT NULL, input_id TEXT NOT NULL,
    key TEXT NOT NULL, basis TEXT, up_input_id TEXT NOT NULL, up_key TEXT NOT NULL,
    position INTEGER,
    PRIMARY KEY (job, candidate, input_id)
) WITHOUT ROWID;
"""


class LineageStoreError(SideStoreError):
    """lineage.db cannot be used: damaged, unreadable, or written by a newer Almanac."""


@dataclass(frozen=True)
class PlanInfo:
    """What a chain job's candidate was last planned under, and from where."""

    digest: str
    upstream: str
    upstream_candidate: str


@dataclass(frozen=True)
class Source:
    """The upstream record one chain row was planned from, and the key it planned."""

    key: str
    basis: str | None
    up_input_id: str
    up_key: str
    position: int | None = None


class LineageStore(SideStore):
    """One connection to `lineage.db` (opened as every side store is:
    batch.cache.sidestore)."""

    FILE = LINEAGE_FILE
    FORMAT = FORMAT
    SCHEMA = SCHEMA
    WHAT = "chains' lineage"
    ERROR = LineageStoreError
    DAMAGED_HINT = ("it is derived: move it aside, and each chain's next run plans all its "
                    "rows once")

    # -- job files ----------------------------------------------------------------------------

    def job_file(self, job: str) -> Path | None:
        found = self._all("SELECT path FROM job_files WHERE job = ?", (job,))
        return Path(found[0][0]) if found else None

    def set_job_file(self, job: str, path: Path) -> None:
        self._execute("INSERT OR REPLACE INTO job_files (job, path, recorded_at) VALUES (?, ?, ?)",
                      (job, str(path), datetime.now(UTC).isoformat()))

    # -- plans and lineage --------------------------------------------------------------------

    def plan(self, job: str, candidate: str) -> PlanInfo | None:
        found = self._all("SELECT digest, upstream, upstream_candidate FROM plans "
                          "WHERE job = ? AND candidate = ?", (job, candidate))
        return PlanInfo(*found[0]) if found else None

    def plans(self, job: str) -> dict[str, PlanInfo]:
        """{candidate: its plan} of a chain job ({} for any other job)."""
        return {c: PlanInfo(d, u, uc) for c, d, u, uc in self._all(
            "SELECT candidate, digest, upstream, upstream_candidate FROM plans WHERE job = ?",
            (job,))}

    def memo(self, job: str, candidate: str, digest: str) -> pa.Table:
        """(input_id, basis, key) of the rows planned under `digest` (none under another),
        as columns: planning compares them with a chain's rows in Arrow."""
        plan = self.plan(job, candidate)
        rows = self._all("SELECT input_id, basis, key FROM lineage WHERE job = ? AND candidate = ?",
                         (job, candidate)) if plan is not None and plan.digest == digest else []
        return _columns(rows, ["input_id", "basis", "key"])

    def sources(self, job: str, candidate: str) -> dict[str, Source]:
        """{input id: the upstream record it was last planned from}."""
        return {r[0]: Source(*r[1:]) for r in self._all(
            "SELECT input_id, key, basis, up_input_id, up_key, position FROM lineage "
            "WHERE job = ? AND candidate = ?", (job, candidate))}

    def source_table(self, job: str, candidate: str) -> pa.Table:
        """`sources` as columns (input_id, key, up_input_id, up_key), for bulk readers
        that match them in Arrow."""
        return _columns(self._all("SELECT input_id, key, up_input_id, up_key FROM lineage "
                                  "WHERE job = ? AND candidate = ?", (job, candidate)),
                        ["input_id", "key", "up_input_id", "up_key"])

    def save(self, job: str, candidate: str, plan: PlanInfo,
             rows: Mapping[str, tuple[str, str | None, str, str, int | None]], *,
             complete: bool) -> int:
        """Keep what one planning of a chain found: its plan, and `rows` ({input id:
        (key, basis, up_input_id, up_key, position)}; new or changed ones written, the
        others left). Rows no longer planned are dropped when the planning was
        `complete`; a new digest or upstream replaces every row. One transaction.
        Returns how many rows were written."""
        before = self.plan(job, candidate)
        stored = {r[0]: r[1:] for r in self._all(
            "SELECT input_id, key, basis, up_input_id, up_key, position FROM lineage "
            "WHERE job = ? AND candidate = ?", (job, candidate))} if before == plan else {}
        changed = [(job, candidate, i, *row) for i, row in rows.items() if stored.get(i) != row]
        gone = [(job, candidate, i) for i in stored if i not in rows] if complete else []
        with self.transaction():
            if before != plan:
                self.db.execute("DELETE FROM lineage WHERE job = ? AND candidate = ?",
                                (job, candidate))
                self.db.execute(
                    "INSERT OR REPLACE INTO plans (job, candidate, digest, upstream, "
                    "upstream_candidate) VALUES (?, ?, ?, ?, ?)",
                    (job, candidate, plan.digest, plan.upstream, plan.upstream_candidate))
            self.db.executemany("DELETE FROM lineage WHERE job = ? AND candidate = ? "
                                "AND input_id = ?", gone)
            self.db.executemany(
                "INSERT OR REPLACE INTO lineage (job, candidate, input_id, key, basis, "
                "up_input_id, up_key, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", changed)
        return len(changed)

    def forget_plans(self, job: str, keep: Iterable[str]) -> None:
        """Drop the plans and rows of the job's candidates not in `keep` (gone from it)."""
        keep = list(keep)
        marks = ",".join("?" * len(keep)) or "NULL"
        for table in ("plans", "lineage"):
            self._execute(f"DELETE FROM {table} WHERE job = ? AND candidate NOT IN ({marks})",
                          (job, *keep))


def _columns(rows: list[tuple[Any, ...]], names: list[str]) -> pa.Table:
    """Text rows as a table of string columns."""
    columns = zip(*rows, strict=True) if rows else [()] * len(names)
    return pa.table([pa.array(c, pa.string()) for c in columns], names=names)
