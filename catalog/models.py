"""Writing and reading single models: upsert, lookup by reference, removal."""

from __future__ import annotations

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from catalog import taxonomy
from catalog.records import EvalRecord, ModelEntry, ModelRecord, PerformanceRecord
from catalog.tables import (
    RELATIONS,
    SOURCES,
    Eval,
    Model,
    ModelDomain,
    ModelLanguage,
    ModelTag,
    Run,
    utcnow,
)
from schemas.errors import AlmanacError

_SCALARS = (
    "repo_id", "revision", "name", "description", "architecture", "parameters",
    "context_length", "dtype", "license", "task", "base_model", "relation",
    "adapter_rank", "source", "local_path", "gated", "downloads", "likes", "card",
)


class UnknownModelError(AlmanacError, LookupError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no model {ref!r} in the catalog (see `almanac models list`)")
        self.ref = ref


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
    return entry


def upsert_model(session: Session, entry: ModelEntry) -> Model:
    """Insert or replace a model and everything hanging off it, in the caller's transaction."""
    entry = validate_entry(entry)
    model = session.scalar(select(Model).where(Model.ref == entry.ref))
    if model is None:
        model = Model(ref=entry.ref)
        session.add(model)
        children_before = None
    else:
        children_before = _children(model)
    for name in _SCALARS:
        setattr(model, name, getattr(entry, name))
    model.description = model.description or ""
    model.card = model.card or ""
    model.languages = [ModelLanguage(language=code) for code in entry.languages]
    model.domains = [ModelDomain(domain=slug) for slug in entry.domains]
    model.tags = [ModelTag(tag=tag) for tag in entry.tags]
    model.evals = _merge_evals(model.evals, entry.evals)
    if children_before is not None and children_before != _children(model):
        # onupdate only fires for the models row itself; a change to languages,
        # domains, tags or evals alone is still an update of the model.
        model.updated_at = utcnow()
    session.flush()
    _index_text(session, model, entry.tags)
    return model


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


def _index_text(session: Session, model: Model, tags: list[str]) -> None:
    session.execute(text("DELETE FROM models_fts WHERE rowid = :id"), {"id": model.id})
    session.execute(
        text(
            "INSERT INTO models_fts(rowid, ref, name, description, tags, card) "
            "VALUES (:id, :ref, :name, :description, :tags, :card)"
        ),
        {
            "id": model.id,
            "ref": model.ref.replace("/", " ") + " " + model.ref,
            "name": model.name,
            "description": model.description,
            "tags": " ".join(tags),
            "card": model.card,
        },
    )


def find_model(session: Session, ref: str) -> Model | None:
    """By reference, then repo id, then a case-insensitive name; None if nothing matches.
    Both sides go through SQLite's lower(), which folds ASCII only: Python's str.lower()
    on one side would make a name such as "Ǎguila 7B" unfindable even typed exactly."""
    model = session.scalar(select(Model).where(Model.ref == ref))
    if model is None:
        model = session.scalar(
            select(Model).where(or_(Model.repo_id == ref, func.lower(Model.ref) == func.lower(ref)))
        )
    if model is None:
        matches = session.scalars(
            select(Model).where(func.lower(Model.name) == func.lower(ref)).limit(2)
        ).all()
        model = matches[0] if len(matches) == 1 else None
    return model


def get_model(session: Session, ref: str) -> Model:
    model = find_model(session, ref)
    if model is None:
        raise UnknownModelError(ref)
    return model


def remove_model(session: Session, ref: str) -> str:
    model = get_model(session, ref)
    session.execute(text("DELETE FROM models_fts WHERE rowid = :id"), {"id": model.id})
    session.delete(model)
    return model.ref


def to_record(session: Session, model: Model, *, detail: bool = False) -> ModelRecord:
    record = ModelRecord(
        id=model.id,
        ref=model.ref,
        created_at=model.created_at,
        updated_at=model.updated_at,
        languages=sorted(lang.language for lang in model.languages),
        domains=sorted(d.domain for d in model.domains),
        tags=sorted(t.tag for t in model.tags),
        evals=[EvalRecord(e.benchmark, e.metric, e.value, e.source) for e in model.evals],
        **{name: getattr(model, name) for name in _SCALARS},
    )
    if detail:
        # Only LoRA-style adapters: finetunes, quantizations and merges are not adapters.
        # A local model has no repo id; `base_model == None` would match every root model.
        bases = [b for b in (model.ref, model.repo_id) if b]
        record.adapters = list(
            session.scalars(
                select(Model.ref)
                .where(Model.base_model.in_(bases), Model.relation == "adapter")
                .order_by(Model.ref)
            )
        )
        record.performance = performances(session, [model.id]).get(model.id)
        from catalog.evals import measured_for_model  # evals builds on this module

        record.measured = measured_for_model(session, model.id)
    return record


def performances(session: Session, model_ids: list[int]) -> dict[int, PerformanceRecord]:
    """Each model's latest generating run, which is what users compare, and how many
    there were. SQLite fills the bare columns from the row that holds max()."""
    latest = (
        select(Run.model_id, Run.tokens_per_s, Run.engine_start_s, Run.hardware,
               func.max(Run.started_at), func.count())
        .where(Run.model_id.in_(model_ids), Run.generated > 0, Run.tokens_per_s.is_not(None))
        .group_by(Run.model_id)
    )
    return {
        model_id: PerformanceRecord(runs=n, tokens_per_s=tps, engine_start_s=start,
                                    hardware=hw, last_run_at=at)
        for model_id, tps, start, hw, at, n in session.execute(latest)
    }


def fill_from_existing(session: Session, entry: ModelEntry) -> ModelEntry:
    """What an import does not know, keep from the catalog: a model card that says
    nothing about domain must not erase the curated `medicine/biomedical`."""
    model = session.scalar(select(Model).where(Model.ref == entry.ref))
    if model is None:
        return entry
    have = to_record(session, model)
    for name in _SCALARS:
        if getattr(entry, name) in (None, "") and getattr(have, name) not in (None, ""):
            setattr(entry, name, getattr(have, name))
    if entry.domains in ([], ["general"]) and have.domains:
        entry.domains = have.domains
    if not entry.languages:
        entry.languages = have.languages
    entry.tags = list(dict.fromkeys([*have.tags, *entry.tags]))
    entry.evals = entry.evals or have.evals
    return entry
