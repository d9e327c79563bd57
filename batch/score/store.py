"""`predictions/scores.db`: its schema, its connections and every query on it, the only
module that speaks SQL to this file.

A row per prediction scored: (job, candidate, input_id) → the prediction's `key`, the
`scorer` (a digest of metric, options and reference template), the `basis` (a digest
of what the score was computed from: the key, the rendered reference and, for a
judge, the judge's answer) and the `value` or the `error`. A value is NULL only with
an error, and then counts nowhere; a failed prediction scores 0 with its reason in
`error`. Scores are derived data: recomputed from the cache whenever the scorer or
a row's basis changes, never the other way round.

Writers open it read-write (`ScoreStore.open`), readers read-only
(`ScoreStore.open_readonly`, None until a first scoring created it), as every side
store (batch.cache.sidestore); in WAL mode readers see the last committed scoring
while another is written. Its failures are `ScoreStoreError`s (exit 1, HTTP 503).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.cache.errors import SideStoreError
from batch.cache.sidestore import SideStore

if TYPE_CHECKING:  # imported where the columns are built
    import pyarrow as pa

SCORES_FILE = "scores.db"
FORMAT = 1  # PRAGMA user_version of the layout below
SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    job TEXT NOT NULL, candidate TEXT NOT NULL, input_id TEXT NOT NULL,
    key TEXT NOT NULL, scorer TEXT NOT NULL, basis TEXT NOT NULL,
    value REAL, error TEXT,
    PRIMARY KEY (job, candidate, input_id)
) WITHOUT ROWID;
-- what each job was last scored with (one row per job)
CREATE TABLE IF NOT EXISTS scorings (
    job TEXT PRIMARY KEY, scorer TEXT NOT NULL, metric TEXT NOT NULL, scored_at TEXT NOT NULL
);
"""


class ScoreStoreError(SideStoreError):
    """scores.db cannot be used: damaged, unreadable, or written by a newer Almanac."""


@dataclass(frozen=True)
class Score:
    candidate: str
    input_id: str
    key: str
    basis: str
    value: float | None
    error: str | None = None


@dataclass(frozen=True)
class Scoring:
    """How a job was last scored."""

    job: str
    scorer: str
    metric: str
    scored_at: datetime


