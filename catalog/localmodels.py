"""Catalog entries for model directories on disk (save_pretrained layout, PEFT adapters).

Reads config.json, adapter_config.json, the README card and the safetensors
headers; never the weights themselves, and never the network.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, constants
from huggingface_hub.repocard_data import ModelCardData

from catalog.hub import apply_card, apply_config, dtype_from_counts, infer_relation
from catalog.records import ModelEntry
from schemas.errors import AlmanacError

CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
# safetensors itself refuses headers above 100 MB; a bigger length means a corrupt file.
_MAX_HEADER = 100_000_000


class LocalModelError(AlmanacError, ValueError):
    """A directory that cannot be read as a model; the message names the path."""


def entry_from_directory(path: Path, *, name: str | None = None, source: str = "local") -> ModelEntry:
    """Describe the model saved in `path`; raises LocalModelError when it is not one."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise LocalModelError(f"{path}: not a directory")
    config = _read_json(path / CONFIG)
    adapter = _read_json(path / ADAPTER_CONFIG)
    if config is None and adapter is None:
        raise LocalModelError(
            f"{path}: no {CONFIG} (nor {ADAPTER_CONFIG}): not a Hugging Face model directory"
        )
    ref = name or path.name
    entry = ModelEntry(ref=ref, name=ref, source=source, local_path=str(path))
    readme = path / constants.REPOCARD_NAME
    if readme.is_file():
        card = _load_card(readme)
        apply_card(entry, card.data, card.text)
    else:
        apply_card(entry, ModelCardData(), "")
    apply_config(entry, config or {})
    if adapter is not None:
        entry.relation = "adapter"
        entry.base_model = adapter.get("base_model_name_or_path") or entry.base_model
        rank = adapter.get("r")
        entry.adapter_rank = rank if isinstance(rank, int) else None
        peft_type = str(adapter.get("peft_type") or "").lower()
        entry.tags = list(dict.fromkeys([*entry.tags, "peft", *([peft_type] if peft_type else [])]))
    infer_relation(entry, config or {})
    counts = parameter_counts(path, adapter=adapter is not None)
    if counts is not None:
        entry.parameters = sum(counts.values())
        entry.dtype = entry.dtype or dtype_from_counts(counts)
    return entry


def parameter_counts(directory: Path, *, adapter: bool = False) -> dict[str, int] | None:
    """Parameters per safetensors dtype, like the Hub's `safetensors.parameters`;
    None when the directory has no safetensors weights or some shards are missing
    (a partial download must not pass for a small model)."""
    files = weight_files(directory, adapter=adapter)
    if not files or not all(f.is_file() for f in files):
        return None
    counts: dict[str, int] = {}
    for file in files:
        for tensor in read_safetensors_header(file).values():
            dtype = tensor["dtype"]
            counts[dtype] = counts.get(dtype, 0) + _product(tensor["shape"])
    return counts


def weight_files(directory: Path, *, adapter: bool = False) -> list[Path]:
    """The safetensors files that make up one copy of the weights.

    An index lists the shards; otherwise the conventional single-file names come
    first, because some repos ship the same weights twice (Mistral's
    `consolidated.safetensors` beside its `model-*` shards).
    """
    singles = ["adapter_model.safetensors"] if adapter else []
    singles += ["model.safetensors", "consolidated.safetensors"]
    index = directory / "model.safetensors.index.json"
    if not adapter and index.is_file():
        weight_map = (_read_json(index) or {}).get("weight_map") or {}
        return [directory / shard for shard in sorted(set(weight_map.values()))]
    for single in singles:
        if (directory / single).is_file():
            return [directory / single]
    return sorted(directory.glob("*.safetensors"))


def read_safetensors_header(file: Path) -> dict[str, dict[str, Any]]:
    """Tensor name → {dtype, shape, data_offsets}, read from the header alone:
    an 8-byte little-endian length, then that many bytes of JSON."""
    try:
        with file.open("rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) != 8:
                raise LocalModelError(f"{file}: too short to be a safetensors file")
            (length,) = struct.unpack("<Q", raw_len)
            if length > _MAX_HEADER:
                raise LocalModelError(f"{file}: safetensors header of {length} bytes: corrupt file")
            header = json.loads(fh.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LocalModelError(f"{file}: unreadable safetensors header: {exc}") from None
    except OSError as exc:
        raise LocalModelError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(header, dict):
        raise LocalModelError(f"{file}: safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    for name, tensor in header.items():
        if not (isinstance(tensor, dict) and "dtype" in tensor and isinstance(tensor.get("shape"), list)):
            raise LocalModelError(f"{file}: tensor {name!r} has no dtype or shape in the header")
    return header


def _product(shape: list[int]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n  # a scalar (shape []) is one parameter


def _read_json(file: Path) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LocalModelError(f"{file}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise LocalModelError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise LocalModelError(f"{file}: expected a JSON object")
    return data


def _load_card(readme: Path) -> ModelCard:
    # A Path, never a str: ModelCard.load treats a string that is not a file as a
    # repo id and downloads from the Hub.
    try:
        return ModelCard.load(readme, ignore_metadata_errors=True)
    except (yaml.YAMLError, ValueError, OSError) as exc:
        raise LocalModelError(f"{readme}: unreadable model card: {exc}") from None
