"""Generating what a run is missing, one engine at a time.

The candidates one engine serves (a base model alone and with its LoRA adapters)
send their requests in one stream, interleaved request by request, each with
its adapter: vLLM batches them together, so four adapters cost one engine start
and about the time of one run. Every answer is written as it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice, zip_longest
from typing import TYPE_CHECKING, Protocol

from batch.run.engine import Completion, Engine, EnginePool, EngineRequest, EngineStats
from batch.run.plan import Failure, Plan, Request
from batch.run.progress import Progress
from batch.run.records import RecordBuilder
from batch.run.stopping import shielded
from batch.run.tokens import context_error

if TYPE_CHECKING:  # plain types for annotations
    from batch.cache.schema import PredictionRecord
    from batch.run.engine import EngineTarget
    from batch.run.result import Phases, RunResult
    from catalog.records import CandidateRun

__all__ = ["Share", "Sink", "count_answer", "generate", "interleaved"]

TOKENIZE_CHUNK = 1024


class Sink(Protocol):
    """Where records go (the run's shard writer, timed)."""

    def add(self, records: list[PredictionRecord]) -> None: ...


@dataclass
class Share:
    """One candidate's part of an engine's work: its plan, how its records are built,
    its adapter's directory, and its counts."""

    plan: Plan
    records: RecordBuilder
    adapter_path: str | None
    tally: CandidateRun


def generate(pool: EnginePool, target: EngineTarget, shares: list[Share], group: int,
             out: Sink, result: RunResult) -> None:
    """Start (or reuse) the engine for `target` and answer every share's requests in
    one interleaved stream. Each share's `generation_s` is its part of the engine's
    time, in proportion to the tokens (prompt and output) it had processed."""
    phases = result.phases
    starts = pool.starts
    engine = pool.get(target)
    started = pool.starts > starts
    start_s = engine.start_seconds if started else 0.0
    result.engine_started = result.engine_started or started
    result.engine_starts += int(started)
    result.engine_start_s = (result.engine_start_s or 0.0) + start_s
    phases.engine_start_s += start_s
    engine.use_adapters(s.adapter_path for s in shares if s.adapter_path)
    progress = Progress(sum(s.plan.missing_rows for s in shares), result.job)
    stats = EngineStats()
    work = [0] * len(shares)
    began = time.perf_counter()
    try:
        stream = engine.stream(_admitted(engine, shares, out, result), stats=stats)
        for our_id, completion in _waited_on(stream, phases):
            n, key = our_id.split(":", 1)
            i = int(n)
            share = shares[i]
            request = share.plan.requests[key]
            mark = time.perf_counter()
            answered = [share.records.generated(request, input_id, completion)
                        for input_id in request.input_ids]
            phases.record_s += time.perf_counter() - mark
            with shielded():  # a stop between the two would write rows the run never counted
                out.add(answered)
                count_answer(share, result, request, completion)
            work[i] += completion.prompt_tokens + completion.output_tokens
            progress.update(len(request.input_ids))
    finally:
        progress.close()
        elapsed = time.perf_counter() - began
        result.generation_s = (result.generation_s or 0.0) + elapsed
        phases.engine_enqueue_s += stats.enqueue_s
        phases.engine_step_s += stats.step_s
        phases.engine_steps += stats.steps
        total = sum(work)
        for share, done in zip(shares, work, strict=True):
            share.tally.generation_s = elapsed * (done / total if total else 1 / len(shares))
            share.tally.engine_start_s = start_s
            share.tally.engine_group = group


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


def interleaved(shares: list[Share]) -> Iterator[tuple[int, Request]]:
    """Every share's requests, taking one from each in turn: the scheduler's batches
    then hold all the adapters at once, rather than one after another."""
    queues = [[(i, r) for r in share.plan.requests.values()] for i, share in enumerate(shares)]
    for turn in zip_longest(*queues):
        yield from (item for item in turn if item is not None)


def _admitted(engine: Engine, shares: list[Share], out: Sink,
              result: RunResult) -> Iterator[EngineRequest]:
    """Tokenize requests and hold back any the context cannot fit: vLLM rejects a
    whole batch for one over-long prompt."""
    phases = result.phases
    pending = interleaved(shares)
    while chunk := list(islice(pending, TOKENIZE_CHUNK)):
        mark = time.perf_counter()
        token_ids = engine.token_ids_many([r.prompt for _, r in chunk])
        phases.tokenize_s += time.perf_counter() - mark
        for (i, request), ids in zip(chunk, token_ids, strict=True):
            share = shares[i]
            if (error := context_error(len(ids), engine.max_model_len)) is not None:
                mark = time.perf_counter()
                refused = [share.records.failed(Failure(input_id, request.key, error,
                                                        request.prompt, request.sampling),
                                                prompt_tokens=len(ids))
                           for input_id in request.input_ids]
                phases.record_s += time.perf_counter() - mark
                with shielded():
                    out.add(refused)
                    share.tally.failed += len(request.input_ids)
                    result.failed += len(request.input_ids)
                continue
            yield f"{i}:{request.key}", ids, request.sampling, share.adapter_path


def _waited_on(stream: Iterator[tuple[str, Completion]],
               phases: Phases) -> Iterator[tuple[str, Completion]]:
    """The stream's answers, adding the time spent waiting for each to `generate_s`,
    less what admitting requests (which runs inside the stream) timed itself."""
    while True:
        mark = time.perf_counter()
        inside = phases.tokenize_s + phases.record_s + phases.write_s
        item = next(stream, None)
        own = phases.tokenize_s + phases.record_s + phases.write_s - inside
        phases.generate_s += time.perf_counter() - mark - own
        if item is None:
            return
        yield item

