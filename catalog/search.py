"""Listing the catalog: filters, full-text search, sorting, paging and facet counts."""

from __future__ import annotations

import re

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    case,
    distinct,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.orm import QueryableAttribute, Session

from catalog import sizes, taxonomy
from catalog.filters import ModelFilter
from catalog.models import performances, to_record
from catalog.records import ModelRecord
from catalog.tables import Model, ModelDomain, ModelLanguage

# How each sort orders rows ("relevance" ranks full-text matches: see list_models).
ORDER = {
    "name": (Model.name.collate("NOCASE"),),
    "params": (Model.parameters.is_(None), Model.parameters),
    "-params": (Model.parameters.is_(None), Model.parameters.desc()),
    "downloads": (Model.downloads.desc().nulls_last(),),
    "likes": (Model.likes.desc().nulls_last(),),
    "updated": (Model.updated_at.desc(),),
    "license": (Model.license, Model.name),
}


def fts_query(text_: str) -> str:
    """User words to an FTS5 query: each word a prefix match, all words required."""
    words = re.findall(r"\w+", text_, flags=re.UNICODE)
    return " ".join(f'"{w}"*' for w in words)


def _bytes_per_param(quant: str | None) -> ColumnElement[float]:
    if quant:
        return literal(sizes.BYTES_PER_PARAM[quant])
    whens = {k: v for k, v in sizes.BYTES_PER_PARAM.items()}
    return case(whens, value=func.lower(Model.dtype), else_=2.0)


def _fts_match(*, ranked: bool = False) -> Select:
    """Rowids of the models matching `:q`, with their bm25 rank (lower is better) if asked:
    ranking every match costs more than matching."""
    columns = [literal_column("rowid").label("id")]
    if ranked:
        columns.append(literal_column("rank").label("rank"))
    return select(*columns).select_from(text("models_fts")).where(text("models_fts MATCH :q"))


def _filtered(f: ModelFilter, *, skip: str | None = None) -> Select:
    """The filtered id set; `skip` leaves one facet (or the search) out so its own counts
    stay useful. Ids may repeat (a model in two of the wanted languages): use it with IN.

    The id sets of the link tables and the full-text index are nested inside one
    another (`domain ids WHERE id IN (language ids WHERE id IN (matches))`) instead of
    each being tested against `models`: SQLite then reads only their covering indexes,
    and touches `models` only for conditions on its own columns. At 100,000 models
    that is three times faster for a domain + language listing."""
    sets: list[Select] = []
    if f.domains and skip != "domain":
        slugs = sorted({c for d in f.domains for c in taxonomy.domain_children(d)})
        sets.append(select(ModelDomain.model_id).where(ModelDomain.domain.in_(slugs)))
    if f.languages and skip != "language":
        codes = taxonomy.expand_languages(f.languages)
        sets.append(select(ModelLanguage.model_id).where(ModelLanguage.language.in_(codes)))
    q = fts_query(f.search) if f.search and skip != "search" else ""
    if q:
        sets.append(_fts_match())
    ids: Select | None = None
    for ids_set in reversed(sets):
        ids = ids_set if ids is None else ids_set.where(ids_set.selected_columns[0].in_(ids))
    conditions = []
    if f.min_params is not None:
        conditions.append(Model.parameters >= f.min_params)
    if f.max_params is not None:
        conditions.append(Model.parameters <= f.max_params)
    if f.licenses:
        conditions.append(func.lower(Model.license).in_([x.lower() for x in f.licenses]))
    if f.source:
        conditions.append(Model.source == f.source)
    if f.fits_bytes is not None:
        conditions.append(
            Model.parameters * _bytes_per_param(f.quant) * sizes.OVERHEAD <= f.fits_bytes
        )
    if ids is not None and not conditions:
        stmt = ids
    else:
        stmt = select(Model.id).where(*conditions)
        if ids is not None:
            stmt = stmt.where(Model.id.in_(ids))
    return stmt.params(q=q) if q else stmt


