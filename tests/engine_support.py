"""Helpers for tests that drive the real vLLM engine on a tiny generated model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

if TYPE_CHECKING:  # the runner pulls in the catalog and the cache: annotations only
    from batch.run.executors.engine import EnginePool
    from batch.run.runner import Runner

# Every test job uses these engine options, so one engine serves the whole session.
ENGINE_OPTIONS: dict[str, Any] = {
    "max_model_len": 256,
    "dtype": "float32",
    "enforce_eager": True,
    "max_num_seqs": 64,
}
LORA_RANK = 4
MAX_LORAS = 4  # the session's engine serves jobs with up to four adapters at once
TINY_MODEL = "tiny-test"


def sharpen(model_dir: Path, factor: float = 40.0) -> None:
    """Scale the output head so greedy choices are never near-ties: outputs then
    agree across engines and batch shapes, which the crash test compares."""
    from safetensors.torch import load_file, save_file

    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    tensors["lm_head.weight"] = tensors["lm_head.weight"] * factor
    save_file(tensors, str(path), metadata={"format": "pt"})


def write_job(directory: Path, name: str, rows: Sequence[dict[str, Any] | str] | None, *,
              template: str | None = "Say: {{ word }}",
              messages: list[dict[str, str]] | None = None,
              sampling: dict[str, Any] | None = None, model: str = TINY_MODEL,
              adapter: str | None = None, input_name: str | None = None,
              input_format: str | None = None, shard_rows: int = 100,
              engine: dict[str, Any] | None = None) -> Path:
    """A job file (and its input, unless `rows` is None) in `directory`; rows given as
    strings are written as they are, broken lines included."""
    directory.mkdir(parents=True, exist_ok=True)
    input_name = input_name or f"{name}.jsonl"
    if rows is not None:
        with (directory / input_name).open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    job: dict[str, Any] = {"name": name, "model": model}
    if adapter:
        job["adapter"] = adapter
    job["input"] = {"path": input_name}
    if input_format:
        job["input"]["format"] = input_format
    if messages:
        job["prompt"] = {"messages": messages}
    elif template:
        job["prompt"] = {"template": template}
    job["sampling"] = {"max_tokens": 8, "temperature": 0.0, **(sampling or {})}
    job["engine"] = dict(engine or ENGINE_OPTIONS)
    job["output"] = {"shard_rows": shard_rows}
    path = directory / f"{name}.toml"
    path.write_text(tomli_w.dumps(job), encoding="utf-8")
    return path


def almanac(home: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The real command line, in a process of its own."""
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "almanac", *args], env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


def popen_almanac(home: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A background run whose output goes to a file: a pipe would be held open by
    any child process it leaves behind."""
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    with log.open("w") as fh:
        return subprocess.Popen([sys.executable, "-m", "almanac", *args], env=env,
                                stdout=fh, stderr=subprocess.STDOUT)


def runner_for(home: Path, pool: EnginePool, model_dir: Path) -> Runner:
    """A Runner on `home`'s catalog and cache, with the tiny model registered."""
    from batch.run.runner import Runner
    from catalog.db import Catalog
    from catalog.localmodels import entry_from_directory
    from catalog.models import upsert_model

    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, entry_from_directory(model_dir, name=TINY_MODEL))
    from batch.run.executors.local import LocalExecutor

    return Runner(catalog, home / "predictions", home / "locks", executor=LocalExecutor(pool))
