"""The Parquet shards of the cache: where they live, how one is written so that no
reader (nor a `kill -9`) ever sees half of it, and how rows are read back.

`predictions/<job>/part-*.parquet` is one Parquet dataset any reader opens
directly. A shard is written under a hidden temporary name (`.<name>.tmp`),
fsynced, then renamed into place; shards are immutable and never renamed
again, except by gc on its way to deleting one (`.<name>.gc`).
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.cache.decoded import Fetched, int64_array
from batch.cache.errors import DiskFullError, JobDirectoryError, UnknownJobError
from batch.cache.index import Index, Located, ShardEntry
from batch.cache.rowcheck import IDENTITY
from batch.cache.schema import LATER_COLUMNS, PredictionRecord, arrow_schema, conform
from schemas import is_job_name

# Flat string, integer and boolean columns: the ones whose Parquet statistics give back
# their value.
_FLAT = frozenset(f.name for f in arrow_schema()
                  if pa.types.is_string(f.type) or pa.types.is_integer(f.type)
                  or pa.types.is_boolean(f.type))


class ShardMismatch(Exception):
    """The index and a shard disagree: the file is gone from the index, has another size
    or row count, or cannot be read. Readers retry once, then report it."""


class ShardDamaged(ShardMismatch):
    """The file under a shard's name is not the one the index describes: its size, its
    SHA-256, a page checksum or its row count differ, or it does not decode. Never a
    race (shards are immutable and keep their names): the rows it holds are refused."""


class ForeignShard(ValueError):
    """A shard whose rows name another job than the directory it sits in (copied or moved
    there by hand): never indexed there, set aside instead."""


# Every read checks the CRC of each page it decodes (written with each page below).
CHECKED = {"page_checksum_verification": True}
DAMAGED_SUFFIX = ".damaged"
FOREIGN_SUFFIX = ".foreign"


# -- where shards live -----------------------------------------------------------------------


def job_dirs(root: Path) -> set[str]:
    """The jobs that have a directory under `root` (a home's `predictions/`)."""
    if not root.exists():
        return set()
    return {p.name for p in root.iterdir() if p.is_dir() and is_job_name(p.name)}


def known_jobs(root: Path, index: Index | None) -> set[str]:
    """The jobs the index lists or that have a directory."""
    return (index.job_names() if index is not None else set()) | job_dirs(root)


def select_jobs(root: Path, index: Index | None, job: str | None) -> list[str]:
    """`job`, if the index or the disk knows it, else every job they know, by name."""
    known = known_jobs(root, index)
    if job is None:
        return sorted(known)
    if job not in known:
        raise UnknownJobError(job)
    return [job]


def landed(directory: Path, indexed: Container[str]) -> list[Path]:
    """Shards in `directory` the index does not list (a crash after their rename), oldest first."""
    return [p for p in sorted(directory.glob("*.parquet"))
            if not p.name.startswith(".") and p.name not in indexed]


def temporaries(directory: Path) -> list[Path]:
    """Writes in progress, or ones a crash interrupted."""
    return sorted(directory.glob(".*.tmp"))


def collected(directory: Path) -> list[Path]:
    """Shards gc renamed on their way out (`.<name>.gc`): a collection it did not finish."""
    return sorted(directory.glob(".*.gc"))


def set_aside(path: Path, suffix: str = DAMAGED_SUFFIX) -> Path:
    """Rename a damaged shard to `.<name>.damaged` (a foreign one to `.<name>.foreign`;
    `.damaged.1`, … if taken): out of the dataset, out of recovery's sight, and kept as
    evidence (nothing deletes it)."""
    target = path.with_name(f".{path.name}{suffix}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f".{path.name}{suffix}.{n}")
    os.rename(path, target)
    fsync_path(path.parent)
    return target


def forget_moving(index: Index, job: str, names: list[str],
                  move: Callable[[str], tuple[Path, Path] | None]) -> list[tuple[Path, Path]]:
    """Drop these shards (and every record in them) from the index and move their files
    out of the dataset, in one index transaction: `move(name)` moves one file before the
    commit, returning (where it is now, where it was), or None when it moved nothing.
    If the transaction fails, every file moved goes back, so a committed index never
    names a file that is gone, nor a file lies under its name without index rows.
    Returns what was moved."""
    moved: list[tuple[Path, Path]] = []
    try:
        with index.transaction():
            index.forget_shards(job, names)
            for name in names:
                if (done := move(name)) is not None:
                    moved.append(done)
    except BaseException:
        for now, was in moved:
            os.rename(now, was)
        raise
    return moved


# -- writing ---------------------------------------------------------------------------------


def shard_name(run_id: str, seq: int) -> str:
    """Names sort in the order shards were written, which recovery relies on."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"part-{stamp}-{run_id[:8]}-{seq:05d}.parquet"


def write_shard(directory: Path, name: str, records: Sequence[Mapping[str, object]],
                row_group_rows: int, compression: str = "lz4") -> tuple[int, str]:
    """Write `records` durably as `directory/name`; returns its size and SHA-256."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.tmp"
    table = pa.Table.from_pylist(list(records), schema=arrow_schema())
    try:
        with tmp.open("wb") as fh:
            pq.write_table(table, fh, row_group_size=row_group_rows, compression=compression,
                           use_dictionary=repeating(table), write_page_checksum=True)
            fh.flush()
            os.fsync(fh.fileno())
        digest = file_sha256(tmp)
        size = tmp.stat().st_size
        os.rename(tmp, directory / name)
    except BaseException as exc:
        # A full disk or a signal mid-write: no half-written file stays to fill the disk
        # further (the next run's recovery would remove it too), and nothing is indexed.
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left" in str(exc)):
            raise DiskFullError(
                f"no space left on the device holding {directory} while writing a shard of "
                f"{len(records)} rows: nothing of it was kept; the shards written before "
                "are indexed, so after freeing space the next run resumes from there") from exc
        raise
    fsync_path(directory)
    return size, digest


def repeating(table: pa.Table) -> list[str]:
    """The flat columns whose values repeat in `table` (at most half of them distinct):
    those a shard keeps as dictionaries. The others (keys, input ids, most prompts and
    timestamps) are written plain: a dictionary of values all different holds each once
    more, and every read would decode it and then copy each value out of it (a sixth
    of what decoding a lookup's row groups costs)."""
    import pyarrow.compute as pc  # loaded by writing, not by a lookup

    return [f.name for f, column in zip(table.schema, table.columns, strict=True)
            if not pa.types.is_nested(f.type)
            and pc.count_distinct(column).as_py() * 2 <= table.num_rows]


def job_directory(root: Path, job: str) -> Path:
    """The directory of `job`'s shards under `root` (it may not exist yet); something else
    in its place is a JobDirectoryError."""
    directory = root / job
    if not directory.is_dir() and directory.exists():
        raise JobDirectoryError(job, directory)
    return directory


def damage(path: Path, entry: ShardEntry | None) -> str | None:
    """Why the file at `path` is not the shard the index describes (gone, another size,
    another SHA-256), or None: it is, byte for byte."""
    if entry is None:
        return "the index does not list it"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "its file is gone"
    if size != entry.bytes:
        return f"{size} bytes; the index recorded {entry.bytes}"
    if file_sha256(path) != entry.sha256:
        return "its SHA-256 differs from the one indexed"
    return None


def stat_signature(path: Path) -> str | None:
    """What changes when a file is written, replaced or truncated (inode, size, mtime,
    ctime); None when it is gone."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flushes a file to disk, or makes a rename in a directory durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ---------------------------------------------------------------------------------


def index_entries(path: Path, job: str) -> tuple[str | None, list[tuple[str, str, bool, str]]]:
    """What the index holds of a shard of `job`: its run id and each row's (input id, key,
    failed, candidate); a shard written before candidates names its rows' model instead.
    Raises ForeignShard if a row names another job."""
    names = pq.read_schema(path).names
    label = "candidate" if "candidate" in names else "model"
    table = pq.read_table(path, columns=["job", "input_id", "key", "error", "run_id", label],
                          **CHECKED)
    foreign(path, job, table)
    rows = table.to_pylist()
    run_id = rows[0]["run_id"] if rows else None
    return run_id, [(r["input_id"], r["key"], r["error"] is not None, r[label]) for r in rows]


def foreign(path: Path, job: str, table: pa.Table) -> None:
    """Raises ForeignShard if a row of `table` (read from `path`, with its `job` column)
    names another job than `job`, the directory's."""
    import pyarrow.compute as pc  # loaded by indexing, not by a lookup

    others = pc.unique(pc.filter(table["job"], pc.not_equal(table["job"], job)))
    if len(others):
        raise ForeignShard(f"{path.name} holds rows of job {others[0].as_py()!r}, not "
                           f"{job!r}, the directory it sits in")


def identities(path: Path) -> list[dict[str, Any]]:
    """Each row's identity columns (batch.cache.rowcheck.IDENTITY), every page checked."""
    present = set(pq.read_schema(path).names)
    columns = [c for c in (*IDENTITY, "model") if c in present]
    return conform(pq.read_table(path, columns=columns, **CHECKED)).to_pylist()


def read_rows(path: Path, rows: list[int]) -> pa.Table:
    """These rows of a shard, every column, in the order given."""
    table = conform(pq.read_table(path, **CHECKED)).cast(arrow_schema())
    return table.take(pa.array(rows, pa.int64()))


class OpenShard:
    """A shard kept open for lookups: where each of its row groups starts, and which
    columns each row group need not decode."""

    def __init__(self, path: Path, rows: int, size: int, sha256: str | None = None) -> None:
        # Plain reads, not a memory map: a shard truncated while it is open must fail a
        # read, not kill the process with SIGBUS. The whole file's SHA-256, once per open
        # (about 1 ms a megabyte here), proves it is the file the index describes: page
        # checksums leave page headers, the footer and its statistics (which `constants`
        # serves values from) uncovered. Pages are checked again as they are decoded,
        # should the file change while it is open.
        self.source = pa.OSFile(str(path))
        try:
            if self.source.size() != size:
                raise ShardDamaged(f"{path.name} is {self.source.size()} bytes; the index "
                                   f"recorded {size}")
            if sha256 is not None:
                digest = hashlib.sha256()
                while chunk := self.source.read(1 << 20):
                    digest.update(chunk)
                self.source.seek(0)
                found = digest.hexdigest()
                if found != sha256:
                    raise ShardDamaged(f"{path.name}: its SHA-256 differs from the one indexed")
            try:
                self.file = pq.ParquetFile(self.source, **CHECKED)
            except (OSError, pa.ArrowException) as exc:
                raise ShardDamaged(f"{path.name}: unreadable: {exc}") from exc
            meta = self.file.metadata
            if meta.num_rows != rows:
                raise ShardDamaged(f"{path.name} has {meta.num_rows} rows; the index recorded {rows}")
        except BaseException:
            self.source.close()
            raise
        self.starts = [0]
        for i in range(meta.num_row_groups):
            self.starts.append(self.starts[-1] + meta.row_group(i).num_rows)
        self.num_rows = meta.num_rows
        # Columns a shard an earlier version wrote lacks: filled on every read.
        self.missing = [c for c in LATER_COLUMNS if c not in self.file.schema_arrow.names]
        self._constants: dict[int, dict[str, Any]] = {}

    def group_of(self, row: int) -> int:
        return bisect.bisect_right(self.starts, row) - 1

    def constants(self, group: int) -> dict[str, Any]:
        """Columns whose statistics prove them all null, or one value throughout, in
        this row group. Decoding a column chunk has a fixed cost (a zstd context, a
        dictionary page) that dominates a one-row read, and a job's `job`, `model`,
        `revision`, `run_id`, `adapter`, `logprobs`… rarely vary within 1024 rows."""
        if (found := self._constants.get(group)) is not None:
            return found
        found = {}
        meta = self.file.metadata.row_group(group)
        for j in range(meta.num_columns):
            chunk = meta.column(j)
            name = chunk.path_in_schema
            stats = chunk.statistics
            if name not in _FLAT or stats is None or not stats.has_null_count:
                continue
            if stats.null_count == meta.num_rows:
                found[name] = None
            elif stats.null_count == 0 and stats.has_min_max and stats.min == stats.max:
                # Equal min and max are exact: a writer truncating long values would
                # have made them differ.
                found[name] = stats.min
        self._constants[group] = found
        return found

    def fetch(self, rows: list[int]) -> Fetched:
        """These rows: the columns their row groups must decode, and those `constants`
        gives. Arrow's work alone (no Python object per row), so a reader may run
        several shards' fetches at once."""
        groups = sorted({self.group_of(r) for r in rows})
        constants = dict(self.constants(groups[0]))
        for g in groups[1:]:
            other = self.constants(g)
            constants = {k: v for k, v in constants.items() if k in other and other[k] == v}
        wanted = [c for c in arrow_schema().names if c not in constants and c not in self.missing]
        # Threads decode columns in parallel, which pays off even for one row group (measured).
        table = self.file.read_row_groups(groups, columns=wanted, use_threads=True)
        offsets, base = {}, 0
        for g in groups:
            offsets[g] = base
            base += self.starts[g + 1] - self.starts[g]
        take = [offsets[g] + r - self.starts[g] for r in rows for g in (self.group_of(r),)]
        table = table.slice(take[0], 1) if len(take) == 1 else table.take(int64_array(take))
        return Fetched(table, constants, self.missing)

    def read(self, locs: list[Located]) -> list[PredictionRecord]:
        """The records at `locs`, each checked to be the record its `loc` names (its job,
        input id, candidate, key and failure: batch.cache.rowcheck): RowMismatchError
        if the index points one at another row."""
        return self.fetch([loc.row for loc in locs]).records(locs)

    def close(self) -> None:
        self.file.close()
        self.source.close()
