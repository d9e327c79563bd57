"""A curated set as `almanac train` reads it: exactly the files its dataset card names.

`almanac curate` writes a directory whose README.md starts with YAML front matter; its
`configs[].data_files` name each split's files (what `datasets.load_dataset(DIR)`
reads too). Those files, and no others, are read here (Parquet or JSON Lines), hashed
as they are read (the set's digest, part of a training's key) and checked: each needs a
`messages` column (chat turns, the answer last) or `prompt` and `completion` columns.
A directory without a card is read as `datasets` would: `train.parquet` (or
`train.jsonl`) and `validation.*` beside it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import yaml

from batch.train.errors import TrainError

CARD = "README.md"
SPLITS = ("train", "validation")
READERS = {".parquet": "Parquet", ".jsonl": "JSON Lines", ".json": "JSON Lines"}
MAX_CARD_BYTES = 8 * 1024 * 1024
PROVENANCE = ("job", "candidate", "model", "adapter")
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)


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
    files = data_files(directory)
    digest = hashlib.sha256()
    tables: dict[str, pa.Table] = {}
    for split in SPLITS:
        parts = []
        for path in files.get(split, []):
            data = path.read_bytes()
            digest.update(f"{split}\0{path.relative_to(directory)}\0{len(data)}\0".encode())
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


def data_files(directory: Path) -> dict[str, list[Path]]:
    """Each split's files, as the card's front matter names them (train required)."""
    card = directory / CARD
    if not card.is_file():
        found = {split: [p] for split in SPLITS
                 if (p := _first_file(directory, split)) is not None}
        if "train" not in found:
            raise TrainError(f"--data: {directory}: no {CARD} dataset card naming its splits, "
                             "nor a train.parquet or train.jsonl")
        return found
    meta = front_matter(card)
    configs = meta.get("configs")
    if not isinstance(configs, list) or not configs:
        raise TrainError(f"{card}: its front matter names no data files (`configs`): "
                         "no train split to train on")
    config = next((c for c in configs if isinstance(c, dict)
                   and c.get("config_name") == "default"), configs[0])
    named = _splits(card, config.get("data_files") if isinstance(config, dict) else None)
    if "train" not in named:
        raise TrainError(f"{card}: its `configs` name no train split "
                         f"(splits: {', '.join(named) or 'none'})")
    return {split: [_named_file(card, directory, split, p) for p in patterns]
            for split, patterns in named.items() if split in SPLITS}


def front_matter(card: Path) -> dict[str, Any]:
    """The YAML between a card's leading `---` lines ({} when it has none)."""
    if card.stat().st_size > MAX_CARD_BYTES:
        raise TrainError(f"{card}: over {MAX_CARD_BYTES // (1024 * 1024)} MiB: not a dataset card")
    try:
        text = card.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"{card}: cannot read the dataset card: {exc}") from None
    match = _FRONT.match(text)
    if match is None:
        return {}
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise TrainError(f"{card}: its front matter is not valid YAML: {_first_line(exc)}") from None
    return meta if isinstance(meta, dict) else {}


def _splits(card: Path, data_files: Any) -> dict[str, list[str]]:
    """`data_files` in any of the forms `datasets` takes: a path, a list of paths (the
    train split), {split: path or paths}, or [{split, path or paths}]."""
    out: dict[str, list[str]] = {}

    def add(split: Any, paths: Any) -> None:
        paths = [paths] if isinstance(paths, str) else paths
        if not isinstance(split, str) or not isinstance(paths, list) \
                or not all(isinstance(p, str) and p for p in paths):
            raise TrainError(f"{card}: configs.data_files: expected a split name and its "
                             f"file paths, got {split!r}: {paths!r}")
        out.setdefault(split, []).extend(paths)

    if isinstance(data_files, str) or (isinstance(data_files, list)
                                       and all(isinstance(x, str) for x in data_files)):
        add("train", data_files)
    elif isinstance(data_files, dict):
        for split, paths in data_files.items():
            add(split, paths)
    elif isinstance(data_files, list):
        for item in data_files:
            if not isinstance(item, dict):
                raise TrainError(f"{card}: configs.data_files: expected {{split, path}} "
                                 f"items, got {item!r}")
            add(item.get("split", "train"), item.get("path"))
    else:
        raise TrainError(f"{card}: configs: its config has no data_files")
    return out


def _named_file(card: Path, directory: Path, split: str, pattern: str) -> Path:
    if any(c in pattern for c in "*?["):
        matches = sorted(p for p in directory.glob(pattern) if p.is_file())
        if not matches:
            raise TrainError(f"{card}: names {pattern!r} for the {split} split: no file matches")
        if len(matches) > 1:  # one file per name keeps the digest's order plain
            raise TrainError(f"{card}: names {pattern!r} for the {split} split: "
                             f"{len(matches)} files match; name each file")
        path = matches[0]
    else:
        path = directory / pattern
    resolved = path.resolve()
    if not resolved.is_relative_to(directory):
        raise TrainError(f"{card}: names {pattern!r} for the {split} split: outside {directory}")
    if not resolved.is_file():
        raise TrainError(f"{card}: names {pattern!r} for the {split} split: no such file")
    if resolved.suffix.lower() not in READERS:
        raise TrainError(f"{resolved}: not a Parquet or JSON Lines file (.parquet, .jsonl)")
    return resolved


def _first_file(directory: Path, split: str) -> Path | None:
    for suffix in (".parquet", ".jsonl"):
        if (directory / f"{split}{suffix}").is_file():
            return directory / f"{split}{suffix}"
    return None


def _read(path: Path, data: bytes) -> pa.Table:
    kind = READERS[path.suffix.lower()]
    try:
        if kind == "Parquet":
            table = pq.read_table(pa.BufferReader(data))
        else:
            table = pa_json.read_json(pa.BufferReader(data)) if data.strip() else pa.table({})
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise TrainError(f"{path}: not readable as {kind}: {_first_line(exc)}") from None
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
