"""Searching outputs for a substring (`search(contains=…)`), in milliseconds once warm.

A reader keeps two things per job and selection of candidates:

- each shard's `output` column lowercased, and its input ids (shards are immutable:
  what is kept never goes stale);
- the current rows (the latest of each input, of the candidates selected, in the
  listing's order) as one buffer of their lowercased outputs, each followed by a 0xFF
  byte (never part of UTF-8, so no match spans two outputs). Which rows are current
  comes from the index, again whenever it changed (SQLite's `data_version` says when
  another connection committed); the buffer is rebuilt from the kept columns.

A search is then `bytes.split` / `bytes.find` over one buffer (Arrow's
`match_substring` when a needle is everywhere), and the buffer's order is the
listing's: the first matches are the first page, and a search without a total stops
there. A million outputs of about 20 characters take some 80 MB; past `budget` bytes
the least recently used shards' columns are dropped (read again when needed).

Columns are read through the reader's open shard: its SHA-256 was checked when it
opened and every page's checksum is checked as it decodes, so a missing or damaged
shard holding current rows fails the search, never making the answer silently short.
Case is ignored by lowercasing both sides (Unicode's lowercase mapping).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # the shard class reads Parquet: only for annotations here
    from batch.cache.shards import OpenShard

BUDGET = 512 << 20  # bytes of kept columns per reader (the current rows' buffers apart)
MANY = 100_000  # occurrences past which one Arrow pass over the rows beats splitting
END = b"\xff"  # after each output in a buffer: no UTF-8 text contains it


def lowered(text: str) -> str:
    """`text` lowercased exactly as the columns are."""
    import pyarrow.compute as pc  # loads in tens of ms: searches only, not every lookup

    return str(pc.utf8_lower(pa.scalar(text, pa.string())).as_py())


@dataclass
class ShardColumns:
    """One shard's outputs, lowercased, and its input ids."""

    text: pa.LargeStringArray
    input_ids: pa.LargeStringArray

    @property
    def nbytes(self) -> int:
        return self.text.nbytes + self.input_ids.nbytes


@dataclass
class CurrentText:
    """The current rows in listing order: where each is (shard, row), whether it failed,
    its input id, and its lowercased output in `data` at starts[i] (then 0xFF)."""

    names: list[str]
    shard_of: np.ndarray  # index into names
    rows: np.ndarray
    failed: np.ndarray
    input_ids: pa.Array
    text: pa.Array  # lowercased outputs, for Arrow's pass
    data: bytes
    starts: np.ndarray

    def matching(self, contains: str, failed: bool | None, enough: int | None) -> np.ndarray:
        """Ranks (ascending) of the rows whose output contains `contains`, ignoring case;
        with `enough`, only the first that many (the scan stops there)."""
        needle = lowered(contains).encode()
        if not needle:
            ranks = np.flatnonzero(self.text.is_valid().to_numpy(zero_copy_only=False))
        elif enough is not None:
            return self._first(needle, failed, enough)
        elif self.data.count(needle) > MANY:
            import pyarrow.compute as pc

            hit = pc.fill_null(pc.match_substring(self.text, needle.decode()), False)
            ranks = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
        else:
            pieces = self.data.split(needle)
            lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
            at = np.cumsum(lengths[:-1]) + np.arange(len(pieces) - 1, dtype=np.int64) * len(needle)
            ranks = np.searchsorted(self.starts, at, side="right") - 1
            if len(ranks):
                ranks = ranks[np.concatenate(([True], ranks[1:] != ranks[:-1]))]
        if failed is not None:
            ranks = ranks[self.failed[ranks] == failed]
        return ranks

    def _first(self, needle: bytes, failed: bool | None, enough: int) -> np.ndarray:
        found: list[int] = []
        at = self.data.find(needle)
        while at != -1 and len(found) < enough:
            rank = int(np.searchsorted(self.starts, at, side="right")) - 1
            if failed is None or bool(self.failed[rank]) == failed:
                found.append(rank)
            following = rank + 1
            at = -1 if following >= len(self.starts) else \
                self.data.find(needle, int(self.starts[following]))
        return np.asarray(found, dtype=np.int64)

    def located(self, ranks: np.ndarray) -> list[tuple[str, int, str]]:
        """(shard, row, input id) of these ranks."""
        return [(self.names[int(self.shard_of[r])], int(self.rows[r]), self.input_ids[int(r)].as_py())
                for r in ranks]


