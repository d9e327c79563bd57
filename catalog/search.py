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

The plans are SQL over a DB-API connection, given a sqlite3 connection or an ORM session
(catalog.plain.reads): `almanac models list` reads the file with sqlite3 alone, the TUI
and the server through their sessions, by the same code.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from catalog import indexing, sizes, taxonomy
from catalog.filters import ModelFilter
from catalog.listing import records_for
from catalog.plain import reads
from catalog.records import ModelRecord

__all__ = ["ModelFilter", "count_models", "domain_counts", "fts_query", "language_counts",
           "list_models"]

# How the general plan orders rows; ties go by id, as the indexes order them.
ORDER = {
    "name": "models.name COLLATE NOCASE, models.id",
    "params": "models.parameters IS NULL, models.parameters, models.id",
    "-params": "models.parameters IS NULL, models.parameters DESC, models.id",
    "downloads": "models.downloads DESC, models.id DESC",
    "likes": "models.likes DESC NULLS LAST, models.id",
    "updated": "models.updated_at DESC, models.id",
    "license": "models.license, models.name, models.id",
}
_TEXT = "{" + " ".join(indexing.TEXT_COLUMNS) + "}"
_MODEL_ID = f"(models_fts.rowid & {indexing.ID_MASK})"


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


class _Query:
    """One listing's reads: the connection, the bound values of the statement being
    built (`bind` names each one), and the index's words each typed prefix begins, kept
    for the listing (it asks for the same words more than once)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.params: dict[str, Any] = {}
        self._terms: dict[str, list[str] | None] = {}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def binds(self, values: list[Any]) -> str:
        return "(" + ", ".join(self.bind(v) for v in values) + ")"

    def rows(self, sql: str) -> list[Any]:
        params, self.params = self.params, {}
        return self.conn.execute(sql, params).fetchall()

    def column(self, sql: str) -> list[Any]:
        return [row[0] for row in self.rows(sql)]

    def terms_of(self, prefix: str) -> list[str] | None:
        """The index's words `prefix` begins, each quoted for FTS5; None past PREFIX_TERMS."""
        if prefix not in self._terms:
            after = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first key past the prefix
            found = [t for (t,) in self.conn.execute(
                "SELECT term FROM search_terms WHERE term >= ? AND term < ? ORDER BY term LIMIT ?",
                (prefix, after, PREFIX_TERMS + 1))]
            self._terms[prefix] = [f'"{t}"' for t in found] if len(found) <= PREFIX_TERMS else None
        return self._terms[prefix]

    def search(self, f: ModelFilter) -> str:
        """The words of a search, looked up in the text columns only (never the facet tokens)."""
        q = fts_query(f.search or "", self.terms_of)
        return f"{_TEXT} : ({q})" if q else ""


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


def _facets(q: _Query, f: ModelFilter, skip: str | None = None) -> _Facets | None:
    domains = [] if skip == "domain" else f.domains
    languages = [] if skip == "language" else f.languages
    if len(domains) > 1 or len(languages) > 1:
        return None
    domain = taxonomy.normalize_domain(domains[0]) if domains else indexing.ANY
    language = indexing.language_key(languages[0]) if languages else indexing.ANY
    if language.startswith(indexing.GROUP) and not indexing.groups_fresh(q.conn):
        return None  # built with other language groups: `almanac init` rebuilds them
    return _Facets(domain, language)


def _conditions(q: _Query, f: ModelFilter) -> list[str]:
    """The filters on the models row itself."""
    out = []
    if f.min_params is not None:
        out.append(f"models.parameters >= {q.bind(f.min_params)}")
    if f.max_params is not None:
        out.append(f"models.parameters <= {q.bind(f.max_params)}")
    if f.licenses:
        out.append(f"lower(models.license) IN {q.binds([x.lower() for x in f.licenses])}")
    if f.source:
        out.append(f"models.source = {q.bind(f.source)}")
    if f.adapters_of:
        out += ["models.relation = 'adapter'", f"models.base_model IN {q.binds(f.adapters_of)}"]
    if f.fits_bytes is not None:
        out.append(f"models.parameters * {_bytes_per_param(q, f.quant)} * "
                   f"{q.bind(sizes.OVERHEAD)} <= {q.bind(f.fits_bytes)}")
    return out


