"""Listing the catalog: filters, full-text search, sorting, paging and facet counts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import Select, case, distinct, func, literal, select, text, true, union_all
from sqlalchemy.orm import Session

from catalog import sizes, taxonomy
from catalog.records import ModelRecord
from catalog.store import to_record
from catalog.tables import Model, ModelDomain, ModelLanguage, Run

SORTS = {
    "name": (Model.name.collate("NOCASE"),),
    "params": (Model.parameters.is_(None), Model.parameters),
    "-params": (Model.parameters.is_(None), Model.parameters.desc()),
    "downloads": (Model.downloads.desc().nulls_last(),),
    "likes": (Model.likes.desc().nulls_last(),),
    "updated": (Model.updated_at.desc(),),
    "license": (Model.license, Model.name),
}


@dataclass
class ModelFilter:
    domains: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    min_params: int | None = None
    max_params: int | None = None
    licenses: list[str] = field(default_factory=list)
    fits_bytes: int | None = None
    quant: str | None = None
    search: str | None = None
    source: str | None = None
    sort: str = "name"
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        if self.sort not in SORTS and self.sort != "relevance":
            raise ValueError(f"sort: {self.sort!r} is not one of {', '.join([*SORTS, 'relevance'])}")
        if self.quant is not None and self.quant not in sizes.QUANTS:
            raise ValueError(f"quant: {self.quant!r} is not one of {', '.join(sizes.QUANTS)}")


def fts_query(text_: str) -> str:
    """User words to an FTS5 query: each word a prefix match, all words required."""
    words = re.findall(r"\w+", text_, flags=re.UNICODE)
    return " ".join(f'"{w}"*' for w in words)


def _bytes_per_param(quant: str | None):  # noqa: ANN202 - a SQL expression
    if quant:
        return literal(sizes.BYTES_PER_PARAM[quant])
    whens = {k: v for k, v in sizes.BYTES_PER_PARAM.items()}
    return case(whens, value=func.lower(Model.dtype), else_=2.0)


def _filtered(f: ModelFilter, *, skip: str | None = None) -> Select:
    """The filtered id set; `skip` leaves one facet out so its own counts stay useful."""
    stmt = select(Model.id)
    if f.domains and skip != "domain":
        slugs = sorted({c for d in f.domains for c in taxonomy.domain_children(d)})
        stmt = stmt.where(
            Model.id.in_(select(ModelDomain.model_id).where(ModelDomain.domain.in_(slugs)))
        )
    if f.languages and skip != "language":
        codes = taxonomy.expand_languages(f.languages)
        stmt = stmt.where(
            Model.id.in_(select(ModelLanguage.model_id).where(ModelLanguage.language.in_(codes)))
        )
    if f.min_params is not None:
        stmt = stmt.where(Model.parameters >= f.min_params)
    if f.max_params is not None:
        stmt = stmt.where(Model.parameters <= f.max_params)
    if f.licenses:
        stmt = stmt.where(func.lower(Model.license).in_([x.lower() for x in f.licenses]))
    if f.source:
        stmt = stmt.where(Model.source == f.source)
    if f.fits_bytes is not None:
        stmt = stmt.where(
            Model.parameters * _bytes_per_param(f.quant) * sizes.OVERHEAD <= f.fits_bytes
        )
    if f.search and (q := fts_query(f.search)):
        stmt = stmt.where(
            Model.id.in_(select(text("rowid")).select_from(text("models_fts")).where(
                text("models_fts MATCH :q")
            ))
        ).params(q=q)
    return stmt


def _within(column, ids: Select):  # noqa: ANN001, ANN202 - SQL expressions
    """`column IN (ids)`, or no condition at all when nothing is filtered: SQLite would
    otherwise build a temporary index of every model id for each query, which costs
    more than the query itself on a large catalog."""
    return column.in_(ids) if ids.whereclause is not None else true()


def list_models(session: Session, f: ModelFilter) -> list[ModelRecord]:
    ids = _filtered(f)
    stmt = select(Model).where(_within(Model.id, ids))
    if f.sort == "relevance" and f.search and fts_query(f.search):
        rank = (
            select(text("rank")).select_from(text("models_fts"))
            .where(text("models_fts.rowid = models.id AND models_fts MATCH :q"))
            .scalar_subquery()
        )
        stmt = stmt.order_by(rank, Model.name).params(q=fts_query(f.search))
    else:
        stmt = stmt.order_by(*SORTS.get(f.sort, SORTS["name"]), Model.ref)
    if f.limit is not None:
        stmt = stmt.limit(f.limit)
    if f.offset:
        stmt = stmt.offset(f.offset)
    records = [to_record(session, m) for m in session.scalars(stmt)]
    _attach_throughput(session, records)
    return records


def count_models(session: Session, f: ModelFilter) -> int:
    return session.scalar(select(func.count()).select_from(_filtered(f).subquery())) or 0


def _attach_throughput(session: Session, records: list[ModelRecord]) -> None:
    from catalog.records import PerformanceRecord

    if not records:
        return
    by_id = {r.id: r for r in records}
    latest = (
        select(Run.model_id, Run.tokens_per_s, Run.engine_start_s, Run.hardware,
               func.max(Run.started_at).label("at"), func.count().label("n"))
        .where(Run.model_id.in_(by_id), Run.generated > 0, Run.tokens_per_s.is_not(None))
        .group_by(Run.model_id)
    )
    for model_id, tps, start, hw, at, n in session.execute(latest):
        by_id[model_id].performance = PerformanceRecord(n, tps, start, hw, at)


def domain_counts(session: Session, f: ModelFilter | None = None) -> dict[str, int]:
    """Models per domain, a parent counting its children's models once each.
    Counted in SQL: one GROUP BY for exact slugs, then one COUNT(DISTINCT) per parent
    over its subtree (a model tagged `code` and `code/sql` counts once for `code`)."""
    ids = _filtered(f or ModelFilter(), skip="domain")
    where = _within(ModelDomain.model_id, ids)
    counts = {slug: 0 for slug in taxonomy.DOMAINS}
    counts.update(session.execute(
        select(ModelDomain.domain, func.count()).where(where).group_by(ModelDomain.domain)
    ).all())
    subtrees: dict[str, list[str]] = {}
    for slug in counts:
        parts = slug.split("/")
        for i in range(1, len(parts)):
            subtrees.setdefault("/".join(parts[:i]), [])
    for parent in subtrees:
        counts.setdefault(parent, 0)
        subtrees[parent] = [s for s in counts if s == parent or s.startswith(parent + "/")]
    parents = [
        select(literal(parent), func.count(distinct(ModelDomain.model_id)))
        .where(ModelDomain.domain.in_(subtree), where)
        for parent, subtree in subtrees.items() if any(counts[s] for s in subtree)
    ]
    if parents:
        counts.update(session.execute(union_all(*parents)).all())
    return counts


def language_counts(session: Session, f: ModelFilter | None = None) -> dict[str, int]:
    ids = _filtered(f or ModelFilter(), skip="language")
    rows = session.execute(
        select(ModelLanguage.language, func.count())
        .where(_within(ModelLanguage.model_id, ids))
        .group_by(ModelLanguage.language)
        .order_by(func.count().desc(), ModelLanguage.language)
    ).all()
    return {code: n for code, n in rows}
