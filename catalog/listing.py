"""A page of models as plain records, read with a handful of Core queries (one for the
models, one per kind of child row) instead of ORM objects and their lazy loads per row.

The statements are built once: each takes the page's ids as one JSON array (SQLite's
`json_each`), so a page costs no statement building, no per-id parameters to render, and
SQLite finds each statement in its cache. At a million models a page of 50 reads in a
few milliseconds; building the statements anew took longer than running them."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy import Integer, Select, String, bindparam, func, literal_column, select
from sqlalchemy.orm import Session

from catalog.models import _SCALARS, performances
from catalog.records import EvalRecord, ModelRecord
from catalog.tables import Eval, Model, ModelDomain, ModelLanguage, ModelTag

_COLUMNS = [getattr(Model, name) for name in
            ("id", "ref", "created_at", "updated_at", "curated", "refreshed_at", *_SCALARS)]
# The page's ids, from one JSON array parameter.
_IDS = (select(literal_column("value", Integer))
        .select_from(func.json_each(bindparam("ids", type_=String))))


def _of(table: Any, *columns: Any) -> Select:
    return select(table.model_id, *columns).where(table.model_id.in_(_IDS))


_MODELS = select(*_COLUMNS).where(Model.id.in_(_IDS))
_CHILDREN = {"languages": _of(ModelLanguage, ModelLanguage.language),
             "domains": _of(ModelDomain, ModelDomain.domain),
             "tags": _of(ModelTag, ModelTag.tag)}
_EVALS = _of(Eval, Eval.benchmark, Eval.metric, Eval.value, Eval.source).order_by(Eval.id)


def records_for(session: Session, ids: list[int], *, scores: dict[int, float] | None = None,
                performance: bool = True) -> list[ModelRecord]:
    """The models with these ids, in this order, with languages, domains, tags, evals and
    (unless `performance=False`) measured speed, and `score` when given."""
    if not ids:
        return []
    page = {"ids": json.dumps(ids)}
    rows = {r.id: r for r in session.execute(_MODELS, page)}
    children: dict[str, dict[int, list[Any]]] = {}
    for name, stmt in _CHILDREN.items():
        found: dict[int, list[Any]] = defaultdict(list)
        for model_id, value in session.execute(stmt, page):
            found[model_id].append(value)
        children[name] = found
    evals: dict[int, list[EvalRecord]] = defaultdict(list)
    for model_id, *fields in session.execute(_EVALS, page):
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