def _conditioned(q: _Query, f: ModelFilter) -> bool:
    """Whether the filter has conditions on the models row (bound nowhere)."""
    return bool(_conditions(_Query(q.conn), f))


def _bytes_per_param(q: _Query, quant: str | None) -> str:
    if quant:
        return q.bind(sizes.BYTES_PER_PARAM[quant])
    cases = " ".join(f"WHEN {q.bind(k)} THEN {q.bind(v)}" for k, v in sizes.BYTES_PER_PARAM.items())
    return f"(CASE lower(models.dtype) {cases} ELSE 2.0 END)"


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _filtered(q: _Query, f: ModelFilter, *, skip: str | None = None) -> str | None:
    """The general plan's filtered id set (None: every model); `skip` leaves one facet
    (or the search) out so its own counts stay useful. Ids may repeat (a model in two of
    the wanted languages): use it with IN. The link tables' and the full-text index's id
    sets are nested inside one another, so SQLite reads their covering indexes and
    touches `models` only for conditions on its own columns."""
    sets: list[tuple[str, str]] = []  # (a select of ids with its WHERE, its id column)
    if f.domains and skip != "domain":
        slugs = sorted({c for d in f.domains for c in taxonomy.domain_children(d)})
        sets.append((f"SELECT model_id FROM model_domains WHERE domain IN {q.binds(slugs)}",
                     "model_id"))
    if f.languages and skip != "language":
        codes = taxonomy.expand_languages(f.languages)
        sets.append((f"SELECT model_id FROM model_languages WHERE language IN {q.binds(codes)}",
                     "model_id"))
    search = q.search(f) if f.search and skip != "search" else ""
    if search:
        sets.append((f"SELECT {_MODEL_ID} AS id FROM models_fts WHERE models_fts MATCH "
                     f"{q.bind(search)}", _MODEL_ID))
    ids: str | None = None
    for ids_set, column in reversed(sets):
        ids = ids_set if ids is None else f"{ids_set} AND {column} IN ({ids})"
    conditions = _conditions(q, f)
    if not conditions:
        return ids
    if ids is not None:
        conditions.append(f"models.id IN ({ids})")
    return "SELECT models.id FROM models" + _where(conditions)


def _within(column: str, ids: str | None) -> str:
    """`column IN (ids)`, or no condition at all when nothing is filtered: SQLite would
    otherwise build a temporary index of every model id for each query."""
    return f"{column} IN ({ids})" if ids is not None else "1"


def _page(q: _Query, f: ModelFilter) -> str:
    if f.limit is None and not f.offset:
        return ""
    limit = q.bind(f.limit if f.limit is not None else -1)
    return f" LIMIT {limit} OFFSET {q.bind(f.offset)}" if f.offset else f" LIMIT {limit}"


# -- listings ------------------------------------------------------------------------------


@reads
def list_models(conn: sqlite3.Connection, f: ModelFilter) -> list[ModelRecord]:
    q = _Query(conn)
    if f.sort.startswith("score:"):
        ids, scores = _by_score(q, f, f.sort.removeprefix("score:"))
        return records_for(conn, ids, scores=scores)
    return records_for(conn, _page_ids(q, f))


