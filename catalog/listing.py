"""A page of models as plain records, read with a handful of Core queries (one for the
models, one per kind of child row) instead of ORM objects and their lazy loads per row."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import _SCALARS, performances
from catalog.records import EvalRecord, ModelRecord
from catalog.tables import Eval, Model, ModelDomain, ModelLanguage, ModelTag

_COLUMNS = [getattr(Model, name) for name in
            ("id", "ref", "created_at", "updated_at", "curated", "refreshed_at", *_SCALARS)]


def records_for(session: Session, ids: list[int], *, scores: dict[int, float] | None = None,
                performance: bool = True) -> list[ModelRecord]:
    """The models with these ids, in this order, with languages, domains, tags, evals and
    (unless `performance=False`) measured speed, and `score` when given."""
    if not ids:
        return []
    rows = {r.id: r for r in session.execute(select(*_COLUMNS).where(Model.id.in_(ids)))}
    children: dict[str, dict[int, list[Any]]] = {}
    for name, column in (("languages", ModelLanguage.language), ("domains", ModelDomain.domain),
                         ("tags", ModelTag.tag)):
        found: dict[int, list[Any]] = defaultdict(list)
        table = column.class_
        for model_id, value in session.execute(select(table.model_id, column).where(table.model_id.in_(ids))):
            found[model_id].append(value)
        children[name] = found
    evals: dict[int, list[EvalRecord]] = defaultdict(list)
    for model_id, *fields in session.execute(
            select(Eval.model_id, Eval.benchmark, Eval.metric, Eval.value, Eval.source)
            .where(Eval.model_id.in_(ids)).order_by(Eval.id)):
        evals[model_id].append(EvalRecord(*fields))
    measured = performances(session, ids) if performance else {}
    out = []
    for model_id in ids:
        row = rows.get(model_id)
        if row is None:  # removed between the listing and this read
            continue
        fields = row._asdict()
        curated = fields.pop("curated")
        out.append(ModelRecord(
            **fields,
            curated=json.loads(curated) if curated else [],
            languages=sorted(children["languages"].get(model_id, [])),
            domains=sorted(children["domains"].get(model_id, [])),
            tags=sorted(children["tags"].get(model_id, [])),
            evals=evals.get(model_id, []),
            performance=measured.get(model_id),
            score=(scores or {}).get(model_id),
        ))
    return out
