"""Writing and reading single models: upsert, lookup by reference, removal."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import indexing, taxonomy
from catalog.history import record_replaced
from catalog.listing import SCALARS, performances
from catalog.lookup import UnknownModelError, find_model, get_model
from catalog.records import CURATABLE, EvalRecord, ModelEntry, ModelRecord
from catalog.tables import (
    RELATIONS,
    SOURCES,
    Eval,
    Model,
    ModelDomain,
    ModelLanguage,
    ModelTag,
    utcnow,
)

# find_model, get_model and UnknownModelError live in catalog.lookup (below history and
# evals, which ask them too); they are named here as well, where callers have long found them.
__all__ = ["UnknownModelError", "adapters_of", "facts_of", "fill_from_existing", "find_model",
           "get_model", "indexed_of", "performances", "remove_model", "to_record",
           "upsert_model", "validate_entry"]

def validate_entry(entry: ModelEntry) -> ModelEntry:
    """Normalize codes and slugs; raise ValueError naming the field that is wrong."""
    if not entry.ref:
        raise ValueError("ref: a model needs a repo id or a local name")
    if entry.source not in SOURCES:
        raise ValueError(f"source: {entry.source!r} is not one of {', '.join(SOURCES)}")
    if entry.relation is not None and entry.relation not in RELATIONS:
        raise ValueError(f"relation: {entry.relation!r} is not one of {', '.join(RELATIONS)}")
    try:
        entry.languages = taxonomy.expand_languages(entry.languages)
    except taxonomy.TaxonomyError as exc:
        raise ValueError(f"languages: {exc}") from None
    try:
        entry.domains = list(dict.fromkeys(taxonomy.normalize_domain(d) for d in entry.domains))
    except taxonomy.TaxonomyError as exc:
        raise ValueError(f"domains: {exc}") from None
    entry.tags = list(dict.fromkeys(t.strip().lower() for t in entry.tags if t.strip()))
    unknown = set(entry.curated) - set(CURATABLE)
    if unknown:
        raise ValueError(f"curated: {', '.join(sorted(unknown))} cannot be curated")
    entry.curated = sorted(set(entry.curated))
    return entry


def upsert_model(session: Session, entry: ModelEntry, *, refreshed_at: datetime | None = None) -> Model:
    """Insert or replace a model and everything hanging off it, in the caller's transaction.
    `refreshed_at`: the Hub described it just now. A Hub revision that moved on is kept in
    the model's history with what the catalog knew of it."""
    entry = validate_entry(entry)
    model = session.scalar(select(Model).where(Model.ref == entry.ref))
    if model is None:
        model = Model(ref=entry.ref)
        session.add(model)
        children_before = before = None
    else:
        children_before = _children(model)
        before = indexed_of(model)
        if model.revision and entry.revision and entry.revision != model.revision:
            record_replaced(session, model.id, model.revision, facts_of(to_record(session, model)),
                            seen_at=model.refreshed_at or model.updated_at,
                            replaced_at=refreshed_at or utcnow(), replaced_by=entry.revision)
    for name in SCALARS:
        setattr(model, name, getattr(entry, name))
    model.description = model.description or ""
    model.card = model.card or ""
    model.curated = json.dumps(entry.curated) if entry.curated else None
    if refreshed_at is not None:
        model.refreshed_at = refreshed_at
    model.languages = [ModelLanguage(language=code) for code in entry.languages]
    model.domains = [ModelDomain(domain=slug) for slug in entry.domains]
    model.tags = [ModelTag(tag=tag) for tag in entry.tags]
    model.evals = _merge_evals(model.evals, entry.evals)
    if children_before is not None and children_before != _children(model):
        # onupdate only fires for the models row itself; a change to languages,
        # domains, tags or evals alone is still an update of the model.
        model.updated_at = utcnow()
    session.flush()
    indexing.apply(session.connection(), [before] if before else [], [indexed_of(model)])
    session.refresh(model, ["text_key"])
    return model


