"""What the catalog derives from each model for fast reads, and the one code that keeps it.

Four structures, all rebuilt from `models` and its link tables by `rebuild`, and kept in
step by `apply` in the same transaction as every write (catalog.models for one model,
catalog.importer for a batch):

- `models_fts`, the full-text index. Its rowid is the model's *text key*: a popularity
  bucket (most downloaded first) above the model id, so a search read in rowid order is
  already in the order relevance ranks by and stops at the page's end instead of ranking
  every match. Its `facets` column holds one token per (domain, language) pair the model
  is listed under, so a search within facets is one full-text query.
- `model_facets`: (domain, language, name, model id) rows, a facet listing sorted by name
  being one index range (see catalog.tables.ModelFacet).
- `facet_counts`: how many models each (domain, language) pair lists, for counts and
  facets without counting.
- `search_terms`: the words `models_fts` holds in its text columns, as FTS5 tokenized
  them, so that a typed prefix can be looked up as the words it begins (catalog.search).
  Words come from FTS5 itself (a scratch full-text table with the same tokenizer), never
  from a tokenizer of ours; a word no model holds any longer may stay.

A domain key is a slug or one of its ancestors (a `code/sql` model is listed under `code`
too), a language key a code or `group:NAME` for each group holding it, and `*` means any.
Language groups come from catalog.taxonomy; the ones the tables were built with are kept
in `catalog_meta` so a reader can tell when they are stale.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from catalog import taxonomy

if TYPE_CHECKING:  # the writers' connections; a listing reads without SQLAlchemy
    import sqlite3

    from sqlalchemy import Connection

ANY = "*"
GROUP = "group:"
ID_BITS = 32
ID_MASK = (1 << ID_BITS) - 1
BUCKETS = 1024
# The columns users' words are looked up in (the `facets` column only ever holds tokens).
TEXT_COLUMNS = ("ref", "name", "description", "tags", "card")
GROUPS_KEY = "language_groups"


@dataclass(frozen=True)
class Indexed:
    """What the derived structures hold of one model. `text_key` is where its models_fts
    row is now (None for a model not indexed yet)."""

    id: int
    ref: str
    name: str
    description: str
    card: str
    downloads: int | None
    tags: tuple[str, ...]
    domains: tuple[str, ...]
    languages: tuple[str, ...]
    text_key: int | None = None

    def same_text(self, other: Indexed) -> bool:
        return (self.ref, self.name, self.description, self.card, self.tags, self.domains,
                self.languages) == (other.ref, other.name, other.description, other.card,
                                    other.tags, other.domains, other.languages)


def text_key(model_id: int, downloads: int | None) -> int:
    """Popularity bucket (24 per doubling of downloads; none last) above the id."""
    bucket = BUCKETS - 1
    if downloads:
        bucket -= min(BUCKETS - 2, round(math.log2(downloads + 1) * 24))
    return (bucket << ID_BITS) | model_id


def model_id_of(key: int) -> int:
    return key & ID_MASK


def domain_keys(domains: Iterable[str]) -> list[str]:
    """The model's slugs and all their ancestors, then ANY."""
    keys: set[str] = set()
    for slug in domains:
        parts = slug.split("/")
        keys.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return [*sorted(keys), ANY]


