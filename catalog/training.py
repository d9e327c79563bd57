"""Trained adapters in the catalog: how each was made (its lineage), and the adapters of
a base model. `almanac train` writes; `models show`, `models list --adapters-of` and
the TUI's model detail read."""

from __future__ import annotations

import json
from dataclasses import asdict

from sqlalchemy.orm import Session

from catalog.records import TrainingRecord, TrainingSource
from catalog.tables import Training


def record_training(session: Session, model_id: int, record: TrainingRecord) -> None:
    """Insert or replace the lineage of model `model_id`, in the caller's transaction."""
    row = session.get(Training, model_id)
    if row is None:
        row = Training(model_id=model_id)
        session.add(row)
    for name in ("key", "base_ref", "base_revision", "data_path", "data_digest", "data_filter",
                 "train_rows", "validation_rows", "train_loss", "eval_loss", "steps", "epochs",
                 "seconds", "device", "dtype", "hardware"):
        setattr(row, name, getattr(record, name))
    row.sources = json.dumps([asdict(s) for s in record.sources])
    row.settings = json.dumps(record.settings)  # in the order the options read
    row.versions = json.dumps(record.versions, sort_keys=True)
    if record.trained_at is not None:
        row.trained_at = record.trained_at
    session.flush()


def training_of(session: Session, model_id: int) -> TrainingRecord | None:
    row = session.get(Training, model_id)
    if row is None:
        return None
    return TrainingRecord(
        key=row.key, base_ref=row.base_ref, base_revision=row.base_revision,
        data_path=row.data_path, data_digest=row.data_digest, data_filter=row.data_filter,
        train_rows=row.train_rows, validation_rows=row.validation_rows,
        sources=[TrainingSource(**s) for s in json.loads(row.sources)],
        settings=json.loads(row.settings), train_loss=row.train_loss, eval_loss=row.eval_loss,
        steps=row.steps, epochs=row.epochs, seconds=row.seconds, device=row.device,
        dtype=row.dtype, hardware=row.hardware, versions=json.loads(row.versions),
        trained_at=row.trained_at)
