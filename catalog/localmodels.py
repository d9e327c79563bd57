"""Catalog entries for model directories on disk (save_pretrained layout, PEFT adapters).

Reads config.json, adapter_config.json, the README card and the safetensors
headers; never the weights themselves, and never the network.
"""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, constants
from huggingface_hub.repocard_data import ModelCardData
from safetensors import SafetensorError, safe_open

from catalog.hub import (
    _CONTEXT_KEYS,  # the config keys apply_config reads a context length from
    apply_card,
    apply_config,
    dtype_from_counts,
    infer_relation,
)
from catalog.records import ModelEntry
from catalog.sizes import MAX_PARAMS
from schemas.errors import AlmanacError

CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
# What a model directory's metadata may hold. A directory may come from anywhere: a file
# past these bounds is refused with its name, before it is read whole.
MAX_JSON_BYTES = 16 * 1024 * 1024  # config.json, adapter_config.json, a shard index
MAX_CARD_BYTES = 8 * 1024 * 1024  # README.md
MAX_CONTEXT = 2**31 - 1  # tokens of context
MAX_RANK = 65536  # a LoRA adapter's rank


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
    if config is not None:
        _check_config(path / CONFIG, config)
    if adapter is not None:
        _check_adapter(path / ADAPTER_CONFIG, adapter)
    ref = name or path.name
    entry = ModelEntry(ref=ref, name=ref, source=source, local_path=str(path))
    readme = path / constants.REPOCARD_NAME
    if _regular(readme):
        card = _load_card(readme)
        _check_card(readme, card.data)
        try:
            apply_card(entry, card.data, card.text)
        except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
            raise LocalModelError(f"{readme}: unreadable model card metadata: {exc}") from None
        if any(not math.isfinite(e.value) for e in entry.evals):
            raise LocalModelError(f"{readme}: an eval result is not a finite number")
    else:
        apply_card(entry, ModelCardData(), "")
    apply_config(entry, config or {})
    if adapter is not None:
        entry.relation = "adapter"
        entry.base_model = adapter.get("base_model_name_or_path") or entry.base_model
        entry.adapter_rank = adapter.get("r")
        peft_type = str(adapter.get("peft_type") or "").lower()
        entry.tags = list(dict.fromkeys([*entry.tags, "peft", *([peft_type] if peft_type else [])]))
    infer_relation(entry, config or {})
    counts = parameter_counts(path, adapter=adapter is not None)
    if counts is not None:
        entry.parameters = sum(counts.values())
        entry.dtype = entry.dtype or dtype_from_counts(counts)
    return entry


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_config(file: Path, config: dict[str, Any]) -> None:
    """The fields apply_config reads, each of the type and range it must have."""
    nested = config.get("text_config")
    if nested is not None and not isinstance(nested, dict):
        raise LocalModelError(f"{file}: text_config: expected an object")
    architectures = config.get("architectures")
    if architectures is not None and not (
            isinstance(architectures, list)
            and all(isinstance(a, str) and 0 < len(a) <= 200 for a in architectures)):
        raise LocalModelError(f"{file}: architectures: expected a list of class names")
    for prefix, source in (("", config), ("text_config.", nested or {})):
        for key in _CONTEXT_KEYS:
            value = source.get(key)
            if value is not None and not _whole(value, 1, MAX_CONTEXT):
                raise LocalModelError(f"{file}: {prefix}{key}: {_short(value)} is not a context "
                                      f"length (a whole number from 1 to {MAX_CONTEXT})")
        for key in ("torch_dtype", "dtype"):
            value = source.get(key)
            if value is not None and not (isinstance(value, str) and len(value) <= 64):
                raise LocalModelError(f"{file}: {prefix}{key}: expected a dtype name")


def _check_adapter(file: Path, adapter: dict[str, Any]) -> None:
    rank = adapter.get("r")
    if rank is not None and not _whole(rank, 1, MAX_RANK):
        raise LocalModelError(f"{file}: r: {_short(rank)} is not a LoRA rank (a whole number "
                              f"from 1 to {MAX_RANK})")
    for key in ("base_model_name_or_path", "peft_type"):
        value = adapter.get(key)
        if value is not None and not (isinstance(value, str) and len(value) <= 1000):
            raise LocalModelError(f"{file}: {key}: expected a string")


def _check_card(readme: Path, data: ModelCardData) -> None:
    """The card fields apply_card reads: strings, or lists of strings where the Hub allows."""
    for key, lists in (("language", True), ("license", True), ("license_name", False),
                       ("tags", True), ("pipeline_tag", False), ("base_model", True),
                       ("base_model_relation", False)):
        value = data.get(key)
        if value is None or isinstance(value, str):
            continue
        if lists and isinstance(value, list) and all(isinstance(v, str) for v in value):
            continue
        kind = "a string or a list of strings" if lists else "a string"
        raise LocalModelError(f"{readme}: card metadata {key}: expected {kind}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _regular(file: Path) -> bool:
    """Whether `file` exists; a directory, device or FIFO in its place is an error."""
    try:
        mode = file.stat().st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LocalModelError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise LocalModelError(f"{file}: not a regular file")
    return True


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
        if sum(counts.values()) > MAX_PARAMS:
            raise LocalModelError(f"{file}: the tensor shapes add up to more than "
                                  f"{MAX_PARAMS:,} parameters")
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
        if not isinstance(weight_map, dict) or not all(
                isinstance(s, str) and s not in ("", ".", "..") and Path(s).name == s
                for s in weight_map.values()):
            # Shards live beside the index: never a path that leads out of the directory.
            raise LocalModelError(f"{index}: weight_map: expected tensor names mapped to "
                                  "file names in this directory")
        return [directory / shard for shard in sorted(set(weight_map.values()))]
    for single in singles:
        if (directory / single).is_file():
            return [directory / single]
    return sorted(directory.glob("*.safetensors"))


def tensor_shapes(file: Path) -> list[tuple[str, list[int]]]:
    """(dtype, shape) of every tensor in a safetensors file, as its header states them
    (`BF16`, `[4096, 4096]`); the weights are mapped, never read."""
    try:
        # safetensors words every failure to open as "No such file or directory": a file
        # this user may not read is opened here first, so the message says so.
        with file.open("rb"):
            pass
    except OSError as exc:
        raise LocalModelError(f"{file}: not readable: {exc.strerror or exc}") from None
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
    if not _regular(file):
        return None
    try:
        if file.stat().st_size > MAX_JSON_BYTES:
            raise LocalModelError(f"{file}: {file.stat().st_size:,} bytes; a model's JSON "
                                  f"metadata is at most {MAX_JSON_BYTES:,}")
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LocalModelError(f"{file}: not valid JSON: {exc}") from None
    except RecursionError:
        raise LocalModelError(f"{file}: not valid JSON: nested too deeply") from None
    except OSError as exc:
        raise LocalModelError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise LocalModelError(f"{file}: expected a JSON object")
    return data


def _load_card(readme: Path) -> ModelCard:
    # A Path, never a str: ModelCard.load treats a string that is not a file as a
    # repo id and downloads from the Hub.
    if readme.stat().st_size > MAX_CARD_BYTES:
        raise LocalModelError(f"{readme}: {readme.stat().st_size:,} bytes; a model card is at "
                              f"most {MAX_CARD_BYTES:,}")
    try:
        return ModelCard.load(readme, ignore_metadata_errors=True)
    except (yaml.YAMLError, ValueError, OSError) as exc:
        raise LocalModelError(f"{readme}: unreadable model card: {exc}") from None
    except RecursionError:
        raise LocalModelError(f"{readme}: unreadable model card: nested too deeply") from None
