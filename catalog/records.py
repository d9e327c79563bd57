"""Plain records that leave the catalog: the CLI, TUI and HTTP layers see only these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class EvalRecord:
    benchmark: str
    metric: str
    value: float
    source: str | None = None


@dataclass
class ModelEntry:
    """What a source (seed list, Hub, local directory, cache) knows about a model."""

    ref: str
    name: str
    source: str
    repo_id: str | None = None
    revision: str | None = None
    description: str = ""
    architecture: str | None = None
    parameters: int | None = None
    context_length: int | None = None
    dtype: str | None = None
    license: str | None = None
    task: str | None = None
    base_model: str | None = None
    relation: str | None = None
    adapter_rank: int | None = None
    local_path: str | None = None
    gated: bool = False
    downloads: int | None = None
    likes: int | None = None
    card: str = ""
    languages: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)


@dataclass
class PerformanceRecord:
    """Throughput measured by our own runs of this model."""

    runs: int
    tokens_per_s: float | None
    engine_start_s: float | None
    hardware: str | None
    last_run_at: datetime | None


@dataclass
class ModelRecord(ModelEntry):
    id: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    adapters: list[str] = field(default_factory=list)
    performance: PerformanceRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass
class RunRecord:
    id: str
    job: str
    model_ref: str
    revision: str | None
    status: str
    started_at: datetime
    finished_at: datetime | None
    inputs: int
    cached: int
    copied: int
    generated: int
    failed: int
    prompt_tokens: int
    output_tokens: int
    engine_start_s: float | None
    generation_s: float | None
    tokens_per_s: float | None
    hardware: str | None
    error: str | None

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return jsonable({**asdict(self), "duration_s": self.duration_s})


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
