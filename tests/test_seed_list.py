"""The curated seed list that ships with Almanac."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

import schemas
from catalog import taxonomy
from catalog.models import validate_entry
from catalog.records import ModelEntry
from catalog.seed import read_entries

# Every specialist DESIGN.md names, by Hub repo id.
DESIGN_MODELS = {
    "Meditron 7B": "epfl-llm/meditron-7b",
    "Meditron 70B": "epfl-llm/meditron-70b",
    "SQLCoder": "defog/sqlcoder-7b-2",
    "Code Llama Python": "codellama/CodeLlama-7b-Python-hf",
    "Samantha": "cognitivecomputations/Samantha-1.11-70b",
    "LeoLM": "LeoLM/leo-hessianai-7b",
    "CroissantLLM": "croissantllm/CroissantLLMBase",
    "Aguila": "projecte-aina/aguila-7b",
    "Polka": "eryk-mazus/polka-1.1b",
    "Bielik": "speakleash/Bielik-11B-v2.6-Instruct",
    "YaLM": "yandex/yalm-100b",
    "Qwen-7B": "Qwen/Qwen-7B",
    "SEA-LION": "aisingapore/sea-lion-7b",
}


@pytest.fixture(scope="module")
def entries() -> list[ModelEntry]:
    return read_entries()


@pytest.fixture(scope="module")
def raw() -> list[dict]:
    text = resources.files("catalog.seed").joinpath("models.toml").read_text("utf-8")
    return tomllib.loads(text)["model"]


def test_every_raw_entry_validates_against_the_schema(raw: list[dict]) -> None:
    problems = {item.get("repo_id"): schemas.problems("model-entry", item) for item in raw}
    assert {k: v for k, v in problems.items() if v} == {}


def test_seed_list_reads_and_every_entry_passes_the_store_checks() -> None:
    for entry in read_entries():  # a copy of its own: validate_entry normalizes in place
        validate_entry(entry)  # raises ValueError naming the field
        assert entry.source == "seed"
        assert entry.ref == entry.repo_id


def test_seed_list_has_at_least_30_distinct_models(entries: list[ModelEntry]) -> None:
    refs = [e.ref for e in entries]
    assert len(refs) >= 30
    assert len(set(refs)) == len(refs)
    assert len({r.lower() for r in refs}) == len(refs), "refs differ only in case"


@pytest.mark.parametrize(("label", "repo_id"), sorted(DESIGN_MODELS.items()))
def test_seed_list_contains_the_models_design_names(entries: list[ModelEntry], label: str, repo_id: str) -> None:
    assert repo_id in {e.repo_id for e in entries}, label


def test_every_domain_has_a_model(entries: list[ModelEntry]) -> None:
    used = {d for e in entries for d in e.domains}
    assert set(taxonomy.DOMAINS) - used == set()
    assert used <= set(taxonomy.DOMAINS)


def test_seed_list_has_an_adapter_with_a_base(entries: list[ModelEntry]) -> None:
    adapters = [e for e in entries if e.relation == "adapter"]
    assert adapters
    assert all(e.base_model for e in adapters)


def test_lineage_is_consistent(entries: list[ModelEntry]) -> None:
    for e in entries:
        assert (e.base_model is None) == (e.relation is None), e.ref
        assert e.base_model != e.repo_id, e.ref
        if e.adapter_rank is not None:
            assert e.relation == "adapter", e.ref


def test_every_language_code_is_already_normalized(raw: list[dict]) -> None:
    for item in raw:
        for code in item["languages"]:
            assert taxonomy.normalize_language(code) == code, (item["repo_id"], code)
        for slug in item["domains"]:
            assert taxonomy.normalize_domain(slug) == slug, (item["repo_id"], slug)


def test_domain_specialists_land_where_design_says(entries: list[ModelEntry]) -> None:
    by_ref = {e.ref: e for e in entries}
    assert "medicine" in by_ref["epfl-llm/meditron-7b"].domains
    assert "code/sql" in by_ref["defog/sqlcoder-7b-2"].domains
    assert "code/python" in by_ref["codellama/CodeLlama-7b-Python-hf"].domains
    assert "psychology" in by_ref["cognitivecomputations/Samantha-1.11-70b"].domains
    assert "de" in by_ref["LeoLM/leo-hessianai-7b"].languages
    assert "fr" in by_ref["croissantllm/CroissantLLMBase"].languages
    assert {"es", "ca"} <= set(by_ref["projecte-aina/aguila-7b"].languages)
    assert "pl" in by_ref["eryk-mazus/polka-1.1b"].languages
    assert "ru" in by_ref["yandex/yalm-100b"].languages
    assert "zh" in by_ref["Qwen/Qwen-7B"].languages
    sea = set(taxonomy.expand_languages(["sea"]))
    assert len(sea & set(by_ref["aisingapore/sea-lion-7b"].languages)) >= 5


def test_parameter_counts_are_plausible(entries: list[ModelEntry]) -> None:
    by_ref = {e.ref: e for e in entries}
    assert 60e9 < by_ref["epfl-llm/meditron-70b"].parameters < 75e9
    assert 6e9 < by_ref["epfl-llm/meditron-7b"].parameters < 8e9
    assert 1e9 < by_ref["eryk-mazus/polka-1.1b"].parameters < 1.3e9
    for e in entries:
        if e.relation == "adapter" and e.parameters is not None:
            assert e.parameters < 1e9, e.ref


def test_figures_left_out_are_marked_in_the_seed_file(raw: list[dict]) -> None:
    """An entry without a parameter count or license says why in the comment above it."""
    text = resources.files("catalog.seed").joinpath("models.toml").read_text("utf-8")
    for item in raw:
        missing = [f for f in ("parameters", "license") if f not in item]
        if not missing:
            continue
        before = text[:text.index(f'repo_id = "{item["repo_id"]}"')].rsplit("[[model]]", 1)[0]
        comment = before[before.rstrip().rfind("\n\n"):]
        assert "left out" in comment, (item["repo_id"], missing)
        for field in missing:
            assert field in comment, (item["repo_id"], field)


def test_the_audit_fixes_hold(entries: list[ModelEntry]) -> None:
    by_ref = {e.ref: e for e in entries}
    assert by_ref["croissantllm/CroissantLLMBase"].task == "text-generation"
    assert by_ref["epfl-llm/meditron-7b"].gated is True
    assert by_ref["aisingapore/Gemma-SEA-LION-v3-9B-IT"].base_model == "aisingapore/Gemma-SEA-LION-v3-9B"
    assert by_ref["cognitivecomputations/Samantha-1.11-70b"].parameters is None
    assert by_ref["speakleash/Bielik-11B-v2.6-Instruct"].license is None
    assert by_ref["ecnu-icalk/educhat-base-002-7b"].base_model is None


def test_thin_areas_have_specialists(entries: list[ModelEntry]) -> None:
    languages = {c for e in entries for c in e.languages}
    assert {"ar", "hi", "sw", "ja", "ko", "ru"} <= languages
    assert sum("education" in e.domains for e in entries) >= 2
    assert any("mental-health" in e.tags for e in entries)
    assert any("law" in e.domains and "zh" in e.languages for e in entries)
