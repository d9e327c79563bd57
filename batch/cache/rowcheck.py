"""Every read checks that the row it read is the record it asked for.

The index says where a record lives (shard, row) and what it is (job, input id,
candidate, key, failed or not). A shard's bytes are checked against the SHA-256 the
index recorded and each page against its checksum, but a row pointer is only a number:
one changed in `index.db` would make another row's prompt and output answer under the
record's name, and a copy would carry them into a fresh shard. So no reader takes a
row's identity from the index: it reads the row's own `job`, `input_id`, `candidate`,
`key` and `error` and compares them with what the index says, one record at a time for
lookups and copies (`check_records`), column by column for whole-job reads
(`check_table`, against the index's `Claims`). A difference is damage to the index
(`RowMismatchError`: exit 1, HTTP 503), which `cache verify` names and `cache repair`
rebuilds from the files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from batch.cache.errors import RowMismatchError
from batch.cache.index_rows import Located

# The columns that say which record a row is (`candidate` is `model` in a shard written
# before candidates: `conform` fills it so).
IDENTITY = ("job", "input_id", "candidate", "key", "error")
_SAID = {"job": "job", "input_id": "input", "candidate": "candidate", "key": "key"}


def described(job: str, input_id: str, candidate: str, key: str) -> str:
    return f"input {input_id!r} (candidate {candidate}, key {key[:12]}…)"


def mismatch(loc: Located, record: Mapping[str, Any]) -> str | None:
    """What the row read for `loc` holds when it is not the record the index describes;
    None when it is."""
    for column, wanted in (("job", loc.job), ("input_id", loc.input_id),
                           ("candidate", loc.candidate), ("key", loc.key)):
        if record[column] != wanted:
            return f"{_SAID[column]} {record[column]!r}"
    if (record["error"] is not None) != loc.failed:
        return "a failure" if record["error"] is not None else "a success"
    return None


def check_records(locs: Sequence[Located], records: Sequence[Mapping[str, Any]]) -> None:
    """Raises RowMismatchError for the first record that is not its `loc`'s."""
    for loc, record in zip(locs, records, strict=True):
        if (found := mismatch(loc, record)) is not None:
            raise RowMismatchError.of(loc.job, loc.shard, loc.row,
                                      described(loc.job, loc.input_id, loc.candidate, loc.key),
                                      found)


@dataclass(frozen=True)
class ShardClaims:
    """What the index says of the rows it lists in one shard, in row order."""

    rows: np.ndarray  # int64
    failed: np.ndarray  # bool
    candidates: pa.Array  # string
    input_ids: pa.Array  # string
    keys: pa.Array  # string


@dataclass(frozen=True)
class Claims:
    """What the index says of a selection of one job's records, column by column, in the
    order it answered (batch.cache.index_reads `claims`): each record's shard id and row
    packed as shard << 34 | row << 2 | failed, its candidate's label id, input id and key."""

    shard_names: dict[int, str]
    label_names: dict[int, str]
    packed: np.ndarray  # int64
    labels: np.ndarray  # int64 label ids
    input_ids: pa.Array  # string
    keys: pa.Array  # string (hex for a SHA-256)

    def by_shard(self) -> Iterator[tuple[str, ShardClaims]]:
        """Each shard's claims, shards in name order (the order they were written)."""
        if not len(self.packed):
            return
        order = np.argsort(self.packed, kind="stable")
        packed = self.packed[order]
        taking = pa.array(order, pa.int64())
        ids, keys = self.input_ids.take(taking), self.keys.take(taking)
        label_ids = sorted(self.label_names)
        names = pa.array([self.label_names[i] for i in label_ids], pa.string())
        where = np.searchsorted(np.asarray(label_ids, dtype=np.int64), self.labels[order])
        candidates = names.take(pa.array(where, pa.int64()))
        shards = packed >> 34
        starts = np.flatnonzero(np.concatenate(([True], shards[1:] != shards[:-1])))
        ends = np.append(starts[1:], len(packed))
        spans = sorted(zip((self.shard_names[int(shards[s])] for s in starts), starts, ends,
                           strict=True))
        for name, start, end in spans:
            part = packed[start:end]
            yield name, ShardClaims((part >> 2) & 0xFFFFFFFF, (part & 1) == 1,
                                    candidates[start:end], ids[start:end], keys[start:end])


def check_table(job: str, shard: str, table: pa.Table, claims: ShardClaims) -> None:
    """`table` holds the rows `claims` lists, in its order (with the IDENTITY columns, a
    shard's `conform`ed columns): raises RowMismatchError for the first that is not the
    record the index says it is."""
    import pyarrow.compute as pc  # whole-job reads only: a lookup does without it

    same = pc.and_(pc.equal(table["input_id"], claims.input_ids),
                   pc.equal(table["key"], claims.keys))
    same = pc.and_(same, pc.equal(table["candidate"], claims.candidates))
    same = pc.and_(same, pc.equal(table["job"], pa.scalar(job, pa.string())))
    failed = pa.array(claims.failed, pa.bool_())
    same = pc.and_(same, pc.equal(table["error"].is_valid(), failed))
    verdict = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    if verdict.all():
        return
    i = int(np.flatnonzero(~verdict)[0])
    found = {c: table[c][i].as_py() for c in IDENTITY}
    loc = Located(job, claims.input_ids[i].as_py(), claims.keys[i].as_py(), shard,
                  int(claims.rows[i]), bool(claims.failed[i]), claims.candidates[i].as_py())
    check_records([loc], [found])
    raise AssertionError("a row differed, then did not")  # pragma: no cover
