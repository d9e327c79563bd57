"""catalog.taxonomy: language codes and groups, the domain tree, Hub metadata mapping."""

from __future__ import annotations

import pytest

from catalog import taxonomy
from catalog.taxonomy import TaxonomyError


@pytest.mark.parametrize(
    ("code", "normal"),
    [
        ("pl", "pl"),
        ("pol", "pl"),  # ISO 639-3 to 639-1 where one exists
        ("fil", "fil"),  # Filipino has no 639-1 code: stays 639-3
        ("fre", "fr"),  # ISO 639-2 bibliographic
        ("ger", "de"),
        ("EN", "en"),
        ("en_US", "en"),
        ("zh-Hans", "zh"),
        (" th ", "th"),
        ("tl", "tl"),
    ],
)
def test_normalize_language(code: str, normal: str) -> None:
    assert taxonomy.normalize_language(code) == normal


@pytest.mark.parametrize("code", ["zz", "xyz", "english", "", "e"])
def test_normalize_language_rejects_unknown_codes(code: str) -> None:
    with pytest.raises(TaxonomyError, match="unknown language code"):
        taxonomy.normalize_language(code)


def test_expand_languages_expands_groups_and_dedupes() -> None:
    sea = taxonomy.expand_languages(["sea"])
    assert sea == list(taxonomy.LANGUAGE_GROUPS["sea"])
    assert {"id", "th", "vi", "fil", "ms"} <= set(sea)
    assert taxonomy.expand_languages(["pl", "pol", "PL"]) == ["pl"]
    assert taxonomy.expand_languages(["SEA", "th"]) == sea
    assert taxonomy.expand_languages(["fre", "iberian"]) == ["fr", "es", "ca", "pt", "gl", "eu"]
    with pytest.raises(TaxonomyError, match="'zz'"):
        taxonomy.expand_languages(["en", "zz"])


def test_every_group_member_is_a_normalized_code() -> None:
    for group, members in taxonomy.LANGUAGE_GROUPS.items():
        for code in members:
            assert taxonomy.normalize_language(code) == code, (group, code)


def test_domain_children() -> None:
    assert taxonomy.domain_children("code") == ["code", "code/python", "code/sql"]
    assert taxonomy.domain_children("code/sql") == ["code/sql"]
    assert taxonomy.domain_children(" Medicine/ ") == ["medicine", "medicine/biomedical"]
    assert taxonomy.domain_children("law") == ["law"]
    with pytest.raises(TaxonomyError, match="unknown domain 'nonsense'"):
        taxonomy.domain_children("nonsense")
    with pytest.raises(TaxonomyError):
        taxonomy.domain_children("cod")  # a prefix of a slug is not a slug


def test_domain_tree_is_well_formed() -> None:
    for slug in taxonomy.DOMAINS:
        assert taxonomy.is_valid_slug(slug), slug
        parent = taxonomy.domain_parent(slug)
        assert parent is None or parent in taxonomy.DOMAINS, slug
    design_top_level = {"medicine", "law", "finance", "code", "psychology", "science", "education", "general"}
    assert design_top_level <= {s for s in taxonomy.DOMAINS if "/" not in s}
    assert set(taxonomy.HUB_TAG_DOMAINS.values()) <= set(taxonomy.DOMAINS)


def test_hub_domains() -> None:
    assert taxonomy.hub_domains(["medical", "sql"]) == ["medicine", "code/sql"]
    assert taxonomy.hub_domains(["code", "SQL", "text-to-sql"]) == ["code/sql"]  # child wins
    assert taxonomy.hub_domains(["transformers", "llama"]) == ["general"]
    assert taxonomy.hub_domains([], pipeline_tag="text-generation") == ["general"]
    assert taxonomy.hub_domains(["legal"], pipeline_tag=None) == ["law"]


def test_hub_languages_skips_non_language_tags() -> None:
    assert taxonomy.hub_languages(["en", "multilingual", "code", "pl", "pol", "en"]) == ["en", "pl"]
    assert taxonomy.hub_languages("fr") == ["fr"]
    assert taxonomy.hub_languages(None) == []
    assert taxonomy.hub_languages([]) == []
    assert taxonomy.hub_languages(["zz", "xx"]) == []


def test_language_name() -> None:
    assert taxonomy.language_name("pl") == "Polish"
    assert taxonomy.language_name("fil") == "Filipino"
