"""catalog.search as the TUI and HTTP layers call it: counts and facets agree with listings."""

from __future__ import annotations


import pytest

from catalog import taxonomy
from catalog.db import Catalog
from catalog.seed import load_seed
from catalog.search import ModelFilter, count_models, domain_counts, language_counts, list_models


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    cat = Catalog.at(tmp_path_factory.mktemp("search") / "catalog.db")
    with cat.sessions.begin() as s:
        load_seed(s)
    yield cat
    cat.close()


FILTERS = [
    ModelFilter(),
    ModelFilter(search="polish"),
    ModelFilter(search="clinical", languages=["en"]),
    ModelFilter(domains=["code"], max_params=8 * 10**9),
    ModelFilter(languages=["sea"], licenses=["MIT"]),
    ModelFilter(fits_bytes=24 * 1024**3, quant="int4"),
    ModelFilter(source="hub"),
]


@pytest.mark.parametrize("f", FILTERS, ids=range(len(FILTERS)))
def test_count_matches_listing(catalog: Catalog, f: ModelFilter) -> None:
    with catalog.sessions() as s:
        assert count_models(s, f) == len(list_models(s, f))


def test_facets_leave_their_own_filter_out(catalog: Catalog) -> None:
    f = ModelFilter(domains=["law"], languages=["pl"], search="instruct")
    with catalog.sessions() as s:
        # Domain counts ignore the domain filter but keep the others.
        by_domain = domain_counts(s, f)
        general_pl_instruct = list_models(
            s, ModelFilter(domains=["general"], languages=["pl"], search="instruct")
        )
        assert by_domain["general"] == len(general_pl_instruct) > 0
        # Language counts ignore the language filter but keep the others.
        by_language = language_counts(s, f)
        assert by_language
        law_instruct = list_models(s, ModelFilter(domains=["law"], search="instruct"))
        assert by_language == {
            code: sum(code in r.languages for r in law_instruct)
            for code in {c for r in law_instruct for c in r.languages}
        }


def test_domain_counts_cover_the_whole_tree(catalog: Catalog) -> None:
    with catalog.sessions() as s:
        counts = domain_counts(s)
        assert set(counts) == set(taxonomy.DOMAINS)
        for slug, n in counts.items():
            assert n == count_models(s, ModelFilter(domains=[slug])), slug


def test_offset_without_limit(catalog: Catalog) -> None:
    with catalog.sessions() as s:
        everything = list_models(s, ModelFilter())
        assert [r.ref for r in list_models(s, ModelFilter(offset=3))] == [r.ref for r in everything[3:]]


def test_invalid_sort_or_quant_names_the_field() -> None:
    with pytest.raises(ValueError, match="sort: 'size'"):
        ModelFilter(sort="size")
    with pytest.raises(ValueError, match="quant: 'int2'"):
        ModelFilter(quant="int2")
