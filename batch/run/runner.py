"""Running a job: lock, recover, plan, write what is known, generate what is missing.

Every result reaches disk through a ShardWriter, so a crash loses at most
the shard being filled; the next run recovers and plans only what is still
missing.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batch.cache.lock import JobLock
from batch.run.plan import Failure, Plan, make_plan, prompt_text
from batch.run.progress import Progress
from batch.run.resolve import ResolvedAdapter, resolve_adapter, resolve_model
from batch.run.spec import JobSpec
from batch.cache.store import PredictionStore, ShardWriter
from batch.run.machine import hardware
from catalog import runs as run_log
from catalog.db import Catalog

log = logging.getLogger("almanac.batch")
TOKENIZE_CHUNK = 1024
COPY_CHUNK = 10_000  # copied rows read per batch of shard reads


@dataclass
class RunResult:
    job: str
    run_id: str | None
    status: str  # planned | ok | failed_rows | error | interrupted
    plan: dict[str, int]
    cached: int = 0
    copied: int = 0
    generated: int = 0  # input rows answered by generation
    failed: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    engine_started: bool = False
    engine_start_s: float | None = None
    generation_s: float | None = None
    plan_s: float = 0.0
    total_s: float = 0.0
    shards: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def tokens_per_s(self) -> float | None:
        if not self.generation_s or not self.output_tokens:
            return None
        return self.output_tokens / self.generation_s

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["tokens_per_s"] = self.tokens_per_s
        return out


class Runner:
    """Runs jobs against one home. The engine pool outlives single jobs, so
    several jobs on one model (or a test session) start the engine once."""

    def __init__(self, catalog: Catalog, predictions: Path, locks: Path, pool: Any = None) -> None:
        self.catalog = catalog
        self.store = PredictionStore(predictions)
        self.locks = locks
        self._pool = pool
        self._owns_pool = pool is None

    @property
    def pool(self) -> Any:
        if self._pool is None:
            from batch.run.engine import EnginePool

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
        if dry_run:
            # Planning only reads; a dry run must work while cron holds the lock.
            return self._plan(spec, time.perf_counter(), limit, retry_failed)[0]
        began = time.perf_counter()
        with JobLock(self.locks, spec.name):
            recovered = self.store.recover(spec.name)
            if any(recovered.values()):
                log.warning("recovered after an interrupted run: %s", recovered)
            result, plan, model, adapter = self._plan(spec, began, limit, retry_failed)
            result.run_id = uuid.uuid4().hex
            with self.catalog.sessions.begin() as s:
                run_log.start_run(s, result.run_id, spec.name, model.ref, model.revision,
                                  hardware())
            try:
                self._execute(spec, plan, model, adapter, result)
                result.status = "failed_rows" if result.failed else "ok"
            except KeyboardInterrupt:
                result.status, result.error = "interrupted", "interrupted"
                raise
            except Exception as exc:
                result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
                raise
            finally:
                result.total_s = time.perf_counter() - began
                self._record(result)
        return result

    def _plan(self, spec: JobSpec, began: float, limit: int | None,
              retry_failed: bool) -> tuple[RunResult, Plan, Any, ResolvedAdapter | None]:
        with self.catalog.sessions() as s:
            model = resolve_model(s, spec.model, spec.revision, self.store)
            adapter = resolve_adapter(s, spec.adapter, self.store) if spec.adapter else None
        plan = make_plan(spec, self.store, model_identity=model.identity,
                         revision=model.revision,
                         adapter_identity=adapter.identity if adapter else None,
                         limit=limit, retry_failed=retry_failed)
        result = RunResult(spec.name, None, "planned", plan.summary(),
                           plan_s=time.perf_counter() - began)
        result.total_s = result.plan_s
        return result, plan, model, adapter

    def _record(self, r: RunResult) -> None:
        assert r.run_id is not None
        with self.catalog.sessions.begin() as s:
            run_log.finish_run(
                s, r.run_id, status=r.status, inputs=r.plan["inputs"], cached=r.cached,
                copied=r.copied, generated=r.generated, failed=r.failed,
                prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens,
                engine_start_s=r.engine_start_s, generation_s=r.generation_s,
                tokens_per_s=r.tokens_per_s, error=r.error,
            )

    def _execute(self, spec: JobSpec, plan: Plan, model: Any, adapter: ResolvedAdapter | None,
                 result: RunResult) -> None:
        result.cached = plan.cached
        result.failed = plan.failed_before
        run_id = result.run_id
        assert run_id is not None
        rows = _RowFactory(spec.name, plan, run_id)
        with ShardWriter(self.store, spec.name, run_id, spec.shard_rows,
                         spec.row_group_rows, spec.compression) as writer:
            if plan.repoint:
                self.store.repoint(spec.name, plan.repoint)
            for i in range(0, len(plan.copies), COPY_CHUNK):
                chunk = plan.copies[i : i + COPY_CHUNK]
                for (input_id, _, _), source in zip(chunk, self.store.read_rows(
                        [src for _, _, src in chunk])):
                    writer.add(rows.copy(source, input_id))
            result.copied = len(plan.repoint) + len(plan.copies)
            for failure in plan.failures:
                writer.add(rows.failed(failure))
            result.failed += len(plan.failures)
            if plan.requests:
                self._generate(spec, plan, model, adapter, writer, rows, result)
        result.shards = writer.shards

    def _generate(self, spec: JobSpec, plan: Plan, model: Any, adapter: ResolvedAdapter | None,
                  writer: ShardWriter, rows: "_RowFactory", result: RunResult) -> None:
        from batch.run.engine import EngineTarget

        target = EngineTarget.make(model.load, model.load_revision, spec.engine,
                                   adapter.rank if adapter else None)
        starts = self.pool.starts
        engine = self.pool.get(target)
        result.engine_started = self.pool.starts > starts
        result.engine_start_s = engine.start_seconds if result.engine_started else 0.0
        progress = Progress(plan.missing_rows, spec.name)
        began = time.perf_counter()
        try:
            for key, completion in engine.stream(
                self._admitted(engine, plan, writer, rows, result),
                adapter_path=adapter.path if adapter else None,
            ):
                request = plan.requests[key]
                for input_id in request.input_ids:
                    writer.add(rows.generated(request, input_id, completion))
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

    def _admitted(self, engine: Any, plan: Plan, writer: ShardWriter, rows: "_RowFactory",
                  result: RunResult) -> Iterator[tuple[str, list[int], dict[str, Any]]]:
        """Tokenize requests and hold back any the context cannot fit: vLLM rejects a
        whole batch for one over-long prompt."""
        requests = list(plan.requests.values())
        for i in range(0, len(requests), TOKENIZE_CHUNK):
            chunk = requests[i : i + TOKENIZE_CHUNK]
            for request, ids in zip(chunk, engine.token_ids_many([r.prompt for r in chunk])):
                if len(ids) >= engine.max_model_len:
                    error = (f"prompt is {len(ids)} tokens; the model's context "
                             f"(max_model_len) is {engine.max_model_len}")
                    for input_id in request.input_ids:
                        writer.add(rows.failed(Failure(input_id, request.key, error,
                                                       request.prompt, request.sampling),
                                               prompt_tokens=len(ids)))
                    result.failed += len(request.input_ids)
                    continue
                yield request.key, ids, request.sampling


class _RowFactory:
    """Builds records in the shape of schemas/prediction.schema.json."""

    def __init__(self, job: str, plan: Plan, run_id: str) -> None:
        self.job, self.plan, self.run_id = job, plan, run_id

    def _base(self, input_id: str, key: str) -> dict[str, Any]:
        return {
            "key": key, "job": self.job, "input_id": input_id, "model": self.plan.model,
            "revision": self.plan.revision, "adapter": self.plan.adapter, "prompt": None,
            "output": None, "finish_reason": None, "prompt_tokens": None,
            "output_tokens": None, "run_id": self.run_id,
            "created_at": datetime.now(timezone.utc), "error": None, "outputs": None,
            "logprobs": None, "params": None,
        }

    def generated(self, request: Any, input_id: str, completion: Any) -> dict[str, Any]:
        row = self._base(input_id, request.key)
        row.update(
            prompt=prompt_text(request.prompt),
            params=json.dumps(request.sampling, sort_keys=True),
            prompt_tokens=completion.prompt_tokens,
        )
        if completion.error is not None:
            row["error"] = completion.error
            return row
        row.update(
            output=completion.texts[0] if completion.texts else "",
            outputs=completion.texts if len(completion.texts) > 1 else None,
            finish_reason=completion.finish_reason,
            output_tokens=completion.output_tokens,
            logprobs=json.dumps(completion.logprobs) if completion.logprobs is not None else None,
        )
        return row

    def failed(self, failure: Failure, prompt_tokens: int | None = None) -> dict[str, Any]:
        row = self._base(failure.input_id, failure.key)
        row.update(
            error=failure.error, prompt=prompt_text(failure.prompt),
            params=json.dumps(failure.sampling, sort_keys=True) if failure.sampling else None,
            prompt_tokens=prompt_tokens,
        )
        return row

    def copy(self, source: dict[str, Any], input_id: str) -> dict[str, Any]:
        # Same key, same weights; the catalog name is this job's.
        return {**source, "job": self.job, "input_id": input_id, "model": self.plan.model,
                "run_id": self.run_id, "created_at": datetime.now(timezone.utc)}


def configure_logging() -> None:
    if log.handlers:  # several jobs, or the demo, in one process
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
