"""A job's current records, column by column, for consumers that read all of them at
once (a chain reading its upstream job, `curate` writing a dataset): one Arrow table
instead of a dict per record, which at a million rows is the difference between a
second and a minute.

Every shard is checked as an export checks it (its SHA-256 against the index, then
each page's checksum as it is decoded, then each row against what the index says it
is: batch.cache.rowcheck); a shard a gc removed between the index query
and the read makes the scan start again once, from the index as it is then.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batch.cache.errors import ShardDamagedError, ShardUnavailableError, UnknownJobError
from batch.cache.reader import CacheReader
from batch.cache.rowcheck import IDENTITY, ShardClaims, check_table
from batch.cache.schema import arrow_schema, conform
from batch.cache.shards import CHECKED, ShardDamaged, damage, job_directory


def latest_table(predictions_root: Path, job: str, columns: list[str], *,
                 candidates: list[str] | None = None) -> pa.Table:
    """The latest record of every input of `job` by these candidates (labels; None: all
    current candidates), with `columns` (schema names) in the order the shards hold them.
    Raises UnknownJobError when the cache holds nothing for `job`."""
    schema = arrow_schema()
    wanted = pa.schema([schema.field(c) for c in columns])
    with CacheReader(predictions_root) as reader:
        if not reader.has_job(job):
            raise UnknownJobError(job)
        labels = candidates if candidates is not None else reader.job(job).select()
        for attempt in range(2):
            try:
                return _read(reader, job, labels, columns, wanted)
            except FileNotFoundError as exc:
                if attempt:
                    raise ShardUnavailableError(
                        f"job {job!r}: a shard disappeared while it was read (a gc?), or is "
                        f"missing: {exc.filename}; try again, or `almanac cache verify {job}`"
                    ) from exc
    raise AssertionError("unreachable")


def _read(reader: CacheReader, job: str, labels: list[str], columns: list[str],
          wanted: pa.Schema) -> pa.Table:
    claims = reader.query(lambda ix: ix.claims(job, labels, all_versions=False), None)
    listed = reader.query(lambda ix: ix.shards(job), {})
    # The columns that say which record a row is come too, to check each row against the
    # index (batch.cache.rowcheck); a shard written before candidates names its rows'
    # candidate by their model.
    reading = list(dict.fromkeys([*columns, *IDENTITY, "model"]))
    directory = job_directory(reader.root, job)

    def one(shard: str, said: ShardClaims) -> pa.Table:
        path = directory / shard
        why = damage(path, listed.get(shard))
        if why == "its file is gone":
            raise FileNotFoundError(2, "gone", str(path))
        try:
            if why is not None:
                raise ShardDamaged(f"{shard}: {why}")
            present = set(pq.read_schema(path).names)
            table = pq.read_table(path, columns=[c for c in reading if c in present], **CHECKED)
            table = conform(table)
            if not np.array_equal(said.rows, np.arange(table.num_rows)):  # not all current
                table = table.take(pa.array(said.rows, pa.int64()))
        except (OSError, IndexError, pa.ArrowException, ShardDamaged) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ShardDamagedError.of(job, exc) from exc
        check_table(job, shard, table, said)
        for name in columns:  # a column older shards lack and conform cannot derive
            if name not in table.column_names:
                table = table.append_column(wanted.field(name).with_nullable(True),
                                            pa.nulls(table.num_rows, wanted.field(name).type))
        return table.select(columns).cast(wanted)

    # Two shards at once: hashing, decoding and checking run mostly outside the GIL. The
    # results come back in shard order, and so does the first error (the shards not yet
    # begun are then not read).
    shards = list(claims.by_shard()) if claims is not None else []
    pool = ThreadPoolExecutor(2, thread_name_prefix="scan")
    try:
        tables = list(pool.map(lambda item: one(*item), shards))
    finally:
        pool.shutdown(cancel_futures=True)
    if not tables:
        return wanted.empty_table()
    return pa.concat_tables(tables)