def _page_ids(q: _Query, f: ModelFilter) -> list[int]:
    search = q.search(f)
    if search and f.sort == "relevance":
        return _by_relevance(q, f)
    sort = f.sort if f.sort in ORDER else "name"
    facets = None if search else _facets(q, f)
    if facets is not None and sort == "name":
        if facets.token is None:  # no facet: the models' own name index
            sql = f"SELECT models.id FROM models{_where(_conditions(q, f))} ORDER BY {ORDER['name']}"
        else:
            where = [f"model_facets.domain = {q.bind(facets.domain)}",
                     f"model_facets.language = {q.bind(facets.language)}"]
            join = ""
            if conditions := _conditions(q, f):
                join = " JOIN models ON models.id = model_facets.model_id"
                where += conditions
            sql = (f"SELECT model_facets.model_id FROM model_facets{join}{_where(where)} "
                   "ORDER BY model_facets.name, model_facets.model_id")
        return q.column(sql + _page(q, f))
    within = _within("models.id", _filtered(q, f))
    return q.column(f"SELECT models.id FROM models WHERE {within} ORDER BY {ORDER[sort]}"
                    + _page(q, f))


def _by_relevance(q: _Query, f: ModelFilter) -> list[int]:
    """The words in the name or id first, then anywhere else; within each, most downloaded
    first (the full-text rowid order). Each tier is read in order up to the page's end."""
    words = fts_query(f.search or "", q.terms_of)
    facets = _facets(q, f)
    narrow = f" AND (facets : {facets.token})" if facets is not None and facets.token else ""
    tiers = [f"({{ref name}} : ({words})){narrow}",
             f"(({_TEXT} : ({words})) NOT ({{ref name}} : ({words}))){narrow}"]
    need = None if f.limit is None else f.offset + f.limit
    found: list[int] = []
    for match in tiers:
        if facets is not None:
            conditions = _conditions(q, f)
            ids = "SELECT models.id FROM models" + _where(conditions) if conditions else None
        else:
            ids = _filtered(q, f, skip="search")
        sql = f"SELECT {_MODEL_ID} FROM models_fts WHERE models_fts MATCH {q.bind(match)}"
        if ids is not None:
            sql += f" AND {_MODEL_ID} IN ({ids})"
        sql += " ORDER BY models_fts.rowid"
        if need is not None:
            sql += f" LIMIT {q.bind(need - len(found))}"
        found += q.column(sql)
        if need is not None and len(found) >= need:
            break
    return found[f.offset:need]


def _by_score(q: _Query, f: ModelFilter, job: str) -> tuple[list[int], dict[int, float]]:
    """Best measured score on `job` first (any metric), models never measured on it after,
    by name. A score is a model's own when measured without an adapter; one measured with
    an adapter the catalog holds (by reference, repo id or directory) is that adapter's
    (catalog.evals; ix_measured_evals_task)."""
    task = q.bind(job)
    scores = f"""(SELECT model_id, max(value) AS score FROM (
        SELECT model_id, value FROM measured_evals WHERE task = {task} AND adapter = ''
        UNION ALL
        SELECT adapter.id, measured_evals.value FROM measured_evals
        JOIN models AS adapter ON adapter.ref = measured_evals.adapter
          OR adapter.repo_id = measured_evals.adapter OR adapter.local_path = measured_evals.adapter
        WHERE measured_evals.task = {task} AND measured_evals.adapter != ''
    ) GROUP BY model_id) AS scores"""
    within = _within("models.id", _filtered(q, f))
    rows = q.rows(f"SELECT models.id, scores.score FROM models LEFT OUTER JOIN {scores} "
                  f"ON scores.model_id = models.id WHERE {within} "
                  f"ORDER BY scores.score IS NULL, scores.score DESC, {ORDER['name']}" + _page(q, f))
    return [r[0] for r in rows], {r[0]: r[1] for r in rows if r[1] is not None}


# -- counts -------------------------------------------------------------------------------


