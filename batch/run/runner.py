"""Running a job: lock, recover, plan, write what is known, generate what is missing.

Every result reaches disk through a ShardWriter, so a crash loses at most
the shard being filled; the next run recovers and plans only what is still
missing. The runner times its own phases (RunResult.phases) as it goes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from batch.cache.lock import JobLock
from batch.cache.schema import PredictionRecord
from batch.cache.store import PredictionStore, ShardWriter
from batch.run.candidates import Candidate, engine_groups, resolve_candidates, route
from batch.run.console import ConsoleHandler, EngineOutput, last_log, log_path
from batch.run.executors.base import Executor, Share
from batch.run.executors.local import LocalExecutor
from batch.run.inputs import InputRow, read_rows
from batch.run.machine import hardware
from batch.run.plan import Plan, Target, make_plans
from batch.run.progress import Progress
from batch.run.records import RecordBuilder
from batch.run.result import Phases, RunResult
from batch.run.spec.job import JobSpec
from batch.run.stopping import Stopped, catch_stops, shielded
from catalog import runs as run_log
from catalog.db import Catalog
from catalog.records import CandidateRun
from schemas.errors import ExitCode

if TYPE_CHECKING:  # the protocol only types an argument
    from batch.run.upstream import Upstream

__all__ = ["Phases", "RunResult", "Runner", "configure_logging"]

log = logging.getLogger("almanac.batch")
COPY_CHUNK = 10_000  # copied rows read per batch of shard reads


class _Output:
    """The run's shard writer, with the time spent writing shards added to the phases,
    and (while generating) every row written counted on the run's progress."""

    def __init__(self, writer: ShardWriter, phases: Phases) -> None:
        self.writer, self.phases = writer, phases
        self.progress: Progress | None = None

    def add(self, records: list[PredictionRecord]) -> None:
        if not records:
            return
        began = time.perf_counter()
        with shielded():  # a stop waits for the shard being written and indexed
            for record in records:
                self.writer.add(record)
        self.phases.write_s += time.perf_counter() - began
        if self.progress is not None:
            # The rows of one request share its answer: its tokens count once.
            tokens = {r["key"]: r["output_tokens"] or 0 for r in records}
            self.progress.update(len(records), sum(tokens.values()),
                                 answered=any(r["error"] is None for r in records))

    def flush(self) -> None:
        if not self.writer.buffer:
            return
        began = time.perf_counter()
        with shielded():
            self.writer.flush()
        self.phases.write_s += time.perf_counter() - began


