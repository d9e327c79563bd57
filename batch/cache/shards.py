"""The Parquet shards of the cache: where they live, how one is written so that no
reader (nor a `kill -9`) ever sees half of it, and how rows are read back.

`predictions/<job>/part-*.parquet` is one Parquet dataset any reader opens
directly. A shard is written under a hidden temporary name (`.<name>.tmp`),
fsynced, then renamed into place; shards are immutable and never renamed
again, except by gc on its way to deleting one (`.<name>.gc`).
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch.cache.errors import UnknownJobError
from batch.cache.index import Index, Located
from batch.cache.schema import PredictionRecord, arrow_schema
from schemas import is_job_name

# Flat string and integer columns: the ones whose Parquet statistics give back their value.
_FLAT = frozenset(f.name for f in arrow_schema()
                  if pa.types.is_string(f.type) or pa.types.is_integer(f.type))
_FROM_INDEX = frozenset({"input_id", "key"})


class ShardMismatch(Exception):
    """The index and a shard disagree: the file is gone from the index, has another size
    or row count, or cannot be read. Readers retry once, then report it."""


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
    with tmp.open("wb") as fh:
        pq.write_table(table, fh, row_group_size=row_group_rows, compression=compression)
        fh.flush()
        os.fsync(fh.fileno())
    digest = file_sha256(tmp)
    size = tmp.stat().st_size
    os.rename(tmp, directory / name)
    fsync_dir(directory)
    return size, digest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Makes a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ---------------------------------------------------------------------------------


def index_entries(path: Path) -> tuple[str | None, list[tuple[str, str, bool]]]:
    """What the index holds of a shard: its run id and each row's (input id, key, failed)."""
    rows = pq.read_table(path, columns=["input_id", "key", "error", "run_id"]).to_pylist()
    run_id = rows[0]["run_id"] if rows else None
    return run_id, [(r["input_id"], r["key"], r["error"] is not None) for r in rows]


def read_rows(path: Path, rows: list[int]) -> pa.Table:
    """These rows of a shard, every column, in the order given."""
    return pq.read_table(path, schema=arrow_schema()).take(pa.array(rows, pa.int64()))


def matching_rows(path: Path, *, contains: str | None, model: str | None) -> list[tuple[str, int]]:
    """(input id, row) of the rows whose output contains `contains` (ignoring case) and
    whose model is `model`; reads only those columns."""
    wanted = ["input_id"] + (["output"] if contains is not None else []) + \
        (["model"] if model is not None else [])
    table = pq.read_table(path, columns=wanted)
    mask = None
    if contains is not None:
        mask = pc.fill_null(pc.match_substring(table["output"], contains, ignore_case=True), False)
    if model is not None:
        same = pc.fill_null(pc.equal(table["model"], model), False)
        mask = same if mask is None else pc.and_(mask, same)
    rows = pc.indices_nonzero(mask).to_pylist()
    ids = table["input_id"].take(pa.array(rows, pa.int64())).to_pylist()
    return list(zip(ids, rows, strict=True))


class OpenShard:
    """A shard kept open for lookups: where each of its row groups starts, and which
    columns each row group need not decode."""

    def __init__(self, path: Path, rows: int, size: int) -> None:
        # memory_map: a row group read is then a slice of the page cache, not a read().
        # Size and row count as indexed: a cheap sign that this is the file the index
        # describes (`cache verify` compares checksums and every row).
        self.source = pa.memory_map(str(path))
        try:
            if self.source.size() != size:
                raise ShardMismatch(f"{path} is {self.source.size()} bytes; the index recorded {size}")
            self.file = pq.ParquetFile(self.source)
            meta = self.file.metadata
            if meta.num_rows != rows:
                raise ShardMismatch(f"{path} has {meta.num_rows} rows; the index recorded {rows}")
        except BaseException:
            self.source.close()
            raise
        self.starts = [0]
        for i in range(meta.num_row_groups):
            self.starts.append(self.starts[-1] + meta.row_group(i).num_rows)
        self.num_rows = meta.num_rows
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

    def read(self, locs: list[Located]) -> list[PredictionRecord]:
        """The records at `locs`. `input_id`, `key` and (for successes) the null `error`
        come from the index, which was built from these very rows (shards are immutable
        and never renamed): decoding them costs a third of a lookup, and `cache verify`
        checks every row against the index."""
        rows = [loc.row for loc in locs]
        groups = sorted({self.group_of(r) for r in rows})
        constants = dict(self.constants(groups[0]))
        for g in groups[1:]:
            other = self.constants(g)
            constants = {k: v for k, v in constants.items() if k in other and other[k] == v}
        if not any(loc.failed for loc in locs):
            constants["error"] = None  # the index's flag is `error IS NOT NULL`
        names = arrow_schema().names
        wanted = [c for c in names if c not in constants and c not in _FROM_INDEX]
        # Only the row groups holding the rows: 1024 rows decoded, not the shard. Threads
        # decode columns in parallel, which pays off even for one row group (measured).
        table = self.file.read_row_groups(groups, columns=wanted, use_threads=True)
        offsets, base = {}, 0
        for g in groups:
            offsets[g] = base
            base += self.starts[g + 1] - self.starts[g]
        take = [offsets[g] + r - self.starts[g] for r in rows for g in (self.group_of(r),)]
        if len(take) == 1:
            picked = table.slice(take[0], 1).to_pylist()
        else:
            picked = table.take(pa.array(take, pa.int64())).to_pylist()
        out = []
        for loc, rec in zip(locs, picked, strict=True):
            rec.update(constants, input_id=loc.input_id, key=loc.key)
            # The schema's column order; the columns are exactly PredictionRecord's.
            out.append(cast(PredictionRecord, {c: rec[c] for c in names}))
        return out

    def close(self) -> None:
        self.file.close()
        self.source.close()
