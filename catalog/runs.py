"""Run bookkeeping: every batch run is a row, and its figures are the model's
measured performance. Readers get plain `RunRecord`s, never table rows."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from catalog.models import find_model
from catalog.records import RunRecord
from catalog.tables import Run


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
        setattr(run, name, value)


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
    return RunRecord(**{f: getattr(run, f) for f in RunRecord.__dataclass_fields__})
