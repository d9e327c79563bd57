"""What a run reports: its counts, and where its time went, measured by the run itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from catalog.records import CandidateRun
from schemas.errors import ExitCode

# What a run reports of each candidate; the rest of CandidateRun is filled when read back.
CANDIDATE_FIELDS = ("label", "model_ref", "revision", "adapter", "adapter_revision", "inputs",
                    "cached", "copied", "generated", "failed", "prompt_tokens", "output_tokens",
                    "generation_s", "engine_start_s", "engine_group")


@dataclass
class Phases:
    """Seconds spent in each part of a run, as the runner measured them. The parts
    without "of which" do not overlap; what they leave of `total_s` is the stream
    loop, progress and counters."""

    recover_s: float = 0.0  # taking the job's lock; indexing what an interrupted run left
    resolve_s: float = 0.0  # the model's and adapter's identities (weights fingerprints)
    plan_s: float = 0.0  # reading, rendering and keying rows; index lookups
    plan_lookups_s: float = 0.0  # of which: index lookups
    catalog_s: float = 0.0  # the run's record in the catalog, at its start and end
    cluster_s: float = 0.0  # the executor's checks: reaching a Ray cluster (or starting a local one)
    copy_s: float = 0.0  # reading the rows an earlier record answers, to copy them
    engine_start_s: float = 0.0  # importing vLLM and loading the model, if this run did
    # (on Ray: until the first rows come back, the replicas' start and their first batch)
    tokenize_s: float = 0.0  # prompt token ids (the engine gets ids, not text)
    ship_s: float = 0.0  # on Ray: the request blocks built and put in the object store
    generate_s: float = 0.0  # handing requests to the engine and waiting for answers
    engine_enqueue_s: float = 0.0  # of which: LLM.enqueue
    engine_step_s: float = 0.0  # of which: engine steps
    engine_steps: int = 0
    record_s: float = 0.0  # building prediction records
    write_s: float = 0.0  # shards: Parquet, fsync, SHA-256, rename, and their index rows

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


# What each status exits with; an interrupted run exits as its signal asks (set with it).
STATUS_EXIT = {"planned": ExitCode.OK, "ok": ExitCode.OK, "failed_rows": ExitCode.FAILED_ROWS,
               "error": ExitCode.ERROR, "interrupted": ExitCode.INTERRUPTED}


@dataclass
class RunResult:
    job: str
    run_id: str | None
    status: str  # planned | ok | failed_rows | error | interrupted (set with `settle`)
    plan: dict[str, int]
    cached: int = 0
    copied: int = 0
    generated: int = 0  # input rows answered by generation
    failed: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    engine_started: bool = False
    engine_starts: int = 0  # engines this run started: one per base at most
    engine_start_s: float | None = None  # all of them
    generation_s: float | None = None  # from the first request to the last answer written
    plan_s: float = 0.0  # from the start to a finished plan (lock, recovery, resolving, planning)
    total_s: float = 0.0
    shards: list[str] = field(default_factory=list)
    error: str | None = None
    phases: Phases = field(default_factory=Phases)
    candidates: list[CandidateRun] = field(default_factory=list)  # each one's share
    executor: str = "local"  # where rows were generated: in this process, or "ray"
    replicas: int | None = None  # engine replicas on the Ray cluster
    engine_log: str | None = None  # the file the engine's own output went to, if kept apart
    exit_code: int = ExitCode.OK  # what the command exits with for this run

    def settle(self, status: str, error: str | None = None, exit_code: int | None = None) -> None:
        """The run's status, and the exit code that goes with it (`exit_code` for one the
        status alone does not decide: an error's own, a stop's signal)."""
        self.status, self.error = status, error
        self.exit_code = STATUS_EXIT[status] if exit_code is None else int(exit_code)

    @property
    def tokens_per_s(self) -> float | None:
        if not self.generation_s or not self.output_tokens:
            return None
        return self.output_tokens / self.generation_s

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()
               if k not in ("phases", "candidates", "exit_code")}
        out["tokens_per_s"] = self.tokens_per_s
        out["phases"] = self.phases.to_json()
        out["candidates"] = [{k: getattr(c, k) for k in CANDIDATE_FIELDS} for c in self.candidates]
        return out