def language_keys(languages: Iterable[str], groups: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """The model's codes, each group holding one of them, then ANY."""
    groups = taxonomy.LANGUAGE_GROUPS if groups is None else groups
    codes = set(languages)
    keys = sorted(codes) + sorted(GROUP + g for g, members in groups.items() if codes & set(members))
    return [*keys, ANY]


def language_key(code_or_group: str) -> str:
    """The key a typed language filter reads: a group by its group key, a code as itself."""
    key = code_or_group.strip().lower()
    if key in taxonomy.LANGUAGE_GROUPS:
        return GROUP + key
    return taxonomy.normalize_language(key)


def pairs(m: Indexed) -> tuple[tuple[str, str], ...]:
    """Every (domain key, language key) pair the model counts under, (ANY, ANY) included."""
    return _pairs(m.domains, m.languages)


@lru_cache(maxsize=4096)  # models share a few thousand domain/language combinations at most
def _pairs(domains: tuple[str, ...], languages: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((d, lang) for d in domain_keys(domains) for lang in language_keys(languages))


@lru_cache(maxsize=4096)
def _tokens(domains: tuple[str, ...], languages: tuple[str, ...]) -> str:
    return " ".join(facet_token(d, lang) for d, lang in _pairs(domains, languages))


def facet_token(domain: str, language: str) -> str:
    """One short full-text token per pair (a 64-bit digest in base 32, which the
    tokenizer keeps whole): a million models hold about seven each."""
    digest = hashlib.blake2b(f"{domain}\x00{language}".encode(), digest_size=8).digest()
    return "f" + base64.b32encode(digest).decode().rstrip("=").lower()


def _text_row(m: Indexed, key: int) -> tuple[object, ...]:
    return (key, m.ref.replace("/", " ") + " " + m.ref, m.name, m.description, " ".join(m.tags),
            m.card, _tokens(m.domains, m.languages))


def _facet_rows(m: Indexed) -> set[tuple[str, str, str, int]]:
    return {(d, lang, m.name, m.id) for d, lang in pairs(m) if (d, lang) != (ANY, ANY)}


_FTS_INSERT = ("INSERT INTO models_fts (rowid, ref, name, description, tags, card, facets) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)")
_COUNT_UPSERT = ("INSERT INTO facet_counts (domain, language, n) VALUES (?, ?, ?) "
                 "ON CONFLICT (domain, language) DO UPDATE SET n = n + excluded.n")


def apply(conn: Connection, old: Sequence[Indexed], new: Sequence[Indexed]) -> None:
    """Move the derived structures from `old` (models as they were; absent when added) to
    `new` (as they are; absent when removed). Models whose indexed facts did not change
    cost nothing."""
    before = {m.id: m for m in old}
    after = {m.id: m for m in new}
    fts_delete: list[tuple[int]] = []
    fts_insert: list[tuple[object, ...]] = []
    keys: list[tuple[int, int]] = []
    facet_delete: set[tuple[str, str, str, int]] = set()
    facet_insert: set[tuple[str, str, str, int]] = set()
    counts: Counter[tuple[str, str]] = Counter()
    for model_id in before.keys() | after.keys():
        was, now = before.get(model_id), after.get(model_id)
        key = text_key(model_id, now.downloads) if now is not None else None
        moved = was is None or now is None or was.text_key != key or not was.same_text(now)
        if moved and was is not None and was.text_key is not None:
            fts_delete.append((was.text_key,))
        if moved and now is not None and key is not None:
            fts_insert.append(_text_row(now, key))
            keys.append((key, model_id))
        rows_was = _facet_rows(was) if was is not None else set()
        rows_now = _facet_rows(now) if now is not None else set()
        facet_delete |= rows_was - rows_now
        facet_insert |= rows_now - rows_was
        counts.subtract(pairs(was) if was is not None else [])
        counts.update(pairs(now) if now is not None else [])
    if fts_delete:
        conn.exec_driver_sql("DELETE FROM models_fts WHERE rowid = ?", fts_delete)
    if fts_insert:
        conn.exec_driver_sql(_FTS_INSERT, fts_insert)
        conn.exec_driver_sql("UPDATE models SET text_key = ? WHERE id = ?", keys)
        _add_terms(conn, fts_insert)
    if facet_delete:
        conn.exec_driver_sql("DELETE FROM model_facets WHERE domain = ? AND language = ? "
                             "AND name = ? AND model_id = ?", sorted(facet_delete))
    if facet_insert:
        conn.exec_driver_sql("INSERT INTO model_facets (domain, language, name, model_id) "
                             "VALUES (?, ?, ?, ?)", sorted(facet_insert))
    changed = sorted((d, lang, n) for (d, lang), n in counts.items() if n)
    if changed:
        conn.exec_driver_sql(_COUNT_UPSERT, changed)
        conn.exec_driver_sql("DELETE FROM facet_counts WHERE domain = ? AND language = ? AND n <= 0",
                             [(d, lang) for d, lang, _ in changed])


_ALL = """
SELECT m.id, m.ref, m.name, m.description, m.card, m.downloads,
       (SELECT json_group_array(tag) FROM model_tags WHERE model_id = m.id),
       (SELECT json_group_array(domain) FROM model_domains WHERE model_id = m.id),
       (SELECT json_group_array(language) FROM model_languages WHERE model_id = m.id)
FROM models m WHERE m.id > ? ORDER BY m.id LIMIT ?
"""


def indexed_rows(conn: Connection, *, after: int = 0, batch: int = 20_000) -> Iterable[list[Indexed]]:
    """Every model as `apply` reads it, in batches by id (text_key left unset)."""
    while True:
        rows = conn.exec_driver_sql(_ALL, (after, batch)).all()
        if not rows:
            return
        yield [Indexed(id=r[0], ref=r[1], name=r[2], description=r[3] or "", card=r[4] or "",
                       downloads=r[5], tags=tuple(sorted(json.loads(r[6]))),
                       domains=tuple(sorted(json.loads(r[7]))),
                       languages=tuple(sorted(json.loads(r[8])))) for r in rows]
        after = rows[-1][0]


def rebuild(conn: Connection) -> int:
    """Derive all three structures again from the models; returns how many were indexed.
    Facet rows are staged in a temporary table and inserted in key order: millions of
    rows appended in order take seconds where the same rows at random take many minutes."""
    for table in ("models_fts", "model_facets", "facet_counts"):
        conn.exec_driver_sql(f"DELETE FROM {table}")
    conn.exec_driver_sql("CREATE TEMP TABLE facet_stage (domain TEXT, language TEXT, name TEXT, model_id INTEGER)")
    counts: Counter[tuple[str, str]] = Counter()
    total = 0
    try:
        for batch in indexed_rows(conn):
            rows = [(key, *_text_row(m, key)[1:]) for m in batch for key in [text_key(m.id, m.downloads)]]
            conn.exec_driver_sql(_FTS_INSERT, rows)
            conn.exec_driver_sql("UPDATE models SET text_key = ? WHERE id = ?",
                                 [(r[0], m.id) for r, m in zip(rows, batch, strict=True)])
            if staged := [row for m in batch for row in _facet_rows(m)]:
                conn.exec_driver_sql("INSERT INTO facet_stage VALUES (?, ?, ?, ?)", staged)
            for m in batch:
                counts.update(pairs(m))
            total += len(batch)
        conn.exec_driver_sql("INSERT INTO model_facets (domain, language, name, model_id) SELECT domain, "
                             "language, name, model_id FROM facet_stage ORDER BY domain, language, "
                             "name COLLATE NOCASE, model_id")
    finally:
        conn.exec_driver_sql("DROP TABLE temp.facet_stage")
    if counts:
        conn.exec_driver_sql(_COUNT_UPSERT, sorted((d, lang, n) for (d, lang), n in counts.items()))
    if _has_terms(conn):  # a migration before the table's own rebuilds without it
        rebuild_terms(conn)
    mark_fresh(conn)
    return total


# -- the words of the full-text index ----------------------------------------------------


def _has_terms(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'search_terms'").first() is not None


def rebuild_terms(conn: Connection) -> None:
    """Every word of models_fts's text columns, from its own vocabulary (about 10 s at a
    million models: FTS5 counts each word's rows as it lists them)."""
    conn.exec_driver_sql("DELETE FROM search_terms")
    conn.exec_driver_sql("CREATE VIRTUAL TABLE IF NOT EXISTS temp.models_fts_words "
                         "USING fts5vocab(main, models_fts, 'col')")
    try:
        conn.exec_driver_sql("INSERT OR IGNORE INTO search_terms (term) SELECT term "
                             "FROM temp.models_fts_words WHERE col != 'facets'")
    finally:
        conn.exec_driver_sql("DROP TABLE temp.models_fts_words")


_TOKENIZE = re.compile(r"tokenize\s*=\s*(['\"])(.*?)\1", re.IGNORECASE | re.DOTALL)


def _add_terms(conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """The words of these models_fts rows, tokenized by FTS5 with models_fts's own
    tokenizer in a scratch table of this connection, added to search_terms."""
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'models_fts'").scalar()
    found = _TOKENIZE.search(sql or "")
    tokenize = found.group(2) if found else "unicode61"
    columns = ", ".join(TEXT_COLUMNS)
    conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.new_text USING fts5({columns}, "
                         f"tokenize='{tokenize}')")
    conn.exec_driver_sql("CREATE VIRTUAL TABLE IF NOT EXISTS temp.new_words "
                         "USING fts5vocab(temp, new_text, 'row')")
    try:
        conn.exec_driver_sql(f"INSERT INTO temp.new_text ({columns}) VALUES "
                             f"({', '.join('?' * len(TEXT_COLUMNS))})",
                             [row[1:1 + len(TEXT_COLUMNS)] for row in rows])
        conn.exec_driver_sql("INSERT OR IGNORE INTO search_terms (term) SELECT term FROM temp.new_words")
    finally:
        conn.exec_driver_sql("DELETE FROM temp.new_text")


def groups_signature() -> str:
    return json.dumps({g: sorted(m) for g, m in sorted(taxonomy.LANGUAGE_GROUPS.items())})


def mark_fresh(conn: Connection) -> None:
    conn.exec_driver_sql("INSERT INTO catalog_meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (GROUPS_KEY, groups_signature()))


def groups_fresh(conn: sqlite3.Connection) -> bool:
    """Were the group keys built with the language groups this code knows? (A listing
    asks, over its DB-API connection: catalog.search.)"""
    row = conn.execute("SELECT value FROM catalog_meta WHERE key = ?", (GROUPS_KEY,)).fetchone()
    return row is not None and row[0] == groups_signature()
