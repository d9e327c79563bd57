"""A curated set as `almanac train` reads it: exactly the files its dataset card names.

`almanac curate` writes a directory whose card (README.md) names each split's data
files, named by their content (batch.data.curated_set). Those Parquet files, and no
others, are read (`curated_data_files`: never a stale cached copy, never a leftover of
an earlier set), hashed as they are read (the set's digest, part of a training's key)
and checked: each needs a `messages` column (chat turns, the answer last) or `prompt`
and `completion` columns.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.data.curated_set import CARD, SPLITS, CuratedSetError, curated_data_files
from batch.train.errors import TrainError

PROVENANCE = ("job", "candidate", "model", "adapter")


@dataclass
class CuratedSet:
    """The rows of each split the card names, the files they came from and their digest."""

    directory: Path
    files: dict[str, list[Path]]
    digest: str
    tables: dict[str, pa.Table] = field(default_factory=dict)

    def rows(self, split: str) -> int:
        table = self.tables.get(split)
        return table.num_rows if table is not None else 0

    def input_ids(self, split: str) -> list[str]:
        """The curated rows' input ids in one split (curate's provenance column)."""
        table = self.tables.get(split)
        if table is None or "input_id" not in table.column_names:
            return []
        return [i for i in table["input_id"].to_pylist() if i is not None]


def read_curated(directory: Path) -> CuratedSet:
    """Read and check the set in `directory`; TrainError (exit 2) names what is wrong."""
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise TrainError(f"--data: {directory}: not a directory (give one `almanac curate` wrote)")
    try:
        files = curated_data_files(directory, fmt="parquet")
    except CuratedSetError as exc:
        raise TrainError(f"--data: {exc}") from None
    if not files.get("train"):
        raise TrainError(f"{directory / CARD}: names no train split "
                         f"(splits: {', '.join(files) or 'none'})")
    digest = hashlib.sha256()
    tables: dict[str, pa.Table] = {}
    for split in SPLITS:
        parts = []
        for path in files.get(split, []):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise TrainError(f"{path}: cannot be read ({exc.strerror or exc})") from None
            digest.update(f"{split}\0{path.name}\0{len(data)}\0".encode())
            digest.update(data)
            parts.append(_read(path, data))
        if parts:
            try:
                tables[split] = pa.concat_tables(parts, promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise TrainError(f"{files[split][0]}: the {split} split's files do not share "
                                 f"their columns: {_first_line(exc)}") from None
    curated = CuratedSet(directory, files, "sha256:" + digest.hexdigest(), tables)
    if not curated.rows("train"):
        raise TrainError(f"{files['train'][0]}: the train split has no rows")
    return curated


def _read(path: Path, data: bytes) -> pa.Table:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise TrainError(f"{path}: not readable as Parquet: {_first_line(exc)}") from None
    names = set(table.column_names)
    if table.num_rows and "messages" not in names and not {"prompt", "completion"} <= names:
        raise TrainError(f"{path}: no `messages` column, nor `prompt` and `completion` "
                         f"columns (it has: {', '.join(sorted(names)) or 'none'})")
    return table


def sources(table: pa.Table) -> list[dict[str, Any]]:
    """The jobs and candidates the rows came from, with their counts (curate's provenance
    columns; none for a set made elsewhere)."""
    if not set(PROVENANCE) & set(table.column_names):
        return []
    columns = [table[c].to_pylist() if c in table.column_names else [None] * table.num_rows
               for c in PROVENANCE]
    counts = Counter(zip(*columns, strict=True))
    return [dict(zip(PROVENANCE, key, strict=True), rows=n)
            for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
