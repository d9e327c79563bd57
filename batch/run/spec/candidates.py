"""A job's candidates as its file states them: `model` (with `adapter`, `revision`)
for one, or `[[candidates]]` for several, each with its own [engine] options over the
job's. What they resolve to (catalog models, adapters, labels) is batch.run.candidates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.run.spec.errors import SpecError
from batch.run.spec.settings import EngineOptions


@dataclass(frozen=True)
class CandidateSpec:
    """One entry of a job: a model (and adapter), or every adapter of a base model."""

    where: str  # the field it came from, for messages: "model" or "candidates[2]"
    model: str | None
    engine: EngineOptions
    adapter: str | None = None  # as the job names it; a directory made absolute
    revision: str | None = None
    label: str | None = None
    adapters_of: str | None = None

    def field(self, name: str) -> str:
        """The path of one of its fields in the job file, for messages."""
        return name if self.where == "model" else f"{self.where}.{name}"


def candidate_specs(data: Mapping[str, Any], job_path: Path,
                    engine: Mapping[str, Any]) -> tuple[CandidateSpec, ...]:
    """The candidates of a job the schema has checked: its `model`, or its
    [[candidates]] with their engine options laid over the job's `engine`."""
    base = job_path.parent
    job_engine = _options(engine, job_path, "engine")
    if "candidates" not in data:
        return (CandidateSpec("model", data["model"], job_engine,
                              _adapter(data.get("adapter"), base), data.get("revision")),)
    out = []
    for i, entry in enumerate(data["candidates"]):
        where = f"candidates[{i}]"
        own = entry.get("engine")
        options = _options({**engine, **own}, job_path, f"{where}.engine") if own else job_engine
        out.append(CandidateSpec(where, entry.get("model"), options,
                                 _adapter(entry.get("adapter"), base), entry.get("revision"),
                                 entry.get("label"), entry.get("adapters_of")))
    return tuple(out)


def _adapter(adapter: str | None, base: Path) -> str | None:
    """A directory relative to the job file, made absolute; a catalog reference as is."""
    if adapter and (base / adapter).exists():
        return str((base / adapter).resolve())
    return adapter


def _options(raw: Mapping[str, Any], job_path: Path, where: str) -> EngineOptions:
    try:
        return EngineOptions.from_mapping(raw)
    except SpecError as exc:
        raise SpecError(f"{job_path}: {where}.{exc}") from None
