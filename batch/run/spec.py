"""Job specs: a TOML file validated once, at the edge, into typed settings."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schemas
from batch.run.errors import SpecError
from batch.run.prompts import PromptRenderer, PromptSpec
from batch.run.settings import EngineOptions, Sampling

__all__ = ["InputSpec", "JobSpec", "PromptSpec", "SpecError", "load_spec", "spec_from_dict"]


@dataclass(frozen=True)
class InputSpec:
    path: Path
    format: str
    id_field: str


@dataclass(frozen=True)
class JobSpec:
    name: str
    model: str
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

    @property
    def chat(self) -> bool:
        return self.prompt.messages is not None


def load_spec(path: str | Path) -> JobSpec:
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such job file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the job file: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return spec_from_dict(data, path)


def spec_from_dict(data: dict[str, Any], path: Path) -> JobSpec:
    problems = schemas.problems("job", data)
    if problems:
        raise SpecError(f"{path}: invalid job spec: " + "; ".join(problems))
    base = path.parent
    inp = data["input"]
    input_path = (base / inp["path"]).resolve()
    fmt = inp.get("format", "auto")
    if fmt == "auto":
        fmt = _format_from_suffix(input_path, path)
    prompt = data.get("prompt", {})
    context = None
    if cf := prompt.get("context_file"):
        try:
            context = (base / cf).read_text("utf-8")
        except OSError as exc:
            raise SpecError(f"{path}: prompt.context_file: cannot read {cf!r}: {exc.strerror}") from None
    adapter = data.get("adapter")
    if adapter and (base / adapter).exists():
        adapter = str((base / adapter).resolve())
    output = data.get("output", {})
    try:
        sampling = Sampling.from_mapping(data.get("sampling", {}))
    except SpecError as exc:  # what the schema lets through but the settings cannot take
        raise SpecError(f"{path}: sampling.{exc}") from None
    try:
        engine = EngineOptions.from_mapping(data.get("engine", {}))
    except SpecError as exc:
        raise SpecError(f"{path}: engine.{exc}") from None
    spec = JobSpec(
        name=data["name"],
        model=data["model"],
        path=path,
        input=InputSpec(input_path, fmt, inp.get("id_field", "id")),
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
        adapter=adapter,
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
