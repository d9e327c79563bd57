"""Scores Almanac measured on users' jobs, kept apart from the evals copied from model
cards: a model's measured quality on a task, next to its measured speed and cost.

A score is kept on the model a candidate ran (`model_id`) with the adapter it ran with
(`adapter`, as the job named it; "" for none). Whose score it is follows from that: a
model's own score is one measured without an adapter; a score measured with an adapter
belongs to that adapter when the catalog holds it (by reference, repo id or directory),
so a base is never credited with what its adapter did. A score with an adapter the
catalog does not hold stays on the base, naming the adapter.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session, aliased

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


def _names(model: type[Model], adapter: ColumnElement[str]) -> ColumnElement[bool]:
    """Whether the `adapter` a score was measured with is `model` (an alias of Model)."""
    return or_(model.ref == adapter, model.repo_id == adapter, model.local_path == adapter)


def measured_for_model(session: Session, model: Model) -> list[MeasuredEvalRecord]:
    """The measured scores that are `model`'s, newest first: its own (no adapter), and
    for an adapter those measured with it; for a base also those measured with an
    adapter the catalog does not hold (they name it; no other model can own them)."""
    held = aliased(Model)
    elsewhere = select(held.id).where(_names(held, MeasuredEval.adapter)).exists()
    mine = [MeasuredEval.adapter == adapter for adapter in (model.ref, model.repo_id,
                                                             model.local_path) if adapter]
    rows = session.execute(
        select(MeasuredEval, Model.ref).join(Model, Model.id == MeasuredEval.model_id)
        .where(or_(and_(MeasuredEval.model_id == model.id,
                        or_(MeasuredEval.adapter == "", ~elsewhere)), *mine))
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
