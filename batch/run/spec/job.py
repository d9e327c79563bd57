"""Job specs: a TOML file validated once, at the edge, into typed settings."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemas
from batch.run.spec.candidates import CandidateSpec, candidate_specs
from batch.run.spec.errors import SpecError
from batch.run.spec.files import MAX_CONTEXT_FILE, MAX_JOB_FILE, FileMissing, FileProblem, read_text
from batch.run.spec.prompts import PromptRenderer, PromptSpec
from batch.run.spec.ray_settings import RaySettings
from batch.run.spec.recipes import apply_recipe
from batch.run.spec.settings import EngineOptions, Sampling

__all__ = ["CandidateSpec", "InputSpec", "JobSpec", "PromptSpec", "SpecError", "load_spec",
           "spec_from_dict"]


@dataclass(frozen=True)
class InputSpec:
    path: Path | None  # None for a chain (`job`): its rows are another job's predictions
    format: str  # jsonl, csv, parquet, openai-batch, or "job" for a chain
    id_field: str
    job: str | None = None  # the upstream job of a chain
    candidate: str | None = None  # the upstream candidate whose predictions it reads
    explode: bool = False  # one row per upstream item (n samples, or a JSON list's items)


@dataclass(frozen=True)
class JobSpec:
    name: str
    model: str  # the top-level `model`; with [[candidates]], the first one's (or its base)
    path: Path  # the job file
    input: InputSpec
    prompt: PromptSpec
    sampling: Sampling
    engine: EngineOptions
    shard_rows: int = 10_000
    row_group_rows: int = 1024
    # LZ4 decodes about twice as fast as zstd: a lookup decodes one row group per
    # column, so the read-heavy cache takes bigger files for faster lookups.
    compression: str = "lz4"
    revision: str | None = None
    adapter: str | None = None
    # [score] as the schema checked it; batch.score reads it (it sits above the run room).
    score: dict[str, Any] | None = None
    # Who runs over the rows: the top-level model (one candidate), or [[candidates]].
    candidates: tuple[CandidateSpec, ...] = ()
    usd_per_hour: float | None = None  # [cost]: the hardware's price, for `compare`
    ray: RaySettings = field(default_factory=RaySettings)  # [ray]: replicas, with --ray

    @property
    def chat(self) -> bool:
        return self.prompt.messages is not None


def load_spec(path: str | Path) -> JobSpec:
    path = Path(path).resolve()
    try:
        data = tomllib.loads(read_text(path, MAX_JOB_FILE))
    except FileMissing:
        raise SpecError(f"{path}: no such job file") from None
    except FileProblem as exc:
        raise SpecError(f"{path}: cannot read the job file: it {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid TOML: nested too deeply") from None
    try:
        return spec_from_dict(data, path)
    except RecursionError:  # a table nested thousands deep, met by the schema's validator
        raise SpecError(f"{path}: invalid job spec: nested too deeply") from None


def _non_finite(value: Any, where: str) -> str | None:
    """The field holding TOML's `nan` or `inf`, if any: no setting of a job takes one (a
    score of nan, a price of inf would turn every mean and cost after it into nonsense)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: {value} is not a finite number"
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        inner = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key
        if found := _non_finite(item, inner):
            return found
    return None


def spec_from_dict(data: dict[str, Any], path: Path) -> JobSpec:
    if problem := _non_finite(data, ""):
        raise SpecError(f"{path}: invalid job spec: {problem}")
    problems = schemas.problems("job", data)
    if problems:
        raise SpecError(f"{path}: invalid job spec: " + "; ".join(problems))
    recipe = apply_recipe(data, path)
    if recipe is not data:  # what the recipe brought must be a valid spec too
        if problems := schemas.problems("job", recipe):
            raise SpecError(f"{path}: invalid job spec with prompt.recipe "
                            f"{data['prompt'].get('recipe')!r}: " + "; ".join(problems))
        data = recipe
    base = path.parent
    inp = data["input"]
    if "job" in inp:
        input_spec = InputSpec(None, "job", "input_id", inp["job"], inp.get("candidate"),
                               inp.get("explode", False))
    else:
        input_path = (base / inp["path"]).resolve()
        fmt = inp.get("format", "auto")
        if fmt == "auto":
            fmt = _format_from_suffix(input_path, path)
        input_spec = InputSpec(input_path, fmt, inp.get("id_field", "id"))
    prompt = data.get("prompt", {})
    context = None
    if cf := prompt.get("context_file"):
        try:
            context = read_text(base / cf, MAX_CONTEXT_FILE)
        except FileProblem as exc:
            raise SpecError(f"{path}: prompt.context_file: cannot read {cf!r}: it {exc}") from None
    candidates = candidate_specs(data, path, data.get("engine", {}))
    first = candidates[0]
    output = data.get("output", {})
    try:
        sampling = Sampling.from_mapping(data.get("sampling", {}))
    except SpecError as exc:  # what the schema lets through but the settings cannot take
        raise SpecError(f"{path}: sampling.{exc}") from None
    try:
        engine = EngineOptions.from_mapping(data.get("engine", {}))
    except SpecError as exc:
        raise SpecError(f"{path}: engine.{exc}") from None
    try:
        ray = RaySettings.from_mapping(data.get("ray", {}))
    except SpecError as exc:
        raise SpecError(f"{path}: ray.{exc}") from None
    spec = JobSpec(
        name=data["name"],
        model=first.model or first.adapters_of or "",
        path=path,
        input=input_spec,
        prompt=PromptSpec(
            template=prompt.get("template"),
            messages=prompt.get("messages"),
            examples=prompt.get("examples", []),
            context=context,
        ),
        sampling=sampling,
        engine=engine,
        shard_rows=output.get("shard_rows", 10_000),
        row_group_rows=output.get("row_group_rows", 1024),
        compression=output.get("compression", "lz4"),
        revision=data.get("revision"),
        adapter=first.adapter if "model" in data else None,
        score=data.get("score"),
        candidates=candidates,
        usd_per_hour=data.get("cost", {}).get("usd_per_hour"),
        ray=ray,
    )
    if spec.input.format != "openai-batch":
        # Compile the templates now, so a syntax error fails the spec before any
        # job of the invocation has run, and names the file.
        try:
            PromptRenderer(spec.prompt)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None
    return spec


def _format_from_suffix(input_path: Path, job_path: Path) -> str:
    suffix = input_path.suffix.lower()
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
    if suffix not in formats:
        raise SpecError(
            f"{job_path}: input.path: cannot tell the format of {input_path.name!r} "
            "(use .jsonl, .csv or .parquet, or set input.format)"
        )
    return formats[suffix]
