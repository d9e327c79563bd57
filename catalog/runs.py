"""Run bookkeeping: every batch run is a row, and its figures are the model's
measured performance. Readers get plain `RunRecord`s, never table rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from catalog.lookup import find_model
from catalog.records import CandidateRun, RunRecord
from catalog.tables import Run, RunCandidate


def start_run(session: Session, run_id: str, job: str, model_ref: str, revision: str | None,
              hardware: str | None = None) -> None:
    model = find_model(session, model_ref)
    session.add(
        Run(
            id=run_id, job=job, model_id=model.id if model else None, model_ref=model_ref,
            revision=revision, status="running", inputs=0, cached=0, copied=0, generated=0,
            failed=0, prompt_tokens=0, output_tokens=0, hardware=hardware,
        )
    )


def finish_run(session: Session, run_id: str, *, status: str, **figures: object) -> None:
    run = session.get(Run, run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r}")
    run.status = status
    run.finished_at = datetime.now(UTC)
    for name, value in figures.items():
        # The phases arrive as a mapping; the column keeps them as JSON text.
        setattr(run, name, json.dumps(value) if name == "phases" and value is not None else value)


def close_stale_runs(session: Session, job: str,
                     landed: Callable[[str], Mapping[str, int]] | None = None) -> int:
    """Mark `job`'s runs still "running" as interrupted; returns how many. Call under the
    job's lock, when no run of it can be going: these were killed before they could
    record their end (the end time stays unknown). `landed(run_id)` gives the counts of
    what such a run wrote (generated, copied, failed, prompt_tokens, output_tokens),
    which become its counts."""
    stale = session.scalars(select(Run).where(Run.job == job, Run.status == "running")).all()
    for run in stale:
        run.status = "interrupted"
        run.error = "the run ended without recording it (killed, or the machine stopped)"
        if landed is not None:
            for name, value in landed(run.id).items():
                setattr(run, name, value)
    return len(stale)


def list_runs(session: Session, job: str | None = None, limit: int | None = 50,
              offset: int = 0) -> list[RunRecord]:
    """Runs newest first (ties in id order, so pages never overlap)."""
    stmt = select(Run).order_by(Run.started_at.desc(), Run.id)
    if job:
        stmt = stmt.where(Run.job == job)
    if limit:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return [run_record(r) for r in session.scalars(stmt)]


def count_runs(session: Session, job: str | None = None) -> int:
    stmt = select(func.count()).select_from(Run)
    return session.scalar(stmt.where(Run.job == job) if job else stmt) or 0


def jobs_of_model(session: Session, ref: str) -> list[str]:
    """Jobs that have run this model, by id or by reference (indexed: ix_runs_model)."""
    model = find_model(session, ref)
    if model is None:
        return []
    return list(session.scalars(
        select(Run.job).where(or_(Run.model_id == model.id, Run.model_ref == model.ref))
        .distinct().order_by(Run.job)
    ))


def run_record(run: Run) -> RunRecord:
    fields = {f: getattr(run, f) for f in RunRecord.__dataclass_fields__}
    fields["phases"] = json.loads(run.phases) if run.phases else None
    return RunRecord(**fields)


def record_candidates(session: Session, run_id: str, candidates: list[CandidateRun]) -> None:
    """One row per candidate of a run (replacing what the run recorded before)."""
    session.execute(delete(RunCandidate).where(RunCandidate.run_id == run_id))
    for c in candidates:
        model = find_model(session, c.model_ref)
        session.add(RunCandidate(
            run_id=run_id, label=c.label, model_id=model.id if model else None,
            model_ref=c.model_ref, revision=c.revision, adapter=c.adapter,
            adapter_revision=c.adapter_revision, inputs=c.inputs, cached=c.cached,
            copied=c.copied, generated=c.generated, failed=c.failed,
            prompt_tokens=c.prompt_tokens, output_tokens=c.output_tokens,
            generation_s=c.generation_s, engine_start_s=c.engine_start_s,
            engine_group=c.engine_group,
        ))


def candidate_runs(session: Session, job: str) -> list[CandidateRun]:
    """Every candidate of every run of `job`, newest run first (ix_runs_job_started)."""
    rows = session.execute(
        select(RunCandidate, Run.started_at, Run.usd_per_hour, Run.hardware, Run.executor)
        .join(Run, Run.id == RunCandidate.run_id)
        .where(Run.job == job)
        .order_by(Run.started_at.desc(), Run.id, RunCandidate.label)
    ).all()
    return [
        CandidateRun(
            label=c.label, model_ref=c.model_ref, revision=c.revision, adapter=c.adapter,
            adapter_revision=c.adapter_revision, inputs=c.inputs, cached=c.cached,
            copied=c.copied, generated=c.generated, failed=c.failed,
            prompt_tokens=c.prompt_tokens, output_tokens=c.output_tokens,
            generation_s=c.generation_s, engine_start_s=c.engine_start_s,
            engine_group=c.engine_group, run_id=c.run_id, started_at=started,
            usd_per_hour=price, hardware=hardware, executor=executor,
        )
        for c, started, price, hardware, executor in rows
    ]