class OutputSearch:
    """A reader's kept columns and current rows. Not locked: the reader calls it under
    its own lock."""

    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self._columns: OrderedDict[tuple[str, str], ShardColumns] = OrderedDict()
        self._kept = 0
        self._current: dict[tuple[str, tuple[str, ...], bool], tuple[int, CurrentText]] = {}

    def clear(self) -> None:
        self._columns.clear()
        self._kept = 0
        self._current.clear()

    def current(self, key: tuple[str, tuple[str, ...], bool], version: int,
                list_rows: Callable[[], tuple[dict[int, str], np.ndarray]],
                open_shard: Callable[[str], OpenShard]) -> CurrentText:
        """The current rows of `key` (job, candidates, all versions) at index `version`."""
        kept = self._current.get(key)
        if kept is None or kept[0] != version:
            self._current.pop(key, None)  # what the old one holds may go meanwhile
            kept = (version, self._gather(key[0], *list_rows(), open_shard))
            self._current[key] = kept
        return kept[1]

    def _column(self, job: str, name: str, open_shard: Callable[[str], OpenShard]) -> ShardColumns:
        found = self._columns.get((job, name))
        if found is not None:
            self._columns.move_to_end((job, name))
            return found
        import pyarrow.compute as pc

        table = open_shard(name).file.read(columns=["input_id", "output"], use_threads=True)
        # Large (64-bit offset) strings: a job's outputs gathered may pass 2 GB.
        text = pc.utf8_lower(table["output"].combine_chunks()).cast(pa.large_string())
        ids = table["input_id"].combine_chunks().cast(pa.large_string())
        assert isinstance(text, pa.LargeStringArray) and isinstance(ids, pa.LargeStringArray)
        found = self._columns[(job, name)] = ShardColumns(text, ids)
        self._kept += found.nbytes
        while self._kept > self.budget and len(self._columns) > 1:
            _, dropped = self._columns.popitem(last=False)
            self._kept -= dropped.nbytes
        return found

    def _gather(self, job: str, shard_names: dict[int, str], packed: np.ndarray,
                open_shard: Callable[[str], OpenShard]) -> CurrentText:
        """The rows `packed` lists (Index.current_rows), with their outputs and ids."""
        shard_ids, rows, failed = packed >> 34, (packed >> 2) & 0xFFFFFFFF, (packed & 1) == 1
        present, shard_of = np.unique(shard_ids, return_inverse=True)
        names = [shard_names[int(i)] for i in present]
        columns = [self._column(job, name, open_shard) for name in names]
        base = np.cumsum([0] + [len(c.text) for c in columns], dtype=np.int64)[:-1]
        where = pa.array(base[shard_of] + rows if len(packed) else [], pa.int64())
        text = pa.chunked_array([c.text for c in columns], pa.large_string()).take(where) \
            .combine_chunks()
        ids = pa.chunked_array([c.input_ids for c in columns], pa.large_string()).take(where) \
            .combine_chunks()
        import pyarrow.compute as pc

        ended = pc.binary_join_element_wise(
            text.cast(pa.large_binary()), pa.scalar(b"", pa.large_binary()),
            pa.scalar(END, pa.large_binary()), null_handling="replace", null_replacement=b"")
        offsets = np.frombuffer(ended.buffers()[1], dtype=np.int64, count=len(ended) + 1,
                                offset=ended.offset * 8)
        buffer = ended.buffers()[2]
        data = buffer.to_pybytes()[offsets[0]:offsets[-1]] if buffer is not None else b""
        return CurrentText(names, shard_of, rows, failed, ids, text, data,
                           offsets[:-1] - offsets[0])
