"""The catalog's fast listing plans (facet ranges, popularity-ordered full text, facet counts)
answer exactly what the filters mean: checked against a reference computed in Python from
the plain tables of a generated catalog, and the derived tables kept by every write
against a rebuild from scratch."""

from __future__ import annotations

import re
import sqlite3
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bench.catalog_gen import generate
from catalog import indexing, taxonomy
from catalog.db import Catalog, alembic_config, upgrade
from catalog.importer import import_entries
from catalog.models import remove_model, upsert_model
from catalog.records import ModelEntry
from catalog.search import (
    ModelFilter,
    count_models,
    domain_counts,
    fts_query,
    language_counts,
    list_models,
)
from catalog.seed import load_seed

_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # SQLite's NOCASE


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Catalog, list[dict[str, Any]]]]:
    path = generate(tmp_path_factory.mktemp("plans") / "catalog.db", 3000, seed=7)
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        models = {r["id"]: dict(r, languages=set(), domains=set(), tags=set())
                  for r in conn.execute("SELECT id, ref, name, description, card, downloads, text_key FROM models")}
        for table, column in (("model_languages", "languages"), ("model_domains", "domains"), ("model_tags", "tags")):
            for model_id, value in conn.execute(f"SELECT * FROM {table}"):
                models[model_id][column].add(value)
    catalog = Catalog.at(path)
    yield catalog, list(models.values())
    catalog.close()


def _matches(m: dict[str, Any], f: ModelFilter) -> bool:
    if f.domains and not any(s == d or s.startswith(d + "/") for d in f.domains for s in m["domains"]):
        return False
    return not (f.languages and not m["languages"] & set(taxonomy.expand_languages(f.languages)))


FILTERS = [
    ModelFilter(),
    ModelFilter(domains=["medicine"]),
    ModelFilter(languages=["de"]),
    ModelFilter(domains=["code/sql"], languages=["fr"]),
    ModelFilter(domains=["science"], languages=["sea"]),
    ModelFilter(domains=["law", "finance"], languages=["pl"]),  # two domains: the general plan
    ModelFilter(languages=["cjk"], min_params=7 * 10**9),  # a condition on the row: joined
]


@pytest.mark.parametrize("f", FILTERS, ids=range(len(FILTERS)))
@pytest.mark.parametrize("offset", [0, 40])
def test_listing_counts_and_facets_match_the_reference(generated: tuple[Catalog, list[dict]],
                                                       f: ModelFilter, offset: int) -> None:
    catalog, models = generated
    size = {m["id"]: p for m, p in ((m, _params(catalog, m["id"])) for m in models)} if f.min_params else {}
    wanted = [m for m in models if _matches(m, f) and (not f.min_params or (size[m["id"]] or 0) >= f.min_params)]
    order = sorted(wanted, key=lambda m: (m["name"].translate(_FOLD), m["id"]))
    page = type(f)(**{**f.__dict__, "limit": 25, "offset": offset})
    with catalog.sessions() as s:
        assert [r.id for r in list_models(s, page)] == [m["id"] for m in order[offset:offset + 25]]
        assert count_models(s, f) == len(wanted)
        if not f.min_params:
            by_domain = domain_counts(s, f)
            by_language = language_counts(s, f)
    if f.min_params:
        return
    others = [m for m in models if _matches(m, type(f)(languages=f.languages))]
    for slug in taxonomy.DOMAINS:
        assert by_domain[slug] == sum(_matches(m, ModelFilter(domains=[slug])) for m in others), slug
    rest = [m for m in models if _matches(m, type(f)(domains=f.domains))]
    assert by_language == {c: n for c in {c for m in rest for c in m["languages"]}
                           if (n := sum(c in m["languages"] for m in rest))}


def _params(catalog: Catalog, model_id: int) -> int | None:
    with catalog.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT parameters FROM models WHERE id = ?", (model_id,)).scalar()


