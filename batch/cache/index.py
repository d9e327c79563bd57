"""The prediction index, `predictions/index.db`: its schema, its connections and every
query on it: the only module (with `index_reads`, its locating queries, and
`index_upgrade`, its format) that speaks SQL to this file.

The index maps a job's inputs to the shard and row of their records, per candidate
(the model and adapter that made them): `records` holds every version, each flagged
as failed or not and as the latest of its (input, candidate) or not; `shards` what
each Parquet file should be (rows, bytes, SHA-256); `candidates` each job's current
candidates as its last run named them. It is derived from the shards (which are the
truth) and can be rebuilt from them (`almanac cache repair`).

Two ways in, as for every SQLite side store (batch.cache.sidestore): `Index.open(root)`
for the one writer of a job at a time (a run, or gc), creating the tables or
upgrading an earlier format; `Index.open_readonly(root)` for readers, which can never
write nor take the write lock a run needs (in WAL mode they read the last committed
state while a run appends). SQLite's failures (a damaged or unreadable file, a
read-only one for a writer, a full disk) leave as `IndexUnavailableError` /
`DiskFullError`, one line each.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from batch.cache import index_upgrade
from batch.cache.errors import IndexUnavailableError, SideStoreError
from batch.cache.index_reads import JOB, LATEST, IndexReads, chunks, marks
from batch.cache.index_rows import CandidateInfo, JobInfo, Located, ShardEntry, key_in
from batch.cache.index_upgrade import FORMAT, INDEX_FILE, IndexFormatError
from batch.cache.sidestore import connect

__all__ = ["FORMAT", "INDEX_FILE", "CandidateInfo", "Index", "IndexFormatError", "JobInfo",
           "Located", "ShardEntry"]


class Index(IndexReads):
    """One connection to `predictions/index.db`. Not locked: a caller that shares one
    between threads (the HTTP server's reader) serialises its calls."""

    FILE = INDEX_FILE
    FORMAT = FORMAT
    WHAT = "prediction index"
    ERROR = IndexUnavailableError
    DAMAGED_HINT = ("run `almanac cache repair` to set it aside and rebuild it from the "
                    "shards")

    def _prepare(self, root: Path) -> None:
        index_upgrade.ensure_current(self.db, root)

    @classmethod
    def _upgrade(cls, root: Path, version: int) -> None:
        """A reader's index in an earlier format is upgraded by a short read-write open."""
        try:
            cls.open(root).close()
        except SideStoreError as exc:
            raise IndexFormatError(f"{root / INDEX_FILE} was written by an earlier version and "
                                   f"cannot be upgraded here ({exc}); run `almanac cache "
                                   "repair` with write access once") from exc

    @classmethod
    def newer(cls, path: Path, version: int) -> IndexFormatError:
        return IndexFormatError.newer(path, version)

    @classmethod
    def open_scratch(cls, root: Path, *, copy: bool = False) -> Index:
        """The index for a dry run, which must write nothing: the file read-only when it
        is current, else (or with `copy`) a copy of it in memory, upgraded and free to
        change (an empty one when there is no file yet)."""
        path = root / INDEX_FILE
        source = None
        if path.exists():
            source = cls.readonly_at(path)
            version = source.version()
            if version > FORMAT:
                source.close()
                raise IndexFormatError.newer(path, version)
            if version == FORMAT and not copy:
                return source
        memory = cls(connect(":memory:"), path)
        with memory.guard():
            if source is not None:
                source.db.backup(memory.db)
                source.close()
            index_upgrade.ensure_current(memory.db, root)
        return memory

    # -- fingerprints of local model directories ----------------------------------------------

    def fingerprint_get(self, path: str, signature: str) -> str | None:
        rows = self._all("SELECT digest FROM fingerprints WHERE path = ? AND signature = ?",
                         (path, signature))
        return rows[0][0] if rows else None

    def fingerprint_put(self, path: str, signature: str, digest: str) -> None:
        with self.guard():
            self.db.execute(
                "INSERT OR REPLACE INTO fingerprints (path, signature, digest) VALUES (?, ?, ?)",
                (path, signature, digest))

    # -- writing (ids made as needed, inside the caller's transaction) ------------------------

    def _job_id(self, job: str) -> int:
        self.db.execute("INSERT OR IGNORE INTO jobs (name) VALUES (?)", (job,))
        return self.db.execute("SELECT id FROM jobs WHERE name = ?", (job,)).fetchone()[0]

    def _label_ids(self, job_id: int, labels: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(labels))
        self.db.executemany("INSERT OR IGNORE INTO labels (job, label) VALUES (?, ?)",
                            [(job_id, label) for label in wanted])
        return {label: self.db.execute("SELECT id FROM labels WHERE job = ? AND label = ?",
                                       (job_id, label)).fetchone()[0] for label in wanted}

    def add_shard(self, job: str, name: str, run_id: str | None,
                  rows: list[tuple[str, str, bool, str]], size: int, digest: str,
                  checked: str | None = None) -> None:
        """Index a shard whose row i holds `rows[i]` = (input id, key, failed, candidate):
        every row becomes a version of its input and that (input, candidate)'s latest (a
        later row of the shard wins over an earlier one) unless a shard written later
        holds a version of it: the latest is by run order (shard names begin with the
        time they were written), not by the order files happen to be indexed in (a
        recovery, a rebuild). A record of the same input, candidate and key is replaced."""
        with self.transaction():
            job_id = self._job_id(job)
            known = self.db.execute("SELECT id FROM shards WHERE job = ? AND name = ?",
                                    (job_id, name)).fetchone()
            if known is not None:  # indexed again: its rows as they are in the file now
                self.db.execute("DELETE FROM records WHERE shard = ?", known)
                self.db.execute("DELETE FROM shards WHERE id = ?", known)
            shard_id = self.db.execute(
                "INSERT INTO shards (job, name, rows, bytes, sha256, run_id, created_at, checked) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, name, len(rows), size, digest, run_id, datetime.now(UTC).isoformat(),
                 checked)).lastrowid
            labels = self._label_ids(job_id, (r[3] for r in rows))
            last = {(input_id, label, key): i for i, (input_id, key, _, label) in enumerate(rows)}
            newest = {(input_id, label): i for (input_id, label, _), i in last.items()}
            later = set(self._written_later(job_id, name, labels, newest))
            for pair in later:
                del newest[pair]
            # A version a later shard also holds (the same key) stays the later shard's.
            kept = [i for i in sorted(last.values()) if (rows[i][0], rows[i][3]) not in later
                    or self.db.execute(
                        "SELECT 1 FROM records WHERE job = ? AND input_id = ? AND label = ? "
                        "AND key = ?", (job_id, rows[i][0], labels[rows[i][3]],
                                        key_in(rows[i][1]))).fetchone() is None]
            self.db.executemany(
                "DELETE FROM records WHERE job = ? AND input_id = ? AND label = ? AND key = ?",
                [(job_id, rows[i][0], labels[rows[i][3]], key_in(rows[i][1])) for i in kept])
            self.db.executemany(
                "UPDATE records SET state = state & 1 WHERE job = ? AND input_id = ? "
                f"AND label = ? AND state >= {LATEST}",
                [(job_id, input_id, labels[label]) for input_id, label in newest])
            latest = set(newest.values())
            self.db.executemany(
                "INSERT INTO records (job, input_id, label, key, shard, row, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job_id, rows[i][0], labels[rows[i][3]], key_in(rows[i][1]), shard_id, i,
                  int(rows[i][2]) | (LATEST if i in latest else 0)) for i in kept])
            # A run names its candidates first (set_candidates); a writer that did not
            # (a recovery, a test) lists the ones its rows name, after the others.
            self.db.executemany(
                "INSERT INTO candidates (job, label, model, ordinal) SELECT ?1, ?2, ?2, "
                "coalesce((SELECT max(ordinal) + 1 FROM candidates WHERE job = ?1), 0) "
                "WHERE NOT EXISTS (SELECT 1 FROM candidates WHERE job = ?1 AND label = ?2)",
                [(job_id, label) for label in labels])

    def _written_later(self, job_id: int, name: str, labels: dict[str, int],
                       pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The (input id, candidate) pairs of which a shard named after `name` holds a
        version. A run's shard is the job's newest: one question answers that."""
        if self.db.execute("SELECT 1 FROM shards WHERE job = ? AND name > ? LIMIT 1",
                           (job_id, name)).fetchone() is None:
            return []
        return [(input_id, label) for input_id, label in pairs if self.db.execute(
            "SELECT 1 FROM records r JOIN shards s ON s.id = r.shard WHERE r.job = ? AND "
            "r.input_id = ? AND r.label = ? AND s.name > ? LIMIT 1",
            (job_id, input_id, labels[label], name)).fetchone() is not None]

    def supersede(self, job: str, lost: str, pairs: Iterable[tuple[str, str]] | None) -> int:
        """A shard named `lost` that was never indexed is gone (set aside as damaged): the
        versions it held were the latest of their (input id, candidate) `pairs` (None:
        of any that an earlier shard holds, when which it held cannot be read), so an
        earlier version must not answer in their place. Those inputs become missing
        (their records stay, as versions); returns how many latest records that took."""
        with self.transaction():
            job_id = self._job_id(job)
            earlier = "(SELECT id FROM shards WHERE job = ? AND name < ?)"
            if pairs is None:
                return self.db.execute(
                    f"UPDATE records SET state = state & 1 WHERE job = ? AND state >= {LATEST} "
                    f"AND shard IN {earlier}", (job_id, job_id, lost)).rowcount
            labels = dict(self.db.execute("SELECT label, id FROM labels WHERE job = ?", (job_id,)))
            return sum(self.db.execute(
                f"UPDATE records SET state = state & 1 WHERE job = ? AND input_id = ? AND "
                f"label = ? AND state >= {LATEST} AND shard IN {earlier}",
                (job_id, input_id, labels[label], job_id, lost)).rowcount
                for input_id, label in pairs if label in labels)

    def repoint(self, job: str, candidate: str, located: Iterable[Located]) -> None:
        """Make these records of `job` their inputs' latest for `candidate` (a prompt
        changed back)."""
        with self.transaction():
            job_id = self._job_id(job)
            label = self._label_ids(job_id, [candidate])[candidate]
            for r in located:
                self.db.execute("UPDATE records SET state = state & 1 WHERE job = ? AND "
                                f"input_id = ? AND label = ? AND state >= {LATEST}",
                                (job_id, r.input_id, label))
                self.db.execute(
                    f"UPDATE records SET state = state | {LATEST} WHERE job = ? AND input_id = ? "
                    "AND label = ? AND key = ? AND row = ? AND shard = "
                    "(SELECT id FROM shards WHERE job = ? AND name = ?)",
                    (job_id, r.input_id, label, key_in(r.key), r.row, job_id, r.shard))

    def set_candidates(self, job: str, candidates: list[CandidateInfo]) -> None:
        """The job's current candidates, replacing what an earlier run named."""
        with self.transaction():
            job_id = self._job_id(job)
            self.db.execute("DELETE FROM candidates WHERE job = ?", (job_id,))
            self.db.executemany(
                "INSERT INTO candidates (job, label, model, revision, adapter, adapter_revision, "
                "ordinal) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job_id, c.label, c.model, c.revision, c.adapter, c.adapter_revision, c.ordinal)
                 for c in candidates])

    def forget_shards(self, job: str, names: list[str]) -> None:
        """Drop these shards and every record in them. Call inside `transaction()`: gc
        renames the files before it commits."""
        for part in chunks(names):
            ids = [r[0] for r in self.db.execute(
                f"SELECT id FROM shards WHERE job = {JOB} AND name IN ({marks(part)})",
                (job, *part))]
            if ids:  # the job's entries of records_by_input hold the shard: no table scan
                self.db.execute(f"DELETE FROM records WHERE job = {JOB} AND shard IN "
                                f"({marks(ids)})", (job, *ids))
                self.db.execute(f"DELETE FROM shards WHERE id IN ({marks(ids)})", ids)

    def forget_orphans(self, job: str) -> None:
        """Drop the job's records naming a shard the index does not list as the job's. Call
        inside `transaction()`."""
        self.db.execute(f"DELETE FROM records WHERE job = {JOB} AND shard NOT IN "
                        f"(SELECT id FROM shards WHERE job = {JOB})", (job, job))

    # -- jobs and shards ---------------------------------------------------------------------

    def has_job(self, job: str) -> bool:
        return bool(self._all(f"SELECT 1 FROM shards WHERE job = {JOB} LIMIT 1", (job,)))

    def job_names(self) -> set[str]:
        return {r[0] for r in self._all(
            "SELECT name FROM jobs j WHERE EXISTS (SELECT 1 FROM shards s WHERE s.job = j.id)")}

    def jobs(self) -> list[JobInfo]:
        """Every job with a shard, by name, with its size (rows: its current candidates')."""
        shards = self._all("SELECT j.id, j.name, count(*), coalesce(sum(s.bytes), 0), "
                           "max(s.created_at) FROM shards s JOIN jobs j ON j.id = s.job "
                           "GROUP BY j.id ORDER BY j.name")
        current: dict[int, set[int]] = {}
        for job_id, label_id in self._all("SELECT c.job, l.id FROM candidates c JOIN labels l "
                                          "ON l.job = c.job AND l.label = c.label"):
            current.setdefault(job_id, set()).add(label_id)
        listed = {job_id for job_id, in self._all("SELECT DISTINCT job FROM candidates")}
        counts: dict[int, list[int]] = {}
        for job_id, label_id, n, failed in self._all(
                "SELECT job, label, count(*), sum(state & 1) FROM records "
                f"WHERE state >= {LATEST} GROUP BY job, label"):
            if job_id not in listed or label_id in current.get(job_id, ()):
                total = counts.setdefault(job_id, [0, 0])
                total[0] += n
                total[1] += failed
        return [JobInfo(name, *counts.get(job_id, (0, 0)), n, size,
                        datetime.fromisoformat(last) if last else None)
                for job_id, name, n, size, last in shards]

    def shard(self, job: str, name: str) -> ShardEntry | None:
        rows = self._all(f"SELECT name, rows, bytes, sha256 FROM shards WHERE job = {JOB} "
                         "AND name = ?", (job, name))
        return ShardEntry(*rows[0]) if rows else None

    def shards(self, job: str) -> dict[str, ShardEntry]:
        """The job's shards by name, in name order (the order they were written)."""
        return {r[0]: ShardEntry(*r) for r in self._all(
            f"SELECT name, rows, bytes, sha256 FROM shards WHERE job = {JOB} ORDER BY name",
            (job,))}

    def run_shards(self, job: str, run_id: str) -> list[str]:
        """The job's shards one run wrote, in name order."""
        return [r[0] for r in self._all(f"SELECT name FROM shards WHERE job = {JOB} AND "
                                        "run_id = ? ORDER BY name", (job, run_id))]

    def checked(self, job: str) -> dict[str, tuple[ShardEntry, str | None]]:
        """The job's shards with the stat each had when its SHA-256 last matched."""
        return {r[0]: (ShardEntry(*r[:4]), r[4]) for r in self._all(
            f"SELECT name, rows, bytes, sha256, checked FROM shards WHERE job = {JOB}", (job,))}

    def set_checked(self, job: str, name: str, checked: str) -> None:
        with self.guard():
            self.db.execute(f"UPDATE shards SET checked = ? WHERE job = {JOB} AND name = ?",
                            (checked, job, name))

    def all_shards(self) -> set[tuple[str, str]]:
        """(job, name) of every shard."""
        return {(job, name) for job, name in self._all(
            "SELECT j.name, s.name FROM shards s JOIN jobs j ON j.id = s.job")}

    def shards_in_use(self, job: str, *, any_version: bool) -> set[str]:
        """The job's shards holding a latest record of a current candidate, or
        (`any_version`) any record at all."""
        if any_version:  # one pass over the job's records: there is no index by shard
            used = {r[0] for r in self._all(f"SELECT DISTINCT shard FROM records WHERE job = {JOB}",
                                            (job,))}
            return {name for shard_id, name in self._all(
                f"SELECT id, name FROM shards WHERE job = {JOB}", (job,)) if shard_id in used}
        labels = [c.label for c in self.candidates(job)]
        return {r[0] for r in self._all(
            f"SELECT DISTINCT s.name FROM records r JOIN shards s ON s.id = r.shard "
            f"JOIN labels l ON l.id = r.label WHERE r.job = {JOB} AND r.state >= {LATEST} "
            f"AND l.label IN ({marks(labels) or 'NULL'})", (job, *labels))}