@reads
def count_models(conn: sqlite3.Connection, f: ModelFilter) -> int:
    q = _Query(conn)
    search = q.search(f)
    facets = _facets(q, f)
    if facets is not None and not _conditioned(q, f):
        if not search:
            found = q.column(f"SELECT n FROM facet_counts WHERE domain = {q.bind(facets.domain)} "
                             f"AND language = {q.bind(facets.language)}")
            return found[0] if found else 0
        narrow = f" AND (facets : {facets.token})" if facets.token else ""
        return q.column("SELECT count(*) FROM models_fts WHERE models_fts MATCH "
                        f"{q.bind(f'({search}){narrow}')}")[0]
    # Through `models`: the filtered ids may repeat.
    return q.column(f"SELECT count(*) FROM models WHERE {_within('models.id', _filtered(q, f))}")[0]


@reads
def domain_counts(conn: sqlite3.Connection, f: ModelFilter | None = None) -> dict[str, int]:
    """Models per domain, a parent counting its children's models once each."""
    f = f or ModelFilter()
    q = _Query(conn)
    counts = {slug: 0 for slug in taxonomy.DOMAINS}
    facets = _facets(q, f, skip="domain")
    if facets is not None and not f.search and not _conditioned(q, f):
        counts.update(q.rows(f"SELECT domain, n FROM facet_counts WHERE language = "
                             f"{q.bind(facets.language)} AND domain != {q.bind(indexing.ANY)}"))
        return counts
    return _domain_counts_general(q, f, counts)


def _domain_counts_general(q: _Query, f: ModelFilter, counts: dict[str, int]) -> dict[str, int]:
    """Counted in SQL in one statement: a GROUP BY for exact slugs, and a COUNT(DISTINCT)
    per parent over its subtree. The filtered (domain, model) pairs are a CTE, which SQLite
    materializes once for all the parts."""
    def pairs() -> tuple[str, str]:  # (a WITH clause, the pairs' table), bound anew
        ids = _filtered(q, f, skip="domain")
        if ids is None:
            return "", "model_domains"
        return (f"WITH pairs AS (SELECT domain, model_id FROM model_domains "
                f"WHERE model_id IN ({ids})) ", "pairs")

    known = set(counts)
    with_, table = pairs()
    counts.update(q.rows(with_ + " UNION ALL ".join([
        f"SELECT domain, count(*) FROM {table} GROUP BY domain",
        *_parent_counts(q, table, known)])))
    # A slug the taxonomy does not know still counts towards its ancestors.
    if set(counts) - known:
        with_, table = pairs()
        if parts := _parent_counts(q, table, set(counts)):
            counts.update(q.rows(with_ + " UNION ALL ".join(parts)))
    return counts


def _parent_counts(q: _Query, pairs: str, slugs: set[str]) -> list[str]:
    parents = {"/".join(s.split("/")[:i]) for s in slugs for i in range(1, s.count("/") + 1)}
    return [
        f"SELECT {q.bind(parent)}, count(DISTINCT model_id) FROM {pairs} WHERE domain IN "
        + q.binds(sorted(s for s in slugs | {parent} if s == parent or s.startswith(parent + "/")))
        for parent in sorted(parents)
    ]


@reads
def language_counts(conn: sqlite3.Connection, f: ModelFilter | None = None) -> dict[str, int]:
    """Models per language code, most first."""
    f = f or ModelFilter()
    q = _Query(conn)
    facets = _facets(q, f, skip="language")
    if facets is not None and not f.search and not _conditioned(q, f):
        rows = q.rows(f"SELECT language, n FROM facet_counts WHERE domain = {q.bind(facets.domain)} "
                      f"AND language != {q.bind(indexing.ANY)} "
                      f"AND language NOT LIKE {q.bind(indexing.GROUP + '%')} "
                      "ORDER BY n DESC, language")
        return {code: n for code, n in rows}
    within = _within("model_languages.model_id", _filtered(q, f, skip="language"))
    rows = q.rows(f"SELECT language, count(*) FROM model_languages WHERE {within} "
                  "GROUP BY language ORDER BY count(*) DESC, language")
    return {code: n for code, n in rows}
