"""The prediction index's format: its tables, and the upgrade of an index an earlier
version wrote. Part of `batch.cache.index`, the index's one owner (only it calls this;
it opens the file as every side store is opened, batch.cache.sidestore).

The format is `PRAGMA user_version`. Format 2 added candidates: records carry
the candidate that made them, and `candidates` lists each job's current ones.
Format 3 is the same content in a third of the room (452 bytes a prediction
became about 110): jobs, shards and candidate labels are small integers, a
SHA-256 key is stored once as its 32 bytes and found by an index on 8 of
them, and "the latest of its input" is a bit of the record's `state` instead
of a second copy of it.

An earlier index is upgraded in one write transaction (a crash leaves it as
it was, and the next open upgrades it again), then vacuumed so that the file
shrinks. From format 0 (no candidates) the candidate of each record is its
shard's `model` column (the files are the truth): earlier runs had one model,
which is what readers take as such a record's candidate.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from pathlib import Path

from batch.cache.errors import CacheUnavailableError
from batch.cache.index_rows import key_in

log = logging.getLogger("almanac.batch.cache")

INDEX_FILE = "index.db"
FORMAT = 3
# state: bit 0 the record failed (its `error` is not null), bit 1 it is the latest of its
# (job, input, candidate). `key` is key_in(key): 32 bytes for a SHA-256.
TABLES = [
    """CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE
)""",
    # AUTOINCREMENT: ids are never reused, so none can come to mean another file
    # checked: the file's stat (inode, size, mtime, ctime) when its SHA-256 last matched;
    # a run hashes again only a shard whose stat has changed since
    """CREATE TABLE IF NOT EXISTS shards (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job INTEGER NOT NULL, name TEXT NOT NULL,
    rows INTEGER NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, run_id TEXT,
    created_at TEXT NOT NULL, checked TEXT, UNIQUE (job, name)
)""",
    # every candidate label records of a job name, current or not
    """CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job INTEGER NOT NULL, label TEXT NOT NULL,
    UNIQUE (job, label)
)""",
    """CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY, job INTEGER NOT NULL, input_id TEXT NOT NULL,
    label INTEGER NOT NULL, key BLOB NOT NULL, shard INTEGER NOT NULL, row INTEGER NOT NULL,
    state INTEGER NOT NULL
)""",
    # lookups by (job, input id, candidate), the latest by `state`; listings in input id
    # order; counts and a search's current rows (it covers them)
    "CREATE INDEX IF NOT EXISTS records_by_input ON records "
    "(job, input_id, label, state, shard, row)",
    # planning's "generated anywhere?" and lookups by key
    "CREATE INDEX IF NOT EXISTS records_by_key ON records (substr(key, 1, 8))",
    """CREATE TABLE IF NOT EXISTS candidates (
    job INTEGER NOT NULL, label TEXT NOT NULL, model TEXT NOT NULL, revision TEXT,
    adapter TEXT, adapter_revision TEXT, ordinal INTEGER NOT NULL,
    PRIMARY KEY (job, label)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS fingerprints (
    path TEXT PRIMARY KEY, signature TEXT NOT NULL, digest TEXT NOT NULL
)""",
]
# Format 2's tables: what format 0 is first upgraded to.
FORMAT_2 = [
    """CREATE TABLE IF NOT EXISTS shards (
    job TEXT NOT NULL, name TEXT NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL, run_id TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (job, name)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS records (
    job TEXT NOT NULL, input_id TEXT NOT NULL, candidate TEXT NOT NULL, key TEXT NOT NULL,
    shard TEXT NOT NULL, row INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (job, input_id, candidate, key)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS latest (
    job TEXT NOT NULL, input_id TEXT NOT NULL, candidate TEXT NOT NULL, key TEXT NOT NULL,
    shard TEXT NOT NULL, row INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (job, input_id, candidate)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS candidates (
    job TEXT NOT NULL, label TEXT NOT NULL, model TEXT NOT NULL, revision TEXT,
    adapter TEXT, adapter_revision TEXT, ordinal INTEGER NOT NULL,
    PRIMARY KEY (job, label)
) WITHOUT ROWID""",
]
COPY_BATCH = 20_000  # records moved per statement while upgrading


class IndexFormatError(CacheUnavailableError):
    """The index is in a format this version cannot read or upgrade here."""

    @classmethod
    def newer(cls, path: Path, version: int) -> IndexFormatError:
        if version > FORMAT:
            return cls(f"{path} is format {version}; this version of Almanac reads format "
                       f"{FORMAT}: upgrade Almanac")
        return cls(f"{path} is format {version} and could not be upgraded to {FORMAT}")


def ensure_current(db: sqlite3.Connection, root: Path) -> None:
    """Create the tables, or upgrade an earlier format's, on a read-write connection."""
    if db.execute("PRAGMA user_version").fetchone()[0] == FORMAT:
        return
    db.execute("BEGIN IMMEDIATE")
    upgraded = False
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]  # another may have done it
        if version > FORMAT:
            raise IndexFormatError.newer(root / INDEX_FILE, version)
        if version < FORMAT:
            earlier = _columns(db, "records")
            if earlier and "candidate" not in earlier and "label" not in earlier:
                _upgrade_from_0(db, root)
                earlier = _columns(db, "records")
            if "candidate" in earlier:
                _upgrade_from_2(db)
                upgraded = True
            for statement in TABLES:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {FORMAT}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    on_disk = db.execute("PRAGMA database_list").fetchone()[2]  # "" in memory (a dry run)
    if upgraded and on_disk:
        _vacuum(db)


def _vacuum(db: sqlite3.Connection) -> None:
    """Give the earlier tables' pages back to the file system. Busy readers make it wait
    or fail; the index is correct either way, only larger until the next upgrade."""
    try:
        db.execute("VACUUM")
    except sqlite3.OperationalError as exc:
        log.warning("the upgraded prediction index could not be compacted now (%s)", exc)


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _upgrade_from_2(db: sqlite3.Connection) -> None:
    """Inside the caller's transaction: format 2's tables into format 3's."""
    db.execute("DROP INDEX IF EXISTS records_by_key")
    for table in ("shards", "records", "latest", "candidates"):
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_2")
    for statement in TABLES:
        db.execute(statement)
    db.execute("INSERT INTO jobs (name) SELECT job FROM shards_2 UNION SELECT job FROM records_2 "
               "UNION SELECT job FROM candidates_2 ORDER BY 1")
    db.execute("INSERT INTO shards (job, name, rows, bytes, sha256, run_id, created_at) "
               "SELECT j.id, s.name, s.rows, s.bytes, s.sha256, s.run_id, s.created_at "
               "FROM shards_2 s JOIN jobs j ON j.name = s.job ORDER BY j.id, s.name")
    db.execute("INSERT INTO labels (job, label) SELECT j.id, r.candidate FROM "
               "(SELECT job, candidate FROM records_2 UNION SELECT job, candidate FROM latest_2) r "
               "JOIN jobs j ON j.name = r.job ORDER BY 1, 2")
    db.execute("INSERT INTO candidates SELECT j.id, c.label, c.model, c.revision, c.adapter, "
               "c.adapter_revision, c.ordinal FROM candidates_2 c JOIN jobs j ON j.name = c.job")
    # Records whose shard is not listed are dropped: their file, if it is there, is a
    # landed shard recovery indexes again; `latest` entries naming no record go too.
    rows = db.execute(
        "SELECT j.id, r.input_id, l.id, r.key, s.id, r.row, r.failed, t.job IS NOT NULL "
        "FROM records_2 r JOIN jobs j ON j.name = r.job "
        "JOIN labels l ON l.job = j.id AND l.label = r.candidate "
        "JOIN shards s ON s.job = j.id AND s.name = r.shard "
        "LEFT JOIN latest_2 t ON t.job = r.job AND t.input_id = r.input_id "
        "AND t.candidate = r.candidate AND t.key = r.key AND t.shard = r.shard AND t.row = r.row "
        "ORDER BY s.id, r.row")
    while batch := rows.fetchmany(COPY_BATCH):
        db.executemany(
            "INSERT INTO records (job, input_id, label, key, shard, row, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(job, input_id, label, key_in(key), shard, row, int(failed) | (2 if latest else 0))
             for job, input_id, label, key, shard, row, failed, latest in batch])
    for table in ("shards", "records", "latest", "candidates"):
        db.execute(f"DROP TABLE {table}_2")


def _upgrade_from_0(db: sqlite3.Connection, root: Path) -> None:
    """Inside the caller's transaction: give every record the candidate its shard names."""
    per_shard, per_row, per_job = _shard_candidates(db, root)
    db.execute("CREATE TEMP TABLE up_shard (job TEXT, shard TEXT, candidate TEXT, "
               "PRIMARY KEY (job, shard))")
    db.execute("CREATE TEMP TABLE up_row (job TEXT, shard TEXT, row INTEGER, candidate TEXT, "
               "PRIMARY KEY (job, shard, row))")
    db.execute("CREATE TEMP TABLE up_job (job TEXT PRIMARY KEY, candidate TEXT)")
    db.executemany("INSERT INTO up_shard VALUES (?, ?, ?)",
                   [(j, s, c) for (j, s), c in per_shard.items()])
    db.executemany("INSERT INTO up_row VALUES (?, ?, ?, ?)",
                   [(j, s, r, c) for (j, s, r), c in per_row.items()])
    db.executemany("INSERT INTO up_job VALUES (?, ?)", list(per_job.items()))
    db.execute("DROP INDEX IF EXISTS records_by_key")
    for table in ("records", "latest"):
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_0")
    for statement in FORMAT_2:
        db.execute(statement)
    for table in ("records", "latest"):
        # A record whose shard cannot be read takes its job's candidate (one model for
        # the whole job, usually); `cache verify` reports the shard itself.
        db.execute(
            f"INSERT INTO {table} (job, input_id, candidate, key, shard, row, failed) "
            "SELECT t.job, t.input_id, coalesce(r.candidate, s.candidate, j.candidate, ''), "
            f"t.key, t.shard, t.row, t.failed FROM {table}_0 t "
            "LEFT JOIN up_row r ON r.job = t.job AND r.shard = t.shard AND r.row = t.row "
            "LEFT JOIN up_shard s ON s.job = t.job AND s.shard = t.shard "
            "LEFT JOIN up_job j ON j.job = t.job")
        db.execute(f"DROP TABLE {table}_0")
    # Each job's candidates: the models its latest records name, labelled with them.
    db.execute("INSERT INTO candidates (job, label, model, ordinal) SELECT job, candidate, "
               "candidate, row_number() OVER (PARTITION BY job ORDER BY candidate) - 1 "
               "FROM (SELECT DISTINCT job, candidate FROM latest)")
    for temp in ("up_shard", "up_row", "up_job"):
        db.execute(f"DROP TABLE {temp}")


def _shard_candidates(db: sqlite3.Connection, root: Path) -> tuple[
        dict[tuple[str, str], str], dict[tuple[str, str, int], str], dict[str, str]]:
    """Each indexed shard's model, if one throughout (else each row's), and each job's
    most common one."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    per_shard: dict[tuple[str, str], str] = {}
    per_row: dict[tuple[str, str, int], str] = {}
    seen: dict[str, Counter[str]] = {}
    for job, name in db.execute("SELECT job, name FROM shards").fetchall():
        path = root / job / name
        try:
            names = pq.read_schema(path).names
            column = "candidate" if "candidate" in names else "model"
            models = pq.read_table(path, columns=[column])[column]
        except (OSError, ValueError):  # gone or damaged: `cache verify` reports it
            continue
        distinct = pc.unique(models).to_pylist()
        if len(distinct) == 1:
            per_shard[(job, name)] = distinct[0]
            seen.setdefault(job, Counter())[distinct[0]] += len(models)
        else:
            for i, model in enumerate(models.to_pylist()):
                per_row[(job, name, i)] = model
                seen.setdefault(job, Counter())[model] += 1
    for job, in db.execute("SELECT DISTINCT job FROM records").fetchall():
        seen.setdefault(job, Counter())
    per_job = {job: counts.most_common(1)[0][0] if counts else "" for job, counts in seen.items()}
    return per_shard, per_row, per_job