def _tokens(*texts: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", " ".join(texts).lower())


# Whole words, several words, capitals, a prefix beginning more words than are looked up
# one by one ("c"), a short one ("te"), one beginning no word, and a word FTS5 folds.
@pytest.mark.parametrize("words", ["clinical", "python notebooks", "Mistral sql", "tutor", "zzz",
                                   "c", "te sq", "clin onc", "Kraków"])
@pytest.mark.parametrize("facets", [{}, {"domains": ["medicine"], "languages": ["en"]}])
def test_relevance_puts_name_matches_first_then_the_most_downloaded(
        generated: tuple[Catalog, list[dict]], words: str, facets: dict[str, list[str]]) -> None:
    catalog, models = generated
    f = ModelFilter(search=words, sort="relevance", **facets)
    wanted = words.lower().split()

    def tier(m: dict[str, Any]) -> int | None:
        def has(tokens: list[str]) -> bool:
            return all(any(t.startswith(w) for t in tokens) for w in wanted)
        if has(_tokens(m["ref"], m["name"])):
            return 0
        return 1 if has(_tokens(m["ref"], m["name"], m["description"], " ".join(m["tags"]), m["card"])) else None

    ranked = sorted((tier(m), m["text_key"], m["id"]) for m in models if _matches(m, f) and tier(m) is not None)
    with catalog.sessions() as s:
        got = [r.id for r in list_models(s, type(f)(**{**f.__dict__, "limit": 30, "offset": 5}))]
        total = count_models(s, f)
    assert got == [model_id for _, _, model_id in ranked[5:35]]
    assert total == len(ranked)


def _derived(catalog: Catalog) -> dict[str, list[tuple]]:
    with catalog.engine.connect() as conn:
        return {
            "facets": conn.exec_driver_sql("SELECT * FROM model_facets ORDER BY 1, 2, 3, 4").all(),
            "counts": conn.exec_driver_sql("SELECT * FROM facet_counts ORDER BY 1, 2").all(),
            "text": conn.exec_driver_sql("SELECT rowid, ref, name, description, tags, card, facets "
                                         "FROM models_fts ORDER BY rowid").all(),
            "keys": conn.exec_driver_sql("SELECT id, text_key FROM models ORDER BY id").all(),
        }


def test_every_write_keeps_the_derived_tables_as_a_rebuild_would(home: Path) -> None:
    catalog = Catalog.at(home / "catalog.db")
    try:
        with catalog.sessions.begin() as s:
            load_seed(s)
            upsert_model(s, ModelEntry(ref="acme/x", name="Xylophone", source="local", languages=["th", "de"],
                                       domains=["code/sql"], tags=["sql"], downloads=10))
            remove_model(s, "yandex/yalm-100b")
        with catalog.writing() as s:
            moved = ModelEntry(ref="acme/x", name="Xylophone 2", source="hub", languages=["vi"],
                               domains=["law"], downloads=10**6, revision="1" * 40)
            fresh = ModelEntry(ref="acme/y", name="Yak", source="hub", languages=["ja"], domains=["education"])
            seed = ModelEntry(ref="LeoLM/leo-hessianai-7b", name="ignored", source="hub", downloads=77,
                              languages=["fr"])
            import_entries(s, [moved, fresh, seed], now=datetime.now(UTC))
        incremental, words = _derived(catalog), _terms(catalog)
        with catalog.engine.begin() as conn:
            indexing.rebuild(conn)
        assert _derived(catalog) == incremental
        assert incremental["counts"]  # and something was counted
        # Every word the index holds, as FTS5 tokenized it; one no model holds any longer
        # (the removed model's, the renamed one's) may stay.
        rebuilt = _terms(catalog)
        assert rebuilt == _vocabulary(catalog)
        assert {"xylophone", "yak", "2"} <= rebuilt <= words
    finally:
        catalog.close()


def _terms(catalog: Catalog) -> set[str]:
    with catalog.engine.connect() as conn:
        return {t for (t,) in conn.exec_driver_sql("SELECT term FROM search_terms")}


def _vocabulary(catalog: Catalog) -> set[str]:
    """The words of models_fts's text columns, as FTS5 itself lists them."""
    with catalog.engine.connect() as conn:
        conn.exec_driver_sql("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, models_fts, 'col')")
        return {t for (t,) in conn.exec_driver_sql("SELECT term FROM temp.v WHERE col != 'facets'")}


def test_typed_words_become_the_whole_words_they_begin_while_few() -> None:
    words = {"clin": ['"clinic"', '"clinical"'], "sql": ['"sql"'], "zz": [], "a": None}
    assert fts_query("Clin SQL zz", words.get) == '("clinic" OR "clinical") AND "sql" AND "zz"'
    # Too many words begin "a"; "ünï" and "a_b" are left to FTS5 (its folding, its tokens).
    assert fts_query("a ünï a_b", words.get) == '"a"* AND "ünï"* AND "a_b"*'
    assert fts_query("clin sql") == '"clin"* AND "sql"*'


def test_the_migration_lists_the_words_of_the_models_already_there(tmp_path: Path) -> None:
    catalog = Catalog.at(tmp_path / "catalog.db")
    try:
        with catalog.sessions.begin() as s:
            load_seed(s)
        downgrade(catalog.engine, "0003")  # a catalog as the revision before found it
        upgrade(catalog.engine)
        assert "polka" in _terms(catalog)
        assert _terms(catalog) == _vocabulary(catalog)
    finally:
        catalog.close()


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
