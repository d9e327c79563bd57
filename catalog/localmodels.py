"""Catalog entries for model directories on disk (save_pretrained layout, PEFT adapters).

Reads config.json, adapter_config.json, the README card and the safetensors
headers; never the weights themselves, and never the network.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, constants
from huggingface_hub.repocard_data import ModelCardData
from safetensors import SafetensorError, safe_open

from catalog.hub import apply_card, apply_config, dtype_from_counts, infer_relation
from catalog.records import ModelEntry
from schemas.errors import AlmanacError

CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"


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
        for dtype, shape in tensor_shapes(file):
            counts[dtype] = counts.get(dtype, 0) + math.prod(shape)  # a scalar counts 1
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


def tensor_shapes(file: Path) -> list[tuple[str, list[int]]]:
    """(dtype, shape) of every tensor in a safetensors file, as its header states them
    (`BF16`, `[4096, 4096]`); the weights are mapped, never read."""
    try:
        # "numpy": the lightest framework to name; no tensor is ever materialized.
        with safe_open(file, framework="numpy") as weights:
            slices = [weights.get_slice(name) for name in weights.keys()]  # noqa: SIM118 - not a dict
            return [(s.get_dtype(), list(s.get_shape())) for s in slices]
    except SafetensorError as exc:  # a bad header, or a file shorter than it says
        raise LocalModelError(f"{file}: not a valid safetensors file: {exc}") from None
    except OSError as exc:
        raise LocalModelError(f"{file}: cannot read: {exc.strerror or exc}") from None


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
