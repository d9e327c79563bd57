"""Listing the catalog: filters, full-text search, sorting, paging and facet counts.

At a million models nothing may read every match, so each question goes to the
structure that answers it in order (see catalog.indexing):

- a domain and/or a language, sorted by name: one `model_facets` range, read in order;
- no facet and no search, by name or downloads: `ix_models_name` / `ix_models_downloads`;
- a search by relevance (the words in the name or id first, then anywhere; within each,
  the most downloaded first): `models_fts` read in rowid order, its facet tokens narrowing
  it to a domain and language in the same full-text query;
- counts and facet counts of a domain and/or a language: `facet_counts` rows.

Anything else (several domains or languages at once, size/license/source conditions
with a search, other sorts with filters, or language groups the tables were built
without) takes the general plan: the filtered id set, then sorted. Every plan answers
the same question; tests compare them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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

from catalog import indexing, sizes, taxonomy
from catalog.evals import best_scores
from catalog.filters import ModelFilter
from catalog.listing import records_for
from catalog.records import ModelRecord
from catalog.tables import (
    FacetCount,
    Model,
    ModelDomain,
    ModelFacet,
    ModelLanguage,
    SearchTerm,
)

# How the general plan orders rows; ties go by id, as the indexes order them.
ORDER = {
    "name": (Model.name.collate("NOCASE"), Model.id),
    "params": (Model.parameters.is_(None), Model.parameters, Model.id),
    "-params": (Model.parameters.is_(None), Model.parameters.desc(), Model.id),
    "downloads": (Model.downloads.desc(), Model.id.desc()),
    "likes": (Model.likes.desc().nulls_last(), Model.id),
    "updated": (Model.updated_at.desc(), Model.id),
    "license": (Model.license, Model.name, Model.id),
}
_TEXT = "{" + " ".join(indexing.TEXT_COLUMNS) + "}"
_MODEL_ID = literal_column(f"models_fts.rowid & {indexing.ID_MASK}")


# A typed word is a prefix. When it begins at most this many words of the index
# (search_terms), it is asked for as those whole words: FTS5 reads their matches in
# rowid order and stops at the page's end, where its own prefix query first gathers
# every match of the prefix (100 ms for a common word at a million models).
PREFIX_TERMS = 16
Expand = Callable[[str], list[str] | None]


def fts_query(text_: str, expand: Expand | None = None) -> str:
    """User words to an FTS5 query: each word a prefix match, all words required.
    `expand` (see `terms_of`) names the words a lowercase ASCII prefix begins, or None
    when they are too many; FTS5's prefix query stands in then, and for other words."""
    words = re.findall(r"\w+", text_, flags=re.UNICODE)
    return " AND ".join(_prefix(w, expand) for w in words)


def _prefix(word: str, expand: Expand | None) -> str:
    # unicode61 folds ASCII by lowercasing alone; other words go to FTS5 as typed.
    terms = expand(word.lower()) if expand is not None and word.isascii() and word.isalnum() else None
    if terms is None:
        return f'"{word}"*'
    if not terms:  # no word of the index begins so: the exact word, which matches nothing
        return f'"{word.lower()}"'
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def terms_of(session: Session) -> Expand:
    """The index's words a prefix begins, each quoted for FTS5; None past PREFIX_TERMS.
    Kept for the session: a listing asks for the same words more than once."""
    known: dict[str, list[str] | None] = session.info.setdefault("search_terms", {})

    def expand(prefix: str) -> list[str] | None:
        if prefix not in known:
            after = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first key past the prefix
            found = list(session.scalars(
                select(SearchTerm.term).where(SearchTerm.term >= prefix, SearchTerm.term < after)
                .order_by(SearchTerm.term).limit(PREFIX_TERMS + 1)))
            known[prefix] = [f'"{t}"' for t in found] if len(found) <= PREFIX_TERMS else None
        return known[prefix]

    return expand


def _search(session: Session, f: ModelFilter, *, columns: str = _TEXT) -> str:
    """The words of a search, looked up in the text columns only (never the facet tokens)."""
    q = fts_query(f.search or "", terms_of(session))
    return f"{columns} : ({q})" if q else ""


@dataclass(frozen=True)
class _Facets:
    """A filter's domain and language as `facet` keys, when each is one value (or none)."""

    domain: str
    language: str

    @property
    def token(self) -> str | None:
        if (self.domain, self.language) == (indexing.ANY, indexing.ANY):
            return None
        return indexing.facet_token(self.domain, self.language)


def _facets(session: Session, f: ModelFilter, skip: str | None = None) -> _Facets | None:
    domains = [] if skip == "domain" else f.domains
    languages = [] if skip == "language" else f.languages
    if len(domains) > 1 or len(languages) > 1:
        return None
    domain = taxonomy.normalize_domain(domains[0]) if domains else indexing.ANY
    language = indexing.language_key(languages[0]) if languages else indexing.ANY
    if language.startswith(indexing.GROUP) and not indexing.groups_fresh(session.connection()):
        return None  # built with other language groups: `almanac init` rebuilds them
    return _Facets(domain, language)


