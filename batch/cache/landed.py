"""Shards that landed without being indexed (a crash between rename and commit, or an
index rebuilt from the files): how one is checked before it is indexed, and what a
damaged one still tells of the inputs it held.

A damaged shard is set aside, never indexed. The versions it held were the latest of
their inputs when it was written, so an earlier version of those inputs must not take
their place (`Index.supersede`): the inputs become missing, and their next run
generates (or copies) them again. Which inputs those were is read from the pages of
`input_id` and `candidate` that still decode with a valid checksum; a row group whose
pages do not, or a file whose footer does not, leaves it unknown.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from batch.cache.schema import is_known
from batch.cache.shards import CHECKED


def undecodable(path: Path) -> str | None:
    """Why the shard at `path` cannot be trusted, or None: every page decoded and checked."""
    try:
        table = pq.read_table(path, **CHECKED)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        return f"unreadable: {exc}"
    if not is_known(table.schema):
        return "columns differ from schemas/prediction.schema.json"
    return None


def held(path: Path) -> set[tuple[str, str]] | None:
    """The (input id, candidate) pairs a damaged shard held, or None when some of them
    cannot be read."""
    try:
        file = pq.ParquetFile(path, **CHECKED)
        label = "candidate" if "candidate" in file.schema_arrow.names else "model"
        pairs: set[tuple[str, str]] = set()
        for group in range(file.metadata.num_row_groups):
            table = file.read_row_group(group, columns=["input_id", label])
            pairs.update(zip(table["input_id"].to_pylist(), table[label].to_pylist(),
                             strict=True))
    except (OSError, ValueError, KeyError):  # a footer, a page: it cannot tell them all
        return None
    return pairs
