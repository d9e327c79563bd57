"""Generating what a run is missing in this process, one engine at a time.

The candidates one engine serves (a base model alone and with its LoRA adapters)
send their requests in one stream, interleaved request by request, each with
its adapter: vLLM batches them together, so four adapters cost one engine start
and about the time of one run. Every answer is written as it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING

from batch.run.executors.base import (
    Completion,
    Executor,
    Placement,
    Share,
    Sink,
    apportion,
    interleaved,
    refuse,
    write_answer,
)
from batch.run.executors.engine import Engine, EnginePool, EngineRequest, EngineStats
from batch.run.executors.tokens import context_error
from batch.run.machine import hardware

if TYPE_CHECKING:  # plain types for annotations
    from batch.run.candidates import Candidate, EngineGroup
    from batch.run.result import Phases, RunResult
    from batch.run.spec.job import JobSpec

__all__ = ["LocalExecutor"]

TOKENIZE_CHUNK = 1024


class LocalExecutor(Executor):
    """vLLM in this process. The engine pool outlives single jobs, so several jobs on
    one model (or a test session) start the engine once; a pool handed in stays open
    for its owner when the executor closes."""

    def __init__(self, pool: EnginePool | None = None) -> None:
        self._pool = pool
        self._owns_pool = pool is None

    @property
    def pool(self) -> EnginePool:
        if self._pool is None:
            self._pool = EnginePool()
        return self._pool

    def prepare(self, spec: JobSpec, candidates: list[Candidate]) -> Placement:
        return Placement(hardware(), "local")

    def generate(self, group: EngineGroup, shares: list[Share], out: Sink,
                 result: RunResult) -> None:
        """Start (or reuse) the group's engine and answer every share's requests in one
        interleaved stream."""
        phases = result.phases
        starts = self.pool.starts
        engine = self.pool.get(group.target)
        started = self.pool.starts > starts
        start_s = engine.start_seconds if started else 0.0
        result.engine_started = result.engine_started or started
        result.engine_starts += int(started)
        result.engine_start_s = (result.engine_start_s or 0.0) + start_s
        phases.engine_start_s += start_s
        engine.use_adapters(s.adapter_path for s in shares if s.adapter_path)
        stats = EngineStats()
        work = [0] * len(shares)
        began = time.perf_counter()
        try:
            stream = engine.stream(_admitted(engine, shares, out, result), stats=stats)
            for our_id, completion in _waited_on(stream, phases):
                n, key = our_id.split(":", 1)
                i = int(n)
                request = shares[i].plan.requests[key]
                work[i] += write_answer(shares[i], request, completion, out, result)
        finally:
            elapsed = time.perf_counter() - began
            result.generation_s = (result.generation_s or 0.0) + elapsed
            phases.engine_enqueue_s += stats.enqueue_s
            phases.engine_step_s += stats.step_s
            phases.engine_steps += stats.steps
            apportion(shares, work, elapsed, start_s, group.index)

    def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            self._pool.close()


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
            if (error := context_error(len(ids), engine.max_model_len)) is not None:
                refuse(shares[i], request, error, len(ids), out, result)
                continue
            yield f"{i}:{request.key}", ids, request.sampling, shares[i].adapter_path


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