def indexed_of(model: Model) -> indexing.Indexed:
    return indexing.Indexed(
        id=model.id, ref=model.ref, name=model.name, description=model.description or "",
        card=model.card or "", downloads=model.downloads,
        tags=tuple(sorted(t.tag for t in model.tags)),
        domains=tuple(sorted(d.domain for d in model.domains)),
        languages=tuple(sorted(lang.language for lang in model.languages)),
        text_key=model.text_key)


# What a revision's entry in a model's history keeps: everything but the card's text.
_FACTS = (*(f for f in SCALARS if f != "card"), "languages", "domains", "evals")


def facts_of(record: ModelEntry) -> dict[str, Any]:
    facts = {name: getattr(record, name) for name in _FACTS}
    facts["evals"] = [asdict(e) for e in record.evals]
    return facts


def _merge_evals(have: list[Eval], want: list[EvalRecord]) -> list[Eval]:
    """Keep the Eval rows that stay and update them in place. Replacing them with new
    objects would INSERT before the old rows are DELETEd and hit uq_evals."""
    existing = {(e.benchmark, e.metric): e for e in have}
    out = []
    for (benchmark, metric), record in {(e.benchmark, e.metric): e for e in want}.items():
        row = existing.get((benchmark, metric)) or Eval(benchmark=benchmark, metric=metric)
        row.value, row.source = record.value, record.source
        out.append(row)
    return out


def _children(model: Model) -> tuple:
    return (
        sorted(lang.language for lang in model.languages),
        sorted(d.domain for d in model.domains),
        sorted(t.tag for t in model.tags),
        sorted((e.benchmark, e.metric, e.value, e.source or "") for e in model.evals),
    )


def remove_model(session: Session, ref: str) -> str:
    model = get_model(session, ref)
    indexing.apply(session.connection(), [indexed_of(model)], [])
    session.delete(model)
    return model.ref


def to_record(session: Session, model: Model) -> ModelRecord:
    """The model's own facts as a plain record (catalog.detail adds its adapters,
    measured speed and scores, and history)."""
    return ModelRecord(
        id=model.id,
        ref=model.ref,
        created_at=model.created_at,
        updated_at=model.updated_at,
        languages=sorted(lang.language for lang in model.languages),
        domains=sorted(d.domain for d in model.domains),
        tags=sorted(t.tag for t in model.tags),
        evals=[EvalRecord(e.benchmark, e.metric, e.value, e.source) for e in model.evals],
        curated=json.loads(model.curated) if model.curated else [],
        refreshed_at=model.refreshed_at,
        **{name: getattr(model, name) for name in SCALARS},
    )


def adapters_of(session: Session, model: Model) -> list[str]:
    """The catalog's LoRA adapters built on `model`, by reference. Only adapters:
    finetunes, quantizations and merges are not. A local model has no repo id
    (`base_model == None` would match every root model), and an adapter added from a
    directory names its base by the path it was trained on."""
    bases = [b for b in (model.ref, model.repo_id, model.local_path) if b]
    return list(session.scalars(
        select(Model.ref).where(Model.base_model.in_(bases), Model.relation == "adapter")
        .order_by(Model.ref)))


def fill_from_existing(session: Session, entry: ModelEntry) -> ModelEntry:
    """What an import does not know, keep from the catalog: a model card that says
    nothing about domain must not erase the curated `medicine/biomedical`. What the seed
    list or the user stated (the model's curated fields) stays as it is, unless this entry
    states it again."""
    model = session.scalar(select(Model).where(Model.ref == entry.ref))
    if model is None:
        return entry
    have = to_record(session, model)
    for name in set(have.curated) - set(entry.curated):
        setattr(entry, name, getattr(have, name))
    entry.curated = sorted({*have.curated, *entry.curated})
    for name in SCALARS:
        if getattr(entry, name) in (None, "") and getattr(have, name) not in (None, ""):
            setattr(entry, name, getattr(have, name))
    if entry.domains in ([], ["general"]) and have.domains:
        entry.domains = have.domains
    if not entry.languages:
        entry.languages = have.languages
    entry.tags = list(dict.fromkeys([*have.tags, *entry.tags]))
    entry.evals = entry.evals or have.evals
    return entry
