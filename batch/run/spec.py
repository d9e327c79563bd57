"""Job specs: a TOML file validated once, at the edge, into typed settings."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemas
from schemas.errors import UsageError

SAMPLING_DEFAULTS: dict[str, Any] = {
    "max_tokens": 16,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "min_p": 0.0,
    "seed": None,
    "stop": [],
    "n": 1,
    "logprobs": None,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
    "choice": None,
    "regex": None,
    "json_schema": None,
}


class SpecError(UsageError, ValueError):
    """An invalid job spec; the message names the file and the field path."""


@dataclass(frozen=True)
class InputSpec:
    path: Path
    format: str
    id_field: str


@dataclass(frozen=True)
class PromptSpec:
    template: str | None = None
    messages: list[dict[str, str]] | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    context: str | None = None  # the context file's text


@dataclass(frozen=True)
class JobSpec:
    name: str
    model: str
    path: Path  # the job file
    input: InputSpec
    prompt: PromptSpec
    sampling: dict[str, Any]  # normalized: every key of SAMPLING_DEFAULTS
    engine: dict[str, Any]
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


def normalize_sampling(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults so that equal requests hash equally however they were written."""
    out = {**SAMPLING_DEFAULTS, **raw}
    out["stop"] = sorted(set(out["stop"] or []))
    for name in ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty",
                 "repetition_penalty"):
        out[name] = float(out[name])
    if out["temperature"] == 0.0:
        # Greedy decoding ignores these; the key should too.
        out.update(top_p=1.0, top_k=-1, min_p=0.0, seed=None)
    return out


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
        sampling=normalize_sampling(data.get("sampling", {})),
        engine=dict(data.get("engine", {})),
        shard_rows=output.get("shard_rows", 10_000),
        row_group_rows=output.get("row_group_rows", 1024),
        compression=output.get("compression", "lz4"),
        revision=data.get("revision"),
        adapter=adapter,
    )
    if spec.input.format != "openai-batch":
        # Compile the templates now, so a syntax error fails the spec before any
        # job of the invocation has run, and names the file.
        from batch.run.prompts import PromptRenderer

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