class ScoreStore(SideStore):
    """One connection to `scores.db` (opened as every side store is: batch.cache.sidestore).
    Not locked: a caller sharing one between threads serialises its calls."""

    FILE = SCORES_FILE
    FORMAT = FORMAT
    SCHEMA = SCHEMA
    WHAT = "scores"
    ERROR = ScoreStoreError
    DAMAGED_HINT = ("scores are derived from the cache: move it aside and `almanac score "
                    "JOB_FILE` computes them again")

    # -- the writer ---------------------------------------------------------------------------

    def bases(self, job: str) -> dict[tuple[str, str], tuple[str, str]]:
        """{(candidate, input_id): (scorer, basis)} of the scores stored for `job`: a row
        whose scorer and basis are unchanged keeps its score without being computed."""
        return {(c, i): (s, b) for c, i, s, b in self._all(
            "SELECT candidate, input_id, scorer, basis FROM scores WHERE job = ?", (job,))}

    def save(self, job: str, scorer: str, metric: str, scores: Iterable[Score],
             current: Collection[tuple[str, str]]) -> None:
        """Store `scores` (new or changed) and drop the job's scores of predictions no
        longer `current` (inputs gone from the file, candidates gone from the job), in
        one transaction: readers see the whole scoring or the one before."""
        rows = [(job, s.candidate, s.input_id, s.key, scorer, s.basis, s.value, s.error)
                for s in scores]
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO scores (job, candidate, input_id, key, scorer, basis, "
                "value, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS keep "
                            "(candidate TEXT, input_id TEXT, PRIMARY KEY (candidate, input_id))")
            self.db.execute("DELETE FROM keep")
            self.db.executemany("INSERT OR IGNORE INTO keep VALUES (?, ?)", current)
            self.db.execute(
                "DELETE FROM scores WHERE job = ? AND NOT EXISTS (SELECT 1 FROM keep k "
                "WHERE k.candidate = scores.candidate AND k.input_id = scores.input_id)", (job,))
            self.db.execute("DELETE FROM keep")
            self.db.execute(
                "INSERT OR REPLACE INTO scorings (job, scorer, metric, scored_at) VALUES (?, ?, ?, ?)",
                (job, scorer, metric, datetime.now(UTC).isoformat()))

    # -- readers ------------------------------------------------------------------------------

    def scoring(self, job: str) -> Scoring | None:
        found = self._all("SELECT job, scorer, metric, scored_at FROM scorings WHERE job = ?", (job,))
        if not found:
            return None
        job, scorer, metric, when = found[0]
        return Scoring(job, scorer, metric, datetime.fromisoformat(when))

    def scores_for(self, job: str, candidate: str | None = None) -> dict[tuple[str, str], float | None]:
        """{(candidate, input_id): value} of the job's scores (of one candidate if given);
        None where the row could not be scored."""
        return {(c, i): v for c, i, _, _, v, _ in self._rows(job, candidate)}

    def value_columns(self, job: str, candidate: str) -> tuple[pa.StringArray, pa.DoubleArray]:
        """(input ids, values) of one candidate's scores, in input id order, as two Arrow
        columns for bulk readers that match them in Arrow (null where a row could not be
        scored). The rows go into Arrow as they come, not through a list per column: at a
        million rows that halves the time."""
        import pyarrow as pa  # bulk readers only: a lookup does without it

        rows = self._all("SELECT input_id, value FROM scores WHERE job = ? AND candidate = ? "
                         "ORDER BY input_id", (job, candidate))
        both = pa.array(rows, pa.struct([("input_id", pa.string()), ("value", pa.float64())]))
        return both.field(0), both.field(1)

    def score_of(self, job: str, candidate: str, input_id: str) -> float | None:
        """One prediction's score, or None (not scored, or an error)."""
        found = self._all("SELECT value FROM scores WHERE job = ? AND candidate = ? AND input_id = ?",
                          (job, candidate, input_id))
        return found[0][0] if found else None

    def scores(self, job: str, candidate: str | None = None) -> list[Score]:
        """The job's score rows in (candidate, input id) order, errors included."""
        return [Score(c, i, k, b, v, e) for c, i, k, b, v, e in self._rows(job, candidate)]

    def values(self, job: str) -> dict[str, list[float]]:
        """{candidate: the values scored}, in input id order: what means and intervals
        are computed over (errors left out)."""
        out: dict[str, list[float]] = {}
        for candidate, value in self._all(
                "SELECT candidate, value FROM scores WHERE job = ? AND value IS NOT NULL "
                "ORDER BY candidate, input_id", (job,)):
            out.setdefault(candidate, []).append(value)
        return out

    def error_counts(self, job: str) -> dict[str, int]:
        """{candidate: rows that could not be scored}."""
        return dict(self._all("SELECT candidate, count(*) FROM scores WHERE job = ? AND value IS NULL "
                              "GROUP BY candidate", (job,)))

    def _rows(self, job: str, candidate: str | None) -> list[tuple[Any, ...]]:
        query = "SELECT candidate, input_id, key, basis, value, error FROM scores WHERE job = ?"
        params: tuple[str, ...] = (job,)
        if candidate is not None:
            query += " AND candidate = ?"
            params += (candidate,)
        return self._all(query + " ORDER BY candidate, input_id", params)


def scores_for(root: Path, job: str, candidate: str | None = None) -> dict[tuple[str, str], float | None]:
    """The job's scores under the predictions directory `root` ({} if none yet)."""
    store = ScoreStore.open_readonly(root)
    if store is None:
        return {}
    with store:
        return store.scores_for(job, candidate)


def value_columns(root: Path, job: str, candidate: str) -> tuple[pa.StringArray, pa.DoubleArray]:
    """One candidate's scores under `root` as (input ids, values); empty if none yet."""
    store = ScoreStore.open_readonly(root)
    if store is None:
        import pyarrow as pa

        return pa.array([], pa.string()), pa.array([], pa.float64())
    with store:
        return store.value_columns(job, candidate)


def score_of(root: Path, job: str, candidate: str, input_id: str) -> float | None:
    store = ScoreStore.open_readonly(root)
    if store is None:
        return None
    with store:
        return store.score_of(job, candidate, input_id)
