"""Running a job: lock, recover, plan, write what is known, generate what is missing.

Every result reaches disk through a ShardWriter, so a crash loses at most
the shard being filled; the next run recovers and plans only what is still
missing. The runner times its own phases (RunResult.phases) as it goes.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from batch.cache.lock import JobLock
from batch.cache.schema import PredictionRecord
from batch.cache.store import PredictionStore, ShardWriter
from batch.run.engine import (
    Completion,
    Engine,
    EnginePool,
    EngineRequest,
    EngineStats,
    EngineTarget,
)
from batch.run.machine import hardware
from batch.run.plan import Failure, Plan, make_plan
from batch.run.progress import Progress
from batch.run.records import RecordBuilder
from batch.run.resolve import (
    ResolvedAdapter,
    ResolvedModel,
    resolve_adapter,
    resolve_model,
)
from batch.run.result import Phases, RunResult
from batch.run.spec import JobSpec
from catalog import runs as run_log
from catalog.db import Catalog

__all__ = ["Phases", "RunResult", "Runner", "configure_logging"]

log = logging.getLogger("almanac.batch")
TOKENIZE_CHUNK = 1024
COPY_CHUNK = 10_000  # copied rows read per batch of shard reads


class _Output:
    """The run's shard writer, with the time spent writing shards added to the phases."""

    def __init__(self, writer: ShardWriter, phases: Phases) -> None:
        self.writer, self.phases = writer, phases

    def add(self, records: list[PredictionRecord]) -> None:
        if not records:
            return
        began = time.perf_counter()
        for record in records:
            self.writer.add(record)
        self.phases.write_s += time.perf_counter() - began

    def flush(self) -> None:
        if not self.writer.buffer:
            return
        began = time.perf_counter()
        self.writer.flush()
        self.phases.write_s += time.perf_counter() - began