class Runner:
    """Runs jobs against one home. Its executor (batch.run.executors) outlives single
    jobs: several jobs on one model (or a test session) start the engine once, and a
    Ray cluster is reached once."""

    def __init__(self, catalog: Catalog, predictions: Path, locks: Path,
                 executor: Executor | None = None, upstream: Upstream | None = None) -> None:
        self.catalog = catalog
        # Where missing rows are generated: vLLM in this process unless the front door
        # hands in another executor (`--ray ADDRESS`: batch.run.executors.ray).
        self.executor = executor if executor is not None else LocalExecutor()
        # Reads chains' rows (`[input] job`) and keeps their lineage; the front door hands
        # in batch.data.chains.UpstreamReader (a room above this one).
        self.upstream = upstream
        self.predictions = predictions
        self._store: PredictionStore | None = None
        self.locks = locks

    @property
    def store(self) -> PredictionStore:
        """The cache this runner writes, opened on first use: a dry run never opens it."""
        if self._store is None:
            self._store = PredictionStore(self.predictions)
        return self._store

    def input_rows(self, spec: JobSpec) -> Iterator[InputRow]:
        """The job's input rows: its file's, or a chain's upstream predictions."""
        if spec.input.format == "job" and self.upstream is not None:
            return self.upstream.rows(spec)
        return read_rows(spec.input)

    def close(self) -> None:
        """Closes the index and the executor (which keeps an engine pool handed in, as
        tests share one, open for its owner)."""
        with EngineOutput(last_log()):  # what an engine says as it stops joins its log
            self.executor.close()
        if self._store is not None:
            self._store.close()

    def run(self, spec: JobSpec, *, dry_run: bool = False, limit: int | None = None,
            retry_failed: bool = False) -> RunResult:
        began = time.perf_counter()
        phases = Phases()
        if dry_run:
            # Planning only reads; a dry run must work while cron holds the lock.
            return self._dry_run(spec, began, phases, limit, retry_failed)
        # SIGINT / SIGTERM raise Stopped (batch.run.stopping): the writer keeps what it
        # holds, the run is recorded as interrupted, and the lock is released.
        with catch_stops(), JobLock(self.locks, spec.name):
            recovered = self.store.recover(spec.name)
            with shielded(), self.catalog.sessions.begin() as s:
                # Under the lock no other run of this job can be going: a run still
                # "running" was killed (kill -9, a crash) before it could say so. Its
                # counts are what it wrote, which recovery has just indexed.
                recovered["runs_closed"] = run_log.close_stale_runs(
                    s, spec.name, lambda run_id: self.store.landed_counts(spec.name, run_id))
            if any(recovered.values()):
                log.warning("recovered after an interrupted run: %s", recovered)
            phases.recover_s = time.perf_counter() - began
            result, plans, candidates = self._plan(spec, began, phases, limit, retry_failed)
            run_id = result.run_id = uuid.uuid4().hex
            # With rows to generate, the engine's own output goes to the run's log
            # (batch.run.console), when the front door asked for quiet.
            generating = any(plan.requests for plan in plans)
            engine = EngineOutput(log_path(spec.name, run_id) if generating else None)
            try:
                with engine:
                    self._run(spec, plans, candidates, result, limit, engine.target)
            finally:
                result.engine_log = str(engine.path) if engine.path else None
                result.total_s = time.perf_counter() - began
        return result

    def _run(self, spec: JobSpec, plans: list[Plan], candidates: list[Candidate],
             result: RunResult, limit: int | None, engine_log: Path | None) -> None:
        """Past the plan: check the executor, record the run, write and generate what it
        needs, record how it ended."""
        phases, run_id = result.phases, result.run_id or ""
        # Before anything is written: an executor that cannot serve leaves no trace.
        where = self._prepare(spec, plans, candidates, result)
        if engine_log is not None:
            log.info("%s: %s rows to generate; the engine's output goes to %s", spec.name,
                     f"{sum(p.missing_rows for p in plans):,}", engine_log)
        if self.upstream is not None:  # the job's file, a chain's lineage and memo
            mark = time.perf_counter()
            with shielded():
                self.upstream.record(spec, plans, complete=limit is None)
            phases.plan_s += time.perf_counter() - mark
        mark = time.perf_counter()
        first = candidates[0].model
        started = False
        try:
            # A stop that arrives while the run's record is written is raised as the
            # shield ends: inside this try, so the record is closed as interrupted.
            with shielded(), self.catalog.sessions.begin() as s:
                run_log.start_run(s, run_id, spec.name, first.ref, first.revision, where)
                started = True
            phases.catalog_s += time.perf_counter() - mark
            self._execute(spec, plans, candidates, result, run_id)
            result.settle("failed_rows" if result.failed else "ok")
        except (Stopped, KeyboardInterrupt) as stop:
            if isinstance(stop, Stopped):
                result.settle("interrupted", f"stopped by {stop.name}", stop.exit_code)
                stop.result = result
            else:
                result.settle("interrupted", "stopped by SIGINT")
            raise
        except Exception as exc:
            result.settle("error", f"{type(exc).__name__}: {exc}",
                          getattr(exc, "exit_code", ExitCode.ERROR))
            raise
        finally:
            mark = time.perf_counter()
            if started:
                with shielded():
                    self._record(result, run_id, spec, candidates)
            phases.catalog_s += time.perf_counter() - mark

    def _dry_run(self, spec: JobSpec, began: float, phases: Phases, limit: int | None,
                 retry_failed: bool) -> RunResult:
        """The plan a real run would make, from a store that writes nothing (no index
        created, no fingerprint kept, crash leftovers indexed only in memory)."""
        scratch = PredictionStore.for_dry_run(self.predictions, spec.name)
        kept, self._store = self._store, scratch
        try:
            return self._plan(spec, began, phases, limit, retry_failed)[0]
        finally:
            self._store = kept
            scratch.close()

    def _plan(self, spec: JobSpec, began: float, phases: Phases, limit: int | None,
              retry_failed: bool) -> tuple[RunResult, list[Plan], list[Candidate]]:
        mark = time.perf_counter()
        with self.catalog.sessions() as s:
            candidates = resolve_candidates(s, spec.candidates, spec.path, self.store)
        planning = time.perf_counter()
        phases.resolve_s = planning - mark
        targets = [Target(c.label, c.model.ref, c.model.revision, c.model.identity,
                          c.adapter_ref, c.adapter_identity) for c in candidates]

        def router(name: str | None) -> list[int] | str:
            chosen = route(name, candidates)
            if chosen is None:
                return (f"body.model {name!r} is not a candidate of this job (its candidates: "
                        f"{', '.join(c.label for c in candidates)})")
            return [c.ordinal for c in chosen]

        plans = make_plans(spec, self.store, targets, route=router, limit=limit,
                           retry_failed=retry_failed, upstream=self.upstream)
        done = time.perf_counter()
        phases.plan_s = done - planning
        phases.plan_lookups_s = sum(p.lookups_s for p in plans)
        summary = {name: sum(p.summary()[name] for p in plans) for name in plans[0].summary()}
        result = RunResult(spec.name, None, "planned", {**summary, "candidates": len(plans)},
                           plan_s=done - began, total_s=done - began, phases=phases)
        result.candidates = [
            CandidateRun(c.label, c.model.ref, c.model.revision, c.adapter_ref,
                         c.adapter_identity, inputs=p.inputs, cached=p.cached,
                         failed=p.failed_before)
            for c, p in zip(candidates, plans, strict=True)]
        return result, plans, candidates

    def _record(self, r: RunResult, run_id: str, spec: JobSpec,
                candidates: list[Candidate]) -> None:
        # A run's speed is its model's measured performance; with several models it is
        # nobody's, and each candidate's share is in run_candidates.
        one_model = len({c.model.ref for c in candidates}) == 1
        with self.catalog.sessions.begin() as s:
            run_log.finish_run(
                s, run_id, status=r.status, inputs=r.plan["inputs"], cached=r.cached,
                copied=r.copied, generated=r.generated, failed=r.failed,
                prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens,
                engine_start_s=r.engine_start_s, generation_s=r.generation_s,
                tokens_per_s=r.tokens_per_s if one_model else None, error=r.error,
                engine_starts=r.engine_starts, usd_per_hour=spec.usd_per_hour,
                phases=r.phases.to_json(), executor=r.executor, replicas=r.replicas,
            )
            run_log.record_candidates(s, run_id, r.candidates)

    def _prepare(self, spec: JobSpec, plans: list[Plan], candidates: list[Candidate],
                 result: RunResult) -> str:
        """With rows to generate, the executor checks the job and says where it runs;
        without, no executor is asked (a cluster is never contacted) and the run is
        this machine's."""
        if not any(plan.requests for plan in plans):
            return hardware()
        mark = time.perf_counter()
        placement = self.executor.prepare(spec, candidates)
        result.phases.cluster_s += time.perf_counter() - mark
        result.executor, result.replicas = placement.executor, placement.replicas
        return placement.hardware

    def _execute(self, spec: JobSpec, plans: list[Plan], candidates: list[Candidate],
                 result: RunResult, run_id: str) -> None:
        """Write what is known (copies, failures) for every candidate, then
        generate the rest one engine after another."""
        phases = result.phases
        self.store.set_candidates(spec.name, [c.info() for c in candidates])
        builders = [RecordBuilder.of(plan, run_id) for plan in plans]
        for plan, tally in zip(plans, result.candidates, strict=True):
            result.cached += plan.cached
            result.failed += plan.failed_before
            tally.copied = len(plan.copies)
            tally.failed += len(plan.failures)
        with ShardWriter(self.store, spec.name, run_id, spec.shard_rows,
                         spec.row_group_rows, spec.compression) as writer:
            out = _Output(writer, phases)
            for plan, records in zip(plans, builders, strict=True):
                self._known(spec, plan, records, out, result)
            # One progress for the run, whatever the engines behind it.
            out.progress = Progress(sum(p.missing_rows for p in plans), spec.name)
            try:
                for group in engine_groups(candidates):
                    shares = [Share(plans[c.ordinal], builders[c.ordinal],
                                    c.adapter.path if c.adapter else None,
                                    result.candidates[c.ordinal])
                              for c in group.members if plans[c.ordinal].requests]
                    if shares:
                        self.executor.generate(group, shares, out, result)
                        out.progress.pause()  # the next engine's start is not the rates'
            finally:
                out.progress.close()
                out.progress = None
            out.flush()  # the last shard, timed; closing the writer then has nothing left
        result.shards = writer.shards

    def _known(self, spec: JobSpec, plan: Plan, records: RecordBuilder, out: _Output,
               result: RunResult) -> None:
        """A plan's rows that need no engine: copied and failed ones."""
        phases = result.phases
        for i in range(0, len(plan.copies), COPY_CHUNK):
            mark = time.perf_counter()
            chunk = plan.copies[i : i + COPY_CHUNK]
            sources = self.store.read_rows([src for _, _, src in chunk])
            copies = [records.copied(source, input_id)
                      for (input_id, _, _), source in zip(chunk, sources, strict=True)]
            phases.copy_s += time.perf_counter() - mark
            with shielded():  # written and counted together, or neither, when a stop comes
                out.add(copies)
                result.copied += len(copies)
        mark = time.perf_counter()
        failures = [records.failed(failure) for failure in plan.failures]
        phases.record_s += time.perf_counter() - mark
        with shielded():
            out.add(failures)
            result.failed += len(plan.failures)


def configure_logging() -> None:
    """Almanac's log lines on stderr (batch.run.console's: the terminal even while the
    engine's output goes to its log)."""
    if log.handlers:  # several jobs, or the demo, in one process
        return
    handler = ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
