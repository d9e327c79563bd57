"""A model's detail record (`models show`, `GET /models/{ref}`, the TUI's model screen):
its own facts, its adapters, its measured speed, its measured scores on users' jobs, the
revisions it moved on from and, for an adapter `almanac train` made, how it was trained.
It sits above `catalog.models`, `catalog.evals`, `catalog.history` and `catalog.training`,
the modules it gathers from, so none of them reaches back for it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from catalog.evals import measured_for_model
from catalog.history import history_of
from catalog.models import adapters_of, performances, to_record
from catalog.records import ModelRecord
from catalog.tables import Model
from catalog.training import training_of


def model_detail(session: Session, model: Model) -> ModelRecord:
    record = to_record(session, model)
    record.adapters = adapters_of(session, model)
    record.performance = performances(session, [model.id]).get(model.id)
    record.measured = measured_for_model(session, model)
    record.history = history_of(session, model.id)
    record.training = training_of(session, model.id)
    return record
