"""catalog.search as the TUI and HTTP layers call it: counts and facets agree with listings;
and catalog.filters, the one parser of the filters users type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from catalog import taxonomy
from catalog.db import Catalog
from catalog.filters import SORTS, FilterError, model_filter, parse_params_range
from catalog.search import (
    ORDER,
    ModelFilter,
    count_models,
    domain_counts,
    language_counts,
    list_models,
)
from catalog.seed import load_seed
from schemas.errors import ExitCode


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
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


@pytest.mark.parametrize("sort", SORTS)
def test_every_sort_a_user_can_name_lists_every_model(catalog: Catalog, sort: str) -> None:
    assert sort in ORDER or sort == "relevance"
    with catalog.sessions() as s:
        everything = {r.ref for r in list_models(s, ModelFilter())}
        assert {r.ref for r in list_models(s, ModelFilter(sort=sort))} == everything


# -- the one parser of user-typed filters (CLI options, HTTP query, TUI boxes) ----------------


def test_model_filter_parses_what_users_type() -> None:
    f = model_filter(domains=["Code"], languages=["sea"], min_params="1.1B", max_params="8B",
                     licenses=("mit",), fits="24GB", quant="int4", search="sql", source="seed",
                     sort="-params", limit="5", offset="10")
    assert f == ModelFilter(domains=["code"], languages=["sea"], min_params=1_100_000_000,
                            max_params=8_000_000_000, licenses=["mit"], fits_bytes=24 * 1024**3,
                            quant="int4", search="sql", source="seed", sort="-params", limit=5,
                            offset=10)
    assert model_filter() == ModelFilter()


@pytest.mark.parametrize(("kwargs", "field", "value"), [
    ({"domains": ["astrology"]}, "domain", "astrology"),
    ({"languages": ["zz"]}, "language", "zz"),
    ({"min_params": "lots"}, "min_params", "lots"),
    ({"max_params": "7e9"}, "max_params", "7e9"),
    ({"fits": "a lot"}, "fits", "a lot"),
    ({"quant": "int3"}, "quant", "int3"),
    ({"source": "web"}, "source", "web"),
    ({"sort": "random"}, "sort", "random"),
    ({"limit": 0}, "limit", "0"),
    ({"offset": "x"}, "offset", "x"),
])
def test_model_filter_errors_name_the_field_and_are_usage_errors(
        kwargs: dict[str, Any], field: str, value: str) -> None:
    with pytest.raises(FilterError) as info:
        model_filter(**kwargs)
    assert info.value.field == field and value in info.value.problem
    assert str(info.value).startswith(f"{field}: ")
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(("text", "bounds"), [
    ("", (None, None)), ("  ", (None, None)), ("1B-8B", (10**9, 8 * 10**9)),
    ("-8B", (None, 8 * 10**9)), ("7B-", (7 * 10**9, None)), ("<8B", (None, 8 * 10**9)),
    (">1B", (10**9, None)), (" 1 B - 8 B ", (10**9, 8 * 10**9)),
])
def test_params_range_of_the_tui(text: str, bounds: tuple[int | None, int | None]) -> None:
    assert parse_params_range(text) == bounds


@pytest.mark.parametrize("text", ["8B", "lots-8B", "<", "1B-x"])
def test_params_range_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(FilterError, match="^params: "):
        parse_params_range(text)
