"""The engine benchmark's workload: its prompts, its job file, and the model both sides load."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import tomli_w

JOB = "bench-engine"
MODEL_NAME = "bench-model"
# The tiny model's engine options; a real model (--model) gets REAL_MODEL_ENGINE.
TINY_ENGINE: dict[str, Any] = {"dtype": "float32", "max_model_len": 256, "enforce_eager": True}
REAL_MODEL_ENGINE: dict[str, Any] = {"max_model_len": 1024}
WORDS = [
    "peach", "cherry", "plum", "apricot", "nectarine", "mango", "olive", "coconut", "damson",
    "sloe", "apple", "pear", "quince", "loquat", "medlar", "aronia", "rowan", "grape", "tomato",
    "blueberry", "cranberry", "banana", "kiwi", "persimmon", "eggplant", "gooseberry",
    "currant", "guava", "avocado", "papaya", "orange", "lemon", "lime", "grapefruit",
    "tangerine", "mandarin", "pomelo", "kumquat", "citron", "yuzu", "watermelon", "cucumber",
    "pumpkin", "cantaloupe", "zucchini", "squash", "honeydew", "raspberry", "blackberry",
    "strawberry", "pineapple", "mulberry", "fig", "jackfruit"
]


def prompt(i: int) -> str:
    """Prompt number `i`: a few fruit words, different for every i."""
    rng = random.Random(i)
    words = rng.sample(WORDS, rng.randint(3, 7))
    return f"{' '.join(words)} #{i}:"


def write_inputs(path: Path, start: int, stop: int, *, append: bool = False) -> None:
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for i in range(start, stop):
            fh.write(json.dumps({"id": f"p{i:07d}", "text": prompt(i)}) + "\n")


def write_job(directory: Path, engine: dict[str, Any], sampling: dict[str, Any]) -> Path:
    """The job: `{{ text }}` as the template, so Almanac sends vLLM the prompts verbatim."""
    job = {"name": JOB, "model": MODEL_NAME, "input": {"path": "prompts.jsonl"},
           "prompt": {"template": "{{ text }}"}, "sampling": sampling, "engine": engine,
           "output": {"shard_rows": 10_000}}
    path = directory / "job.toml"
    path.write_text(tomli_w.dumps(job), encoding="utf-8")
    return path


def llm_kwargs(model: str, options: dict[str, Any], *, on_cpu: bool,
               revision: str | None = None) -> dict[str, Any]:
    """The keyword arguments `batch.run.executors.engine.Engine.start` gives `vllm.LLM` for a job
    with these [engine] options and no adapter: the raw side builds its LLM with them."""
    from batch.run.executors import target

    return target.llm_kwargs(target.EngineTarget.make(model, revision, options), on_cpu=on_cpu)


def sharpen(model_dir: Path, factor: float = 40.0) -> None:
    """Scale the output head so greedy choices are never near-ties: both sides then pick
    the same tokens whatever their batches look like, and the outputs can be compared."""
    from safetensors.torch import load_file, save_file

    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    tensors["lm_head.weight"] = tensors["lm_head.weight"] * factor
    save_file(tensors, str(path), metadata={"format": "pt"})


def engine_options(model: str | None, given: list[str]) -> dict[str, Any]:
    """The engine options for `model` (TINY_ENGINE for the tiny one, else
    REAL_MODEL_ENGINE) with each `KEY=JSON` given on the command line over them (a
    value that is not JSON is taken as a string)."""
    engine = dict(TINY_ENGINE if model is None else REAL_MODEL_ENGINE)
    for item in given:
        key, _, value = item.partition("=")
        try:
            engine[key] = json.loads(value)
        except json.JSONDecodeError:
            engine[key] = value
    return engine


def prepare_model(ref: str | None, work: Path) -> tuple[Path, str]:
    """The directory both sides load, and what it is: the tiny generated model, a
    directory, a model of the user's catalog with a local path, or a Hub repo id."""
    if ref is None:
        from tests.builders import build_tiny_model

        path = build_tiny_model(work / "tiny-model")
        sharpen(path)
        what = "tiny random Llama from tests.builders.build_tiny_model (lm_head x40)"
        return path.resolve(), what
    if Path(ref).expanduser().is_dir():
        return Path(ref).expanduser().resolve(), f"directory {ref}"
    from almanac.paths import resolve_home
    from catalog.db import open_catalog
    from catalog.models import find_model

    catalog_path = resolve_home(None) / "catalog.db"
    if catalog_path.exists():
        catalog = open_catalog(catalog_path, readonly=True)
        try:
            with catalog.sessions() as s:
                found = find_model(s, ref)
                local, repo = (found.local_path, found.repo_id) if found else (None, None)
        finally:
            catalog.close()
        if local and Path(local).is_dir():
            return Path(local).resolve(), f"catalog model {ref} ({local})"
        ref = repo or ref
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(ref)).resolve(), f"Hub repo {ref}"