def _conditions(f: ModelFilter) -> list[ColumnElement[bool]]:
    """The filters on the models row itself."""
    out = []
    if f.min_params is not None:
        out.append(Model.parameters >= f.min_params)
    if f.max_params is not None:
        out.append(Model.parameters <= f.max_params)
    if f.licenses:
        out.append(func.lower(Model.license).in_([x.lower() for x in f.licenses]))
    if f.source:
        out.append(Model.source == f.source)
    if f.adapters_of:
        out += [Model.relation == "adapter", Model.base_model.in_(f.adapters_of)]
    if f.fits_bytes is not None:
        out.append(Model.parameters * _bytes_per_param(f.quant) * sizes.OVERHEAD <= f.fits_bytes)
    return out


def _bytes_per_param(quant: str | None) -> ColumnElement[float]:
    if quant:
        return literal(sizes.BYTES_PER_PARAM[quant])
    return case(dict(sizes.BYTES_PER_PARAM), value=func.lower(Model.dtype), else_=2.0)


def _fts_match() -> Select:
    """Ids of the models matching `:q`."""
    return select(_MODEL_ID.label("id")).select_from(text("models_fts")).where(text("models_fts MATCH :q"))


def _filtered(session: Session, f: ModelFilter, *, skip: str | None = None) -> Select:
    """The general plan's filtered id set; `skip` leaves one facet (or the search) out so
    its own counts stay useful. Ids may repeat (a model in two of the wanted languages):
    use it with IN. The link tables' and the full-text index's id sets are nested inside
    one another, so SQLite reads their covering indexes and touches `models` only for
    conditions on its own columns."""
    sets: list[Select] = []
    if f.domains and skip != "domain":
        slugs = sorted({c for d in f.domains for c in taxonomy.domain_children(d)})
        sets.append(select(ModelDomain.model_id).where(ModelDomain.domain.in_(slugs)))
    if f.languages and skip != "language":
        codes = taxonomy.expand_languages(f.languages)
        sets.append(select(ModelLanguage.model_id).where(ModelLanguage.language.in_(codes)))
    q = _search(session, f) if f.search and skip != "search" else ""
    if q:
        sets.append(_fts_match())
    ids: Select | None = None
    for ids_set in reversed(sets):
        ids = ids_set if ids is None else ids_set.where(ids_set.selected_columns[0].in_(ids))
    conditions = _conditions(f)
    if ids is not None and not conditions:
        stmt = ids
    else:
        stmt = select(Model.id).where(*conditions)
        if ids is not None:
            stmt = stmt.where(Model.id.in_(ids))
    return stmt.params(q=q) if q else stmt


def _within(column: QueryableAttribute[int] | ColumnElement[int], ids: Select) -> ColumnElement[bool]:
    """`column IN (ids)`, or no condition at all when nothing is filtered: SQLite would
    otherwise build a temporary index of every model id for each query."""
    return column.in_(ids) if ids.whereclause is not None else true()


# -- listings ------------------------------------------------------------------------------


def list_models(session: Session, f: ModelFilter) -> list[ModelRecord]:
    if f.sort.startswith("score:"):
        ids, scores = _by_score(session, f, f.sort.removeprefix("score:"))
        return records_for(session, ids, scores=scores)
    return records_for(session, _page_ids(session, f))


def _page(stmt: Select, f: ModelFilter) -> Select:
    if f.limit is not None:
        stmt = stmt.limit(f.limit)
    if f.offset:
        stmt = stmt.offset(f.offset)
    return stmt


def _page_ids(session: Session, f: ModelFilter) -> list[int]:
    search = _search(session, f)
    if search and f.sort == "relevance":
        return _by_relevance(session, f)
    sort = f.sort if f.sort in ORDER else "name"
    facets = None if search else _facets(session, f)
    if facets is not None and sort == "name":
        if facets.token is None:  # no facet: the models' own name index
            stmt = select(Model.id).where(*_conditions(f)).order_by(*ORDER["name"])
        else:
            stmt = (select(ModelFacet.model_id)
                    .where(ModelFacet.domain == facets.domain, ModelFacet.language == facets.language)
                    .order_by(ModelFacet.name, ModelFacet.model_id))
            if conditions := _conditions(f):
                stmt = stmt.join(Model, Model.id == ModelFacet.model_id).where(*conditions)
        return list(session.scalars(_page(stmt, f)))
    stmt = select(Model.id).where(_within(Model.id, _filtered(session, f))).order_by(*ORDER[sort])
    return list(session.scalars(_page(stmt, f)))