class Runner:
    """Runs jobs against one home. The engine pool outlives single jobs, so
    several jobs on one model (or a test session) start the engine once."""

    def __init__(self, catalog: Catalog, predictions: Path, locks: Path,
                 pool: EnginePool | None = None) -> None:
        self.catalog = catalog
        self.store = PredictionStore(predictions)
        self.locks = locks
        self._pool = pool
        self._owns_pool = pool is None

    @property
    def pool(self) -> EnginePool:
        if self._pool is None:
            self._pool = EnginePool()
        return self._pool

    def close(self) -> None:
        """Closes the index, and the engines if this runner started them (a pool
        handed in, as tests share one, stays open for its owner)."""
        if self._owns_pool and self._pool is not None:
            self._pool.close()
        self.store.close()

    def run(self, spec: JobSpec, *, dry_run: bool = False, limit: int | None = None,
            retry_failed: bool = False) -> RunResult:
        began = time.perf_counter()
        phases = Phases()
        if dry_run:
            # Planning only reads; a dry run must work while cron holds the lock.
            return self._plan(spec, began, phases, limit, retry_failed)[0]
        with JobLock(self.locks, spec.name):
            recovered = self.store.recover(spec.name)
            if any(recovered.values()):
                log.warning("recovered after an interrupted run: %s", recovered)
            phases.recover_s = time.perf_counter() - began
            result, plan, model, adapter = self._plan(spec, began, phases, limit, retry_failed)
            run_id = result.run_id = uuid.uuid4().hex
            mark = time.perf_counter()
            with self.catalog.sessions.begin() as s:
                run_log.start_run(s, run_id, spec.name, model.ref, model.revision, hardware())
            phases.catalog_s += time.perf_counter() - mark
            try:
                self._execute(spec, plan, model, adapter, result, run_id)
                result.status = "failed_rows" if result.failed else "ok"
            except KeyboardInterrupt:
                result.status, result.error = "interrupted", "interrupted"
                raise
            except Exception as exc:
                result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
                raise
            finally:
                mark = time.perf_counter()
                self._record(result, run_id)
                phases.catalog_s += time.perf_counter() - mark
                result.total_s = time.perf_counter() - began
        return result

    def _plan(self, spec: JobSpec, began: float, phases: Phases, limit: int | None,
              retry_failed: bool) -> tuple[RunResult, Plan, ResolvedModel, ResolvedAdapter | None]:
        mark = time.perf_counter()
        with self.catalog.sessions() as s:
            model = resolve_model(s, spec.model, spec.revision, self.store)
            adapter = resolve_adapter(s, spec.adapter, self.store) if spec.adapter else None
        planning = time.perf_counter()
        phases.resolve_s = planning - mark
        plan = make_plan(spec, self.store, model_identity=model.identity,
                         revision=model.revision,
                         adapter_identity=adapter.identity if adapter else None,
                         limit=limit, retry_failed=retry_failed)
        done = time.perf_counter()
        phases.plan_s, phases.plan_lookups_s = done - planning, plan.lookups_s
        result = RunResult(spec.name, None, "planned", plan.summary(), plan_s=done - began,
                           total_s=done - began, phases=phases)
        return result, plan, model, adapter

    def _record(self, r: RunResult, run_id: str) -> None:
        with self.catalog.sessions.begin() as s:
            run_log.finish_run(
                s, run_id, status=r.status, inputs=r.plan["inputs"], cached=r.cached,
                copied=r.copied, generated=r.generated, failed=r.failed,
                prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens,
                engine_start_s=r.engine_start_s, generation_s=r.generation_s,
                tokens_per_s=r.tokens_per_s, error=r.error,
            )

    def _execute(self, spec: JobSpec, plan: Plan, model: ResolvedModel,
                 adapter: ResolvedAdapter | None, result: RunResult, run_id: str) -> None:
        result.cached = plan.cached
        result.failed = plan.failed_before
        phases = result.phases
        records = RecordBuilder(spec.name, plan.model, plan.revision, plan.adapter, run_id)
        with ShardWriter(self.store, spec.name, run_id, spec.shard_rows,
                         spec.row_group_rows, spec.compression) as writer:
            out = _Output(writer, phases)
            if plan.repoint:
                mark = time.perf_counter()
                self.store.repoint(spec.name, plan.repoint)
                phases.copy_s += time.perf_counter() - mark
            for i in range(0, len(plan.copies), COPY_CHUNK):
                mark = time.perf_counter()
                chunk = plan.copies[i : i + COPY_CHUNK]
                sources = self.store.read_rows([src for _, _, src in chunk])
                copies = [records.copied(source, input_id)
                          for (input_id, _, _), source in zip(chunk, sources, strict=True)]
                phases.copy_s += time.perf_counter() - mark
                out.add(copies)
            result.copied = len(plan.repoint) + len(plan.copies)
            mark = time.perf_counter()
            failures = [records.failed(failure) for failure in plan.failures]
            phases.record_s += time.perf_counter() - mark
            out.add(failures)
            result.failed += len(plan.failures)
            if plan.requests:
                self._generate(spec, plan, model, adapter, out, records, result)
            out.flush()  # the last shard, timed; closing the writer then has nothing left
        result.shards = writer.shards

    def _generate(self, spec: JobSpec, plan: Plan, model: ResolvedModel,
                  adapter: ResolvedAdapter | None, out: _Output, records: RecordBuilder,
                  result: RunResult) -> None:
        phases = result.phases
        target = EngineTarget.make(model.load, model.load_revision, spec.engine,
                                   adapter.rank if adapter else None)
        starts = self.pool.starts
        engine = self.pool.get(target)
        result.engine_started = self.pool.starts > starts
        result.engine_start_s = engine.start_seconds if result.engine_started else 0.0
        phases.engine_start_s = result.engine_start_s
        progress = Progress(plan.missing_rows, spec.name)
        stats = EngineStats()
        began = time.perf_counter()
        try:
            stream = engine.stream(self._admitted(engine, plan, out, records, result),
                                   adapter_path=adapter.path if adapter else None, stats=stats)
            for key, completion in _waited_on(stream, phases):
                request = plan.requests[key]
                mark = time.perf_counter()
                answered = [records.generated(request, input_id, completion)
                            for input_id in request.input_ids]
                phases.record_s += time.perf_counter() - mark
                out.add(answered)
                if completion.error is None:
                    result.generated += len(request.input_ids)
                    result.prompt_tokens += completion.prompt_tokens
                    result.output_tokens += completion.output_tokens
                else:
                    result.failed += len(request.input_ids)
                progress.update(len(request.input_ids))
        finally:
            progress.close()
            result.generation_s = time.perf_counter() - began
            phases.engine_enqueue_s, phases.engine_step_s = stats.enqueue_s, stats.step_s
            phases.engine_steps = stats.steps

    def _admitted(self, engine: Engine, plan: Plan, out: _Output, records: RecordBuilder,
                  result: RunResult) -> Iterator[EngineRequest]:
        """Tokenize requests and hold back any the context cannot fit: vLLM rejects a
        whole batch for one over-long prompt."""
        phases = result.phases
        requests = list(plan.requests.values())
        for i in range(0, len(requests), TOKENIZE_CHUNK):
            chunk = requests[i : i + TOKENIZE_CHUNK]
            mark = time.perf_counter()
            token_ids = engine.token_ids_many([r.prompt for r in chunk])
            phases.tokenize_s += time.perf_counter() - mark
            for request, ids in zip(chunk, token_ids, strict=True):
                if len(ids) >= engine.max_model_len:
                    error = (f"prompt is {len(ids)} tokens; the model's context "
                             f"(max_model_len) is {engine.max_model_len}")
                    mark = time.perf_counter()
                    refused = [records.failed(Failure(input_id, request.key, error,
                                                      request.prompt, request.sampling),
                                              prompt_tokens=len(ids))
                               for input_id in request.input_ids]
                    phases.record_s += time.perf_counter() - mark
                    out.add(refused)
                    result.failed += len(request.input_ids)
                    continue
                yield request.key, ids, request.sampling


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


def configure_logging() -> None:
    if log.handlers:  # several jobs, or the demo, in one process
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