def _within(column: QueryableAttribute[int], ids: Select) -> ColumnElement[bool]:
    """`column IN (ids)`, or no condition at all when nothing is filtered: SQLite would
    otherwise build a temporary index of every model id for each query, which costs
    more than the query itself on a large catalog."""
    return column.in_(ids) if ids.whereclause is not None else true()


def list_models(session: Session, f: ModelFilter) -> list[ModelRecord]:
    if f.sort == "relevance" and f.search and (q := fts_query(f.search)):
        # Join the matches with their rank once: a rank subquery per listed row would
        # run the full-text match again for every match (seconds at 100,000 models).
        matches = _fts_match(ranked=True).subquery()
        stmt = (select(Model).join(matches, matches.c.id == Model.id)
                .where(_within(Model.id, _filtered(f, skip="search")))
                .order_by(matches.c.rank, Model.name).params(q=q))
    else:
        stmt = select(Model).where(_within(Model.id, _filtered(f)))
        stmt = stmt.order_by(*ORDER.get(f.sort, ORDER["name"]), Model.ref)
    if f.limit is not None:
        stmt = stmt.limit(f.limit)
    if f.offset:
        stmt = stmt.offset(f.offset)
    records = [to_record(session, m) for m in session.scalars(stmt)]
    measured = performances(session, [r.id for r in records]) if records else {}
    for record in records:
        record.performance = measured.get(record.id)
    return records


def count_models(session: Session, f: ModelFilter) -> int:
    # Through `models`: the filtered ids may repeat.
    return session.scalar(
        select(func.count()).select_from(Model).where(_within(Model.id, _filtered(f)))
    ) or 0


def domain_counts(session: Session, f: ModelFilter | None = None) -> dict[str, int]:
    """Models per domain, a parent counting its children's models once each.
    Counted in SQL in one statement: a GROUP BY for exact slugs, and a COUNT(DISTINCT)
    per parent over its subtree (a model tagged `code` and `code/sql` counts once for
    `code`). With a filter, the filtered (domain, model) pairs are a CTE, which SQLite
    materializes once for all the parts instead of re-running the filter per part."""
    ids = _filtered(f or ModelFilter(), skip="domain")
    if ids.whereclause is None:
        pairs = ModelDomain.__table__  # the index (domain, model_id) answers every part
    else:
        pairs = select(ModelDomain.domain, ModelDomain.model_id).where(
            ModelDomain.model_id.in_(ids)).cte("pairs")
    counts = {slug: 0 for slug in taxonomy.DOMAINS}
    known = set(counts)
    rows = session.execute(union_all(
        select(pairs.c.domain, func.count()).group_by(pairs.c.domain),
        *_parent_counts(pairs, known),
    )).all()
    counts.update(rows)
    # A slug the taxonomy does not know (written by hand, or by an older Almanac) still
    # counts towards its ancestors.
    if set(counts) - known:
        counts.update(session.execute(union_all(*_parent_counts(pairs, set(counts)))).all())
    return counts


def _parent_counts(pairs: FromClause, slugs: set[str]) -> list[Select]:
    parents = {"/".join(s.split("/")[:i]) for s in slugs for i in range(1, s.count("/") + 1)}
    return [
        select(literal(parent), func.count(distinct(pairs.c.model_id))).where(
            pairs.c.domain.in_(sorted(s for s in slugs | {parent}
                                      if s == parent or s.startswith(parent + "/"))))
        for parent in sorted(parents)
    ]


def language_counts(session: Session, f: ModelFilter | None = None) -> dict[str, int]:
    ids = _filtered(f or ModelFilter(), skip="language")
    rows = session.execute(
        select(ModelLanguage.language, func.count())
        .where(_within(ModelLanguage.model_id, ids))
        .group_by(ModelLanguage.language)
        .order_by(func.count().desc(), ModelLanguage.language)
    ).all()
    return {code: n for code, n in rows}
