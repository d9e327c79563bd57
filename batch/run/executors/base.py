"""The one interface every executor implements, and what they share.

An `Executor` generates a run's missing rows: `prepare` checks, before anything of the
run is written, that the job can run there (and says where that is, for the run's
record); `generate` answers one engine group's requests, writing each answer through
the run's sink as it arrives; `close` releases what it holds (engines, a cluster).
The runner holds an `Executor` and never asks which kind: `LocalExecutor` (vLLM in
this process, batch.run.executors.local) and `RayExecutor` (Ray Data LLM on a
cluster, batch.run.executors.ray) are equals.

Both build the same records from the same requests with the helpers below, so a row
answered on a cluster is the row this process would have written.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from typing import TYPE_CHECKING, Any, Protocol

from batch.run.plan import Failure, Plan, Request
from batch.run.records import RecordBuilder
from batch.run.stopping import shielded

if TYPE_CHECKING:  # plain types for annotations
    from batch.cache.schema import PredictionRecord
    from batch.run.candidates import Candidate, EngineGroup
    from batch.run.result import RunResult
    from batch.run.spec.job import JobSpec
    from catalog.records import CandidateRun

__all__ = ["Completion", "Executor", "Placement", "Share", "Sink", "apportion", "count_answer",
           "interleaved", "refuse", "stdout_to_stderr", "write_answer"]


class Sink(Protocol):
    """Where records go (the run's shard writer, timed)."""

    def add(self, records: list[PredictionRecord]) -> None: ...


@dataclass
class Completion:
    """One finished request, reduced to what the cache keeps."""

    texts: list[str]
    finish_reason: str | None
    prompt_tokens: int
    output_tokens: int
    logprobs: list[Any] | None = None
    error: str | None = None


@dataclass
class Share:
    """One candidate's part of an engine's work: its plan, how its records are built,
    its adapter's directory, and its counts."""

    plan: Plan
    records: RecordBuilder
    adapter_path: str | None
    tally: CandidateRun


@dataclass(frozen=True)
class Placement:
    """Where a run generates, for its record in the catalog."""

    hardware: str  # the machine, or the cluster and one replica's share of it
    executor: str  # "local" (this process) or "ray"
    replicas: int | None = None  # engine replicas on a cluster


class Executor(ABC):
    """Generates what runs are missing. One executor serves a runner's every job."""

    @abstractmethod
    def prepare(self, spec: JobSpec, candidates: list[Candidate]) -> Placement:
        """Check that `spec` can run here, before anything of the run is written, and
        say where it runs. Raises an AlmanacError (a UsageError for what the job asks
        that cannot run here, an error naming what to do for a cluster out of reach)."""

    @abstractmethod
    def generate(self, group: EngineGroup, shares: list[Share], out: Sink,
                 result: RunResult) -> None:
        """Answer every share's requests on the group's engine, writing each answer
        (or the engine's refusal) through `out` and counting it in `result` and in its
        share's tally. Each share's `generation_s` is its part of the engine's time, in
        proportion to the tokens it had processed. A stop (batch.run.stopping) leaves
        every answer written counted, and no answer counted unwritten."""

    @abstractmethod
    def close(self) -> None:
        """Release engines, connections and clusters this executor started."""


def interleaved(shares: list[Share]) -> Iterator[tuple[int, Request]]:
    """Every share's requests, taking one from each in turn: the scheduler's batches
    then hold all the adapters at once, rather than one after another."""
    queues = [[(i, r) for r in share.plan.requests.values()] for i, share in enumerate(shares)]
    for turn in zip_longest(*queues):
        yield from (item for item in turn if item is not None)


def count_answer(share: Share, result: RunResult, request: Request,
                 completion: Completion) -> None:
    """Add an answer (or the engine's refusal) to its candidate's and the run's counts."""
    rows = len(request.input_ids)
    if completion.error is None:
        share.tally.generated += rows
        share.tally.prompt_tokens += completion.prompt_tokens
        share.tally.output_tokens += completion.output_tokens
        result.generated += rows
        result.prompt_tokens += completion.prompt_tokens
        result.output_tokens += completion.output_tokens
    else:
        share.tally.failed += rows
        result.failed += rows


def write_answer(share: Share, request: Request, completion: Completion, out: Sink,
                 result: RunResult) -> int:
    """Write the records of one answered request and count them; returns the tokens it
    took (prompt and output), the engine's work."""
    mark = time.perf_counter()
    answered = [share.records.generated(request, input_id, completion)
                for input_id in request.input_ids]
    result.phases.record_s += time.perf_counter() - mark
    with shielded():  # a stop between the two would write rows the run never counted
        out.add(answered)
        count_answer(share, result, request, completion)
    return completion.prompt_tokens + completion.output_tokens


def refuse(share: Share, request: Request, error: str, prompt_tokens: int, out: Sink,
           result: RunResult) -> None:
    """Write a request that cannot be sent (its prompt over the context, a setting the
    executor cannot express) as failed rows, and count them."""
    mark = time.perf_counter()
    refused = [share.records.failed(Failure(input_id, request.key, error, request.prompt,
                                            request.sampling), prompt_tokens=prompt_tokens)
               for input_id in request.input_ids]
    result.phases.record_s += time.perf_counter() - mark
    with shielded():  # written and counted together, or neither, when a stop comes
        out.add(refused)
        share.tally.failed += len(request.input_ids)
        result.failed += len(request.input_ids)


def apportion(shares: list[Share], work: list[int], elapsed: float, start_s: float,
              group: int) -> None:
    """Each share's part of the group's generation time (by the tokens it had
    processed), its engine start and its group."""
    total = sum(work)
    for share, done in zip(shares, work, strict=True):
        share.tally.generation_s = elapsed * (done / total if total else 1 / len(shares))
        share.tally.engine_start_s = start_s
        share.tally.engine_group = group


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr while an engine starts: its worker processes
    and native libraries print there, and stdout must stay clean for --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
