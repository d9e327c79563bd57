"""Scores Almanac measured on users' jobs, kept apart from the evals copied from model
cards: a model's measured quality on a task, next to its measured speed and cost."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.lookup import get_model
from catalog.records import MeasuredEvalRecord
from catalog.tables import MeasuredEval, Model


def record_measured(session: Session, measured: MeasuredEvalRecord) -> None:
    """Insert or update the score of (model, adapter, task, metric): the latest
    measurement stands. Raises UnknownModelError for a model not in the catalog."""
    model = get_model(session, measured.model_ref)
    row = session.scalar(select(MeasuredEval).where(
        MeasuredEval.model_id == model.id, MeasuredEval.adapter == (measured.adapter or ""),
        MeasuredEval.task == measured.task, MeasuredEval.metric == measured.metric))
    if row is None:
        row = MeasuredEval(model_id=model.id, adapter=measured.adapter or "", task=measured.task,
                           metric=measured.metric)
        session.add(row)
    row.value, row.n = measured.value, measured.n
    row.ci_low, row.ci_high = measured.ci_low, measured.ci_high
    row.adapter_revision, row.revision, row.label = (measured.adapter_revision, measured.revision,
                                                     measured.label)
    row.hardware, row.run_id = measured.hardware, measured.run_id
    row.measured_at = measured.measured_at or datetime.now(UTC)


def measured_for_model(session: Session, model_id: int) -> list[MeasuredEvalRecord]:
    """Every measured score of one model (with or without an adapter), newest first."""
    rows = session.execute(
        select(MeasuredEval, Model.ref).join(Model, Model.id == MeasuredEval.model_id)
        .where(MeasuredEval.model_id == model_id)
        .order_by(MeasuredEval.measured_at.desc(), MeasuredEval.task, MeasuredEval.metric)
    ).all()
    return [_record(row, ref) for row, ref in rows]


def measured_for_task(session: Session, task: str, metric: str | None = None) -> list[MeasuredEvalRecord]:
    """A job's leaderboard: every measured score on it, best first (ix_measured_evals_task)."""
    stmt = (select(MeasuredEval, Model.ref).join(Model, Model.id == MeasuredEval.model_id)
            .where(MeasuredEval.task == task))
    if metric is not None:
        stmt = stmt.where(MeasuredEval.metric == metric)
    rows = session.execute(stmt.order_by(MeasuredEval.value.desc(), Model.ref)).all()
    return [_record(row, ref) for row, ref in rows]


def _record(row: MeasuredEval, ref: str) -> MeasuredEvalRecord:
    return MeasuredEvalRecord(
        model_ref=ref, task=row.task, metric=row.metric, value=row.value, n=row.n,
        adapter=row.adapter, adapter_revision=row.adapter_revision, revision=row.revision,
        label=row.label, ci_low=row.ci_low, ci_high=row.ci_high, hardware=row.hardware,
        run_id=row.run_id, measured_at=row.measured_at,
    )
