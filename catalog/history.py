"""Revisions a model moved on from: kept with what the catalog knew at the time, and the
question other rooms ask of them, "were these predictions made on the current revision?"

`revision_status` (one pair) and `revision_statuses` (many) answer it for the cache's
readers and for `compare`: a job's rows carry the model reference and the commit they
were generated with; when the Hub has since moved the model (`models refresh`), the
answer names the current revision and when the catalog saw the old one replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from catalog.lookup import find_model
from catalog.records import RevisionRecord, jsonable
from catalog.revision_status import RevisionStatus
from catalog.tables import ModelRevision


def record_replaced(session: Session, model_id: int, revision: str, facts: dict[str, Any], *,
                    seen_at: datetime | None, replaced_at: datetime, replaced_by: str | None) -> None:
    """Keep `revision`'s facts: the Hub has moved the model to `replaced_by`. A revision
    seen replaced before (the Hub moved back and forth) keeps its latest facts."""
    values = {"model_id": model_id, "revision": revision, "facts": json.dumps(jsonable(facts)),
              "seen_at": seen_at, "replaced_at": replaced_at, "replaced_by": replaced_by}
    stmt = insert(ModelRevision).values(**values)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["model_id", "revision"],
        set_={k: stmt.excluded[k] for k in ("facts", "seen_at", "replaced_at", "replaced_by")}))


def history_of(session: Session, model_id: int) -> list[RevisionRecord]:
    """A model's earlier revisions, most recently replaced first."""
    rows = session.scalars(select(ModelRevision).where(ModelRevision.model_id == model_id)
                           .order_by(ModelRevision.replaced_at.desc(), ModelRevision.id.desc()))
    return [RevisionRecord(revision=r.revision, replaced_at=r.replaced_at, replaced_by=r.replaced_by,
                           seen_at=r.seen_at, facts=json.loads(r.facts)) for r in rows]


def revision_status(session: Session, ref: str, revision: str | None) -> RevisionStatus:
    """Is `revision` the catalog's current revision of model `ref`, and if not, which is?"""
    model = find_model(session, ref)
    status = RevisionStatus(ref=ref, revision=revision)
    if model is None:
        return status
    status.model_ref, status.current_revision = model.ref, model.revision
    if revision is None or model.revision is None:
        return status
    status.is_current = revision == model.revision
    if not status.is_current:
        status.replaced_at = session.scalar(select(ModelRevision.replaced_at).where(
            ModelRevision.model_id == model.id, ModelRevision.revision == revision))
    return status


def revision_statuses(session: Session, pairs: Iterable[tuple[str, str | None]]
                      ) -> dict[tuple[str, str | None], RevisionStatus]:
    """`revision_status` for each distinct (model ref, revision) pair."""
    return {pair: revision_status(session, *pair) for pair in dict.fromkeys(pairs)}
