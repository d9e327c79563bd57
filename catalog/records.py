"""Plain records that leave the catalog: the CLI, TUI and HTTP layers see only these.
(`RevisionStatus` and `jsonable` live in lighter modules a cache lookup imports alone.)"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from schemas.jsonable import jsonable

# Figures the Hub owns and an import always takes from it (catalog.merge).
LIVE = ("revision", "gated", "downloads", "likes")
# What the seed list or a user can state, which an import from the Hub then keeps.
CURATABLE = ("name", "description", "architecture", "parameters", "context_length", "dtype",
             "license", "task", "base_model", "relation", "adapter_rank", "repo_id",
             "languages", "domains", "tags", "evals", *LIVE)


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
    # Fields the seed list or the user set: an import from the Hub keeps them as they are.
    curated: list[str] = field(default_factory=list)


@dataclass
class RevisionRecord:
    """A revision a model had before the Hub moved it, and what the catalog knew then."""

    revision: str
    replaced_at: datetime
    replaced_by: str | None = None
    seen_at: datetime | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass
class PerformanceRecord:
    """Throughput measured by our own runs of this model."""

    runs: int
    tokens_per_s: float | None
    engine_start_s: float | None
    hardware: str | None
    last_run_at: datetime | None


@dataclass
class MeasuredEvalRecord:
    """A score measured by Almanac on a job (the task), apart from card evals."""

    model_ref: str
    task: str
    metric: str
    value: float
    n: int
    adapter: str = ""
    adapter_revision: str | None = None
    revision: str | None = None
    label: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    hardware: str | None = None
    run_id: str | None = None
    measured_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass
class TrainingSource:
    """Where some of a trained adapter's rows came from: a job's candidate (the teacher)."""

    job: str | None
    candidate: str | None
    model: str | None
    adapter: str | None
    rows: int


@dataclass
class TrainingRecord:
    """How an adapter Almanac trained was made: its lineage, settings and results."""

    key: str
    base_ref: str
    data_path: str
    data_digest: str
    train_rows: int
    validation_rows: int
    steps: int
    seconds: float
    device: str
    dtype: str
    base_revision: str | None = None
    data_filter: str | None = None
    sources: list[TrainingSource] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    train_loss: float | None = None
    eval_loss: float | None = None
    epochs: float | None = None
    hardware: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    trained_at: datetime | None = None

    @property
    def distilled_from(self) -> str:
        """"JOB (teacher MODEL)" for each job it learned from, or "" when the rows name none."""
        parts = []
        for s in self.sources:
            if s.job:
                teacher = s.model + (f" + {s.adapter}" if s.adapter else "") if s.model else None
                parts.append(f"{s.job} (teacher {teacher})" if teacher else s.job)
        return ", ".join(dict.fromkeys(parts))

    def to_json(self) -> dict[str, Any]:
        return jsonable({**asdict(self), "distilled_from": self.distilled_from})


@dataclass
class ModelRecord(ModelEntry):
    id: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    adapters: list[str] = field(default_factory=list)
    performance: PerformanceRecord | None = None
    measured: list[MeasuredEvalRecord] = field(default_factory=list)  # scores on users' jobs
    refreshed_at: datetime | None = None  # when the Hub last described it
    history: list[RevisionRecord] = field(default_factory=list)  # revisions it moved on from
    score: float | None = None  # its measured score, in a listing sorted by score:JOB
    training: TrainingRecord | None = None  # how Almanac trained it, if it did

    def to_json(self) -> dict[str, Any]:
        out = jsonable(asdict(self))
        if self.training is not None:
            out["training"] = self.training.to_json()
        return out


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
    engine_starts: int | None = None
    usd_per_hour: float | None = None
    executor: str = "local"
    replicas: int | None = None
    phases: dict[str, float] | None = None

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return jsonable({**asdict(self), "duration_s": self.duration_s})


@dataclass
class CandidateRun:
    """One candidate's share of a run, as the runner reports it and `compare` reads it."""

    label: str
    model_ref: str
    revision: str | None = None
    adapter: str | None = None
    adapter_revision: str | None = None
    inputs: int = 0
    cached: int = 0
    copied: int = 0
    generated: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    generation_s: float | None = None
    engine_start_s: float | None = None
    engine_group: int | None = None
    # Filled when read back: the run it belongs to.
    run_id: str | None = None
    started_at: datetime | None = None
    usd_per_hour: float | None = None
    hardware: str | None = None
    executor: str | None = None

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))