def _by_relevance(session: Session, f: ModelFilter) -> list[int]:
    """The words in the name or id first, then anywhere else; within each, most downloaded
    first (the full-text rowid order). Each tier is read in order up to the page's end."""
    words = fts_query(f.search or "", terms_of(session))
    facets = _facets(session, f)
    narrow = f" AND (facets : {facets.token})" if facets is not None and facets.token else ""
    if facets is not None:
        conditions = _conditions(f)
        ids = select(Model.id).where(*conditions) if conditions else None
    else:
        ids = _filtered(session, f, skip="search")
    tiers = [f"({{ref name}} : ({words})){narrow}",
             f"(({_TEXT} : ({words})) NOT ({{ref name}} : ({words}))){narrow}"]
    need = None if f.limit is None else f.offset + f.limit
    found: list[int] = []
    for q in tiers:
        stmt = select(_MODEL_ID).select_from(text("models_fts")).where(text("models_fts MATCH :q"))
        if ids is not None and ids.whereclause is not None:
            stmt = stmt.where(_MODEL_ID.in_(ids))
        stmt = stmt.order_by(literal_column("models_fts.rowid")).params(q=q)
        if need is not None:
            stmt = stmt.limit(need - len(found))
        found += session.scalars(stmt)
        if need is not None and len(found) >= need:
            break
    return found[f.offset:need]


def _by_score(session: Session, f: ModelFilter, job: str) -> tuple[list[int], dict[int, float]]:
    """Best measured score on `job` first (any metric; a model's own, an adapter's its
    own: catalog.evals.best_scores); models never measured on it after, by name."""
    scores = best_scores(job)
    stmt = (select(Model.id, scores.c.score).outerjoin(scores, scores.c.model_id == Model.id)
            .where(_within(Model.id, _filtered(session, f)))
            .order_by(scores.c.score.is_(None), scores.c.score.desc(), *ORDER["name"]))
    rows = session.execute(_page(stmt, f)).all()
    return [r[0] for r in rows], {r[0]: r[1] for r in rows if r[1] is not None}


# -- counts -------------------------------------------------------------------------------


def _counted(session: Session, facets: _Facets) -> int:
    return session.scalar(select(FacetCount.n).where(
        FacetCount.domain == facets.domain, FacetCount.language == facets.language)) or 0


def count_models(session: Session, f: ModelFilter) -> int:
    search = _search(session, f)
    facets = _facets(session, f)
    if facets is not None and not _conditions(f):
        if not search:
            return _counted(session, facets)
        narrow = f" AND (facets : {facets.token})" if facets.token else ""
        return session.scalar(text("SELECT count(*) FROM models_fts WHERE models_fts MATCH :q"),
                              {"q": f"({search}){narrow}"}) or 0
    # Through `models`: the filtered ids may repeat.
    return session.scalar(
        select(func.count()).select_from(Model).where(_within(Model.id, _filtered(session, f)))
    ) or 0


def domain_counts(session: Session, f: ModelFilter | None = None) -> dict[str, int]:
    """Models per domain, a parent counting its children's models once each."""
    f = f or ModelFilter()
    counts = {slug: 0 for slug in taxonomy.DOMAINS}
    facets = _facets(session, f, skip="domain")
    if facets is not None and not f.search and not _conditions(f):
        counts.update(session.execute(select(FacetCount.domain, FacetCount.n).where(
            FacetCount.language == facets.language, FacetCount.domain != indexing.ANY)).all())
        return counts
    return _domain_counts_general(session, f, counts)


def _domain_counts_general(session: Session, f: ModelFilter, counts: dict[str, int]) -> dict[str, int]:
    """Counted in SQL in one statement: a GROUP BY for exact slugs, and a COUNT(DISTINCT)
    per parent over its subtree. The filtered (domain, model) pairs are a CTE, which SQLite
    materializes once for all the parts."""
    ids = _filtered(session, f, skip="domain")
    if ids.whereclause is None:
        pairs: FromClause = ModelDomain.__table__
    else:
        pairs = select(ModelDomain.domain, ModelDomain.model_id).where(
            ModelDomain.model_id.in_(ids)).cte("pairs")
    known = set(counts)
    rows = session.execute(union_all(
        select(pairs.c.domain, func.count()).group_by(pairs.c.domain),
        *_parent_counts(pairs, known),
    )).all()
    counts.update(rows)
    # A slug the taxonomy does not know still counts towards its ancestors.
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
    """Models per language code, most first."""
    f = f or ModelFilter()
    facets = _facets(session, f, skip="language")
    if facets is not None and not f.search and not _conditions(f):
        rows = session.execute(
            select(FacetCount.language, FacetCount.n)
            .where(FacetCount.domain == facets.domain, FacetCount.language != indexing.ANY,
                   FacetCount.language.not_like(indexing.GROUP + "%"))
            .order_by(FacetCount.n.desc(), FacetCount.language)).all()
        return {code: n for code, n in rows}
    ids = _filtered(session, f, skip="language")
    rows = session.execute(
        select(ModelLanguage.language, func.count())
        .where(_within(ModelLanguage.model_id, ids))
        .group_by(ModelLanguage.language)
        .order_by(func.count().desc(), ModelLanguage.language)
    ).all()
    return {code: n for code, n in rows}
