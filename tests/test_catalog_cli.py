"""The catalog through the `almanac` CLI (init, models, domains, languages) on real SQLite."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from almanac.cli import cli
from catalog import sizes
from catalog.db import Catalog
from catalog.indexing import ID_MASK
from catalog.models import upsert_model, validate_entry
from catalog.records import ModelEntry
from catalog.seed import SeedError, load_seed, read_entries

SEED = [validate_entry(e) for e in read_entries()]
BY_REF = {e.ref: e for e in SEED}


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args])


def ok(home: Path, *args: str) -> Result:
    result = run(home, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def listing(home: Path, *args: str) -> list[dict[str, Any]]:
    return json.loads(ok(home, "models", "list", "--json", *args).stdout)


def refs(home: Path, *args: str) -> set[str]:
    return {m["ref"] for m in listing(home, *args)}


def expected(pred: Callable[[ModelEntry], bool]) -> set[str]:
    """The seed refs a filter should return, computed in Python from the seed list."""
    return {e.ref for e in SEED if pred(e)}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded home shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("seeded") / "home"
    ok(root, "init")
    return root


@pytest.fixture
def fresh(home: Path) -> Path:
    """A seeded home of this test's own, for tests that write."""
    ok(home, "init")
    return home


def _dump(db_path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db_path) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("models", "model_languages", "model_domains", "model_tags", "evals")
        } | {"fts": conn.execute("SELECT rowid, * FROM models_fts ORDER BY rowid").fetchall()}


def _fts_rowids(db_path: Path, query: str) -> set[int]:
    """Ids of the models the full-text index finds (its rowid holds the id in its low bits)."""
    with sqlite3.connect(db_path) as conn:
        return {r[0] & ID_MASK for r in conn.execute("SELECT rowid FROM models_fts WHERE models_fts MATCH ?",
                                                     (query,))}


# --- init -----------------------------------------------------------------------------------


def test_init_loads_the_seed_then_a_second_init_changes_nothing(home: Path) -> None:
    first = json.loads(ok(home, "init", "--json").stdout)
    assert first["seed"] == {"added": len(SEED), "updated": 0, "unchanged": 0, "kept": 0}
    before = _dump(home / "catalog.db")
    assert len(before["models"]) == len(SEED)

    second = json.loads(ok(home, "init", "--json").stdout)
    assert second["seed"] == {"added": 0, "updated": 0, "unchanged": len(SEED), "kept": 0}
    assert _dump(home / "catalog.db") == before  # rows, updated_at, eval ids, FTS: all identical


def test_init_text_output_reports_counts(home: Path) -> None:
    ok(home, "init")
    out = ok(home, "init").stdout
    assert f"0 added, 0 updated, {len(SEED)} unchanged" in out


def test_seed_update_that_only_changes_languages_bumps_updated_at(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime

    import catalog.models

    later = datetime(2099, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(catalog.models, "utcnow", lambda: later)
    entries = read_entries()
    polka = next(e for e in entries if e.ref == "eryk-mazus/polka-1.1b")
    polka.languages = ["pl", "en", "de"]
    catalog = Catalog.at(fresh / "catalog.db")
    try:
        with catalog.sessions.begin() as s:
            counts = load_seed(s, entries)
    finally:
        catalog.close()
    assert counts == {"added": 0, "updated": 1, "unchanged": len(SEED) - 1, "kept": 0}
    shown = json.loads(ok(fresh, "models", "show", "eryk-mazus/polka-1.1b", "--json").stdout)
    assert shown["languages"] == ["de", "en", "pl"]
    assert shown["updated_at"].startswith("2099-01-01")


def test_seed_update_of_a_model_with_evals(fresh: Path) -> None:
    ref = "bigcode/starcoder2-15b"
    db_path = fresh / "catalog.db"
    with sqlite3.connect(db_path) as conn:
        ids_before = dict(conn.execute(
            "SELECT benchmark, evals.id FROM evals JOIN models ON models.id = evals.model_id "
            "WHERE models.ref = ?", (ref,)))
    entries = read_entries()
    starcoder = next(e for e in entries if e.ref == ref)
    starcoder.description += " Updated."
    humaneval = next(e for e in starcoder.evals if e.benchmark == "HumanEval")
    humaneval.value = 0.5
    starcoder.evals = [e for e in starcoder.evals if e.benchmark != "DS-1000"]
    starcoder.evals.append(type(humaneval)("MBPP", "pass@1", 0.6, "https://example.org/card"))
    catalog = Catalog.at(db_path)
    try:
        with catalog.sessions.begin() as s:
            counts = load_seed(s, entries)
    finally:
        catalog.close()
    assert counts["updated"] == 1
    shown = json.loads(ok(fresh, "models", "show", ref, "--json").stdout)
    assert shown["description"].endswith(" Updated.")
    evals = {e["benchmark"]: e["value"] for e in shown["evals"]}
    assert evals == {"HumanEval": 0.5, "HumanEval+": 0.378, "GSM8K (PAL)": 0.651, "MBPP": 0.6}
    with sqlite3.connect(db_path) as conn:
        ids_after = dict(conn.execute(
            "SELECT benchmark, evals.id FROM evals JOIN models ON models.id = evals.model_id "
            "WHERE models.ref = ?", (ref,)))
    # Evals that stay keep their rows.
    assert ids_after["HumanEval"] == ids_before["HumanEval"]
    assert ids_after["HumanEval+"] == ids_before["HumanEval+"]


def test_upserting_the_same_model_twice_is_fine(fresh: Path) -> None:
    """What `models add` does when a model is added again: every child collection is rewritten."""
    catalog = Catalog.at(fresh / "catalog.db")
    try:
        for _ in range(2):
            with catalog.sessions.begin() as s:
                entry = next(e for e in read_entries() if e.evals)
                entry.source = "hub"
                upsert_model(s, entry)
    finally:
        catalog.close()
    shown = json.loads(ok(fresh, "models", "show", entry.ref, "--json").stdout)
    assert shown["source"] == "hub"
    assert len(shown["evals"]) == len(entry.evals)


def test_init_keeps_models_that_came_from_elsewhere(fresh: Path) -> None:
    catalog = Catalog.at(fresh / "catalog.db")
    try:
        with catalog.sessions.begin() as s:
            entry = read_entries()[0]
            entry.source, entry.description = "hub", "Refreshed from the Hub, not the seed."
            upsert_model(s, entry)
    finally:
        catalog.close()
    counts = json.loads(ok(fresh, "init", "--json").stdout)["seed"]
    assert counts["kept"] == 1 and counts["unchanged"] == len(SEED) - 1
    shown = json.loads(ok(fresh, "models", "show", SEED[0].ref, "--json").stdout)
    assert shown["source"] == "hub"
    assert shown["description"] == "Refreshed from the Hub, not the seed."


# --- models list: filters -------------------------------------------------------------------


def test_list_everything_returns_the_whole_seed(seeded: Path) -> None:
    assert refs(seeded) == set(BY_REF)


def test_list_by_domain_and_language(seeded: Path) -> None:
    got = refs(seeded, "--domain", "medicine", "--language", "en")
    assert "epfl-llm/meditron-7b" in got
    assert got == expected(
        lambda e: any(d.split("/")[0] == "medicine" for d in e.domains) and "en" in e.languages
    )


def test_list_polish(seeded: Path) -> None:
    got = refs(seeded, "--language", "pl")
    assert {"eryk-mazus/polka-1.1b", "speakleash/Bielik-11B-v2.6-Instruct"} <= got
    assert got == expected(lambda e: "pl" in e.languages)
    # ISO 639-3 and bibliographic codes normalize to the same language.
    assert refs(seeded, "--language", "pol") == got


def test_list_domain_includes_children(seeded: Path) -> None:
    code = refs(seeded, "--domain", "code")
    assert {"defog/sqlcoder-7b-2", "codellama/CodeLlama-7b-Python-hf"} <= code
    sql = refs(seeded, "--domain", "code/sql")
    assert "defog/sqlcoder-7b-2" in sql
    assert "codellama/CodeLlama-7b-Python-hf" not in sql
    assert sql < code
    # A model tagged only with a child slug is found through its parent.
    biomed_only = expected(lambda e: e.domains == ["medicine/biomedical"])
    assert biomed_only and biomed_only <= refs(seeded, "--domain", "medicine")


def test_list_max_params_and_language(seeded: Path) -> None:
    models = listing(seeded, "--max-params", "2B", "--language", "fr")
    assert "croissantllm/CroissantLLMBase" in {m["ref"] for m in models}
    assert models and all(m["parameters"] <= 2 * 10**9 for m in models)
    assert all("fr" in m["languages"] for m in models)


def test_list_min_params(seeded: Path) -> None:
    got = refs(seeded, "--min-params", "50B")
    assert {"yandex/yalm-100b", "epfl-llm/meditron-70b"} <= got
    assert got == expected(lambda e: e.parameters is not None and e.parameters >= 50 * 10**9)


def test_list_params_bounds_are_inclusive(seeded: Path) -> None:
    polka = BY_REF["eryk-mazus/polka-1.1b"].parameters
    assert "eryk-mazus/polka-1.1b" in refs(seeded, "--min-params", str(polka), "--max-params", str(polka))


def test_list_language_group_expands(seeded: Path) -> None:
    got = refs(seeded, "--language", "sea")
    assert {"aisingapore/sea-lion-7b", "scb10x/typhoon-7b", "vilm/vinallama-7b"} <= got
    sea = {"id", "ms", "th", "vi", "fil", "tl", "my", "km", "lo", "ta", "jv", "su"}
    assert got == expected(lambda e: bool(sea & set(e.languages)))
    assert "epfl-llm/meditron-7b" not in got


def test_list_by_license_is_case_insensitive_and_repeatable(seeded: Path) -> None:
    mit = refs(seeded, "--license", "MIT")
    assert "croissantllm/CroissantLLMBase" in mit
    assert mit == expected(lambda e: e.license == "mit")
    both = refs(seeded, "--license", "mit", "--license", "gemma")
    assert both == mit | {"aisingapore/Gemma-SEA-LION-v3-9B-IT"}


@pytest.mark.parametrize(
    ("memory", "quant"),
    [("24GB", None), ("24GB", "int4"), ("24GB", "int8"), ("48GB", None), ("48GB", "int4")],
)
def test_list_fits_agrees_with_sizes_fits(seeded: Path, memory: str, quant: str | None) -> None:
    args = ["--fits", memory] + (["--quant", quant] if quant else [])
    got = refs(seeded, *args)
    mem = sizes.parse_memory(memory)
    assert got == expected(lambda e: sizes.fits(e.parameters, e.dtype, mem, quant))


def test_list_fits_arithmetic(seeded: Path) -> None:
    # 24 GiB = 25.8e9 bytes. A 7B bf16 model needs 6.74e9 x 2 x 1.2 = 16.2e9: fits.
    # Bielik 11B needs 11.17e9 x 2 x 1.2 = 26.8e9: does not; with int8 (13.4e9) it does.
    fits24 = refs(seeded, "--fits", "24GB")
    assert "epfl-llm/meditron-7b" in fits24
    assert "speakleash/Bielik-11B-v2.6-Instruct" not in fits24
    assert "speakleash/Bielik-11B-v2.6-Instruct" in refs(seeded, "--fits", "24GB", "--quant", "int8")
    # StarCoder2 is published in float32: 15.96e9 x 4 x 1.2 = 76.6e9.
    assert "bigcode/starcoder2-15b" not in fits24
    # 70B at int4 is 68.98e9 x 0.5 x 1.2 = 41.4e9: too big for 24 GiB even quantized...
    assert "epfl-llm/meditron-70b" not in refs(seeded, "--fits", "24GB", "--quant", "int4")
    # ...fits 48 GiB (51.5e9) only with int4, while the published AWQ (int4) fits as is.
    fits48 = refs(seeded, "--fits", "48GB")
    assert "epfl-llm/meditron-70b" not in fits48
    assert "TheBloke/meditron-70B-AWQ" in fits48
    fits48_int4 = refs(seeded, "--fits", "48GB", "--quant", "int4")
    assert "epfl-llm/meditron-70b" in fits48_int4
    # A model whose size is unknown fits nowhere (Samantha's count was left out of the seed).
    assert "cognitivecomputations/Samantha-1.11-70b" not in refs(seeded, "--fits", "1000GB")
    # YaLM 100B at int4: 60e9 bytes.
    assert "yandex/yalm-100b" not in fits48_int4


@pytest.mark.parametrize(
    ("query", "must_include"),
    [
        ("clinical", "epfl-llm/meditron-7b"),  # tags and descriptions
        ("clini", "epfl-llm/meditron-7b"),  # prefix match
        ("Tagesschau", "LeoLM/leo-hessianai-7b"),  # a word only in one description
        ("meditron", "epfl-llm/meditron-70b"),  # the repo id
        ("aguila", "projecte-aina/aguila-7b"),  # diacritics removed from "Ǎguila"
        ("polish instruct", "speakleash/Bielik-11B-v2.6-Instruct"),  # all words required
    ],
)
def test_list_search(seeded: Path, query: str, must_include: str) -> None:
    assert must_include in refs(seeded, "--search", query)


def test_list_search_narrows_and_needs_every_word(seeded: Path) -> None:
    tagesschau = refs(seeded, "--search", "Tagesschau")
    assert tagesschau == {"LeoLM/leo-hessianai-7b"}
    polish = refs(seeded, "--search", "polish")
    polish_instruct = refs(seeded, "--search", "polish instruct")
    assert "speakleash/Bielik-7B-v0.1" in polish
    assert "speakleash/Bielik-7B-v0.1" not in polish_instruct
    assert polish_instruct < polish
    assert refs(seeded, "--search", "zzyzxnothing") == set()


def test_list_search_with_filters_and_relevance(seeded: Path) -> None:
    got = refs(seeded, "--search", "clinical", "--min-params", "50B")
    assert got == {"epfl-llm/meditron-70b", "TheBloke/meditron-70B-AWQ"}
    ranked = listing(seeded, "--search", "Tagesschau", "--sort", "relevance")
    assert [m["ref"] for m in ranked] == ["LeoLM/leo-hessianai-7b"]


def test_list_sort_params_descending_with_limit(seeded: Path) -> None:
    models = listing(seeded, "--sort", "-params", "--limit", "3")
    assert len(models) == 3
    params = [m["parameters"] for m in models]
    assert params == sorted(params, reverse=True)
    assert models[0]["ref"] == "yandex/yalm-100b"
    top3 = sorted((e.parameters for e in SEED if e.parameters is not None), reverse=True)[:3]
    assert params == top3


def test_list_sort_and_offset_page_through(seeded: Path) -> None:
    everything = [m["ref"] for m in listing(seeded, "--sort", "params")]
    page2 = [m["ref"] for m in listing(seeded, "--sort", "params", "--limit", "5", "--offset", "5")]
    assert page2 == everything[5:10]
    assert everything[0] == "FinGPT/fingpt-mt_llama3-8b_lora"  # the 3.4M-parameter adapter


def test_list_table_output_is_data_on_stdout(seeded: Path) -> None:
    result = ok(seeded, "models", "list", "--language", "pl")
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "PARAMS"]
    assert any(line.startswith("eryk-mazus/polka-1.1b ") for line in lines)
    assert len(lines) == 1 + len(expected(lambda e: "pl" in e.languages))


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--domain", "nonsense"], "nonsense"),
        (["--max-params", "lots"], "lots"),
        (["--min-params", "7e9"], "7e9"),
        (["--language", "zz"], "zz"),
        (["--fits", "a lot"], "a lot"),
        (["--quant", "int3", "--fits", "24GB"], "int3"),
    ],
)
def test_list_bad_input_exits_2_naming_the_problem(seeded: Path, args: list[str], names: str) -> None:
    result = run(seeded, "models", "list", *args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert names in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("option", "value"), [
    ("--domain", "nonsense"), ("--language", "zz"), ("--min-params", "lots"), ("--fits", "a lot"),
])
def test_list_bad_input_names_the_option(seeded: Path, option: str, value: str) -> None:
    result = run(seeded, "models", "list", option, value)
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.stderr


# --- models show / remove -------------------------------------------------------------------


def test_show_json_has_lineage(seeded: Path) -> None:
    shown = json.loads(ok(seeded, "models", "show", "defog/sqlcoder-7b-2", "--json").stdout)
    assert shown["ref"] == "defog/sqlcoder-7b-2"
    assert shown["base_model"] == "codellama/CodeLlama-7b-hf"
    assert shown["relation"] == "finetune"
    assert shown["domains"] == ["code", "code/sql"]
    assert shown["parameters"] == BY_REF["defog/sqlcoder-7b-2"].parameters


@pytest.mark.parametrize(
    ("typed", "ref"),
    [
        ("epfl-llm/meditron-7b", "epfl-llm/meditron-7b"),
        ("EPFL-LLM/Meditron-7B", "epfl-llm/meditron-7b"),  # ref, any case
        ("meditron 7b", "epfl-llm/meditron-7b"),  # name, any case
        ("Ǎguila 7B", "projecte-aina/aguila-7b"),  # a non-ASCII name typed exactly
        ("ǍGUILA 7b", "projecte-aina/aguila-7b"),  # ASCII case folded around it
    ],
)
def test_show_finds_by_ref_or_name(seeded: Path, typed: str, ref: str) -> None:
    shown = json.loads(ok(seeded, "models", "show", typed, "--json").stdout)
    assert shown["ref"] == ref


def test_show_lists_adapters_of_a_base_but_not_its_finetunes(fresh: Path) -> None:
    catalog = Catalog.at(fresh / "catalog.db")
    try:
        with catalog.sessions.begin() as s:
            upsert_model(
                s,
                ModelEntry(
                    ref="acme/meditron-7b-triage-lora", repo_id="acme/meditron-7b-triage-lora",
                    name="Meditron triage LoRA", source="local", parameters=4_194_304,
                    base_model="epfl-llm/meditron-7b", relation="adapter", adapter_rank=8,
                    domains=["medicine"], languages=["en"],
                ),
            )
    finally:
        catalog.close()
    base = json.loads(ok(fresh, "models", "show", "epfl-llm/meditron-7b", "--json").stdout)
    assert base["adapters"] == ["acme/meditron-7b-triage-lora"]
    adapter = json.loads(ok(fresh, "models", "show", "acme/meditron-7b-triage-lora", "--json").stdout)
    assert (adapter["base_model"], adapter["relation"], adapter["adapter_rank"]) == (
        "epfl-llm/meditron-7b", "adapter", 8,
    )
    # CodeLlama 7B has three finetunes in the seed (SQLCoder, the Python variant, Llemma): not adapters.
    codellama = json.loads(ok(fresh, "models", "show", "codellama/CodeLlama-7b-hf", "--json").stdout)
    assert codellama["adapters"] == []
    text_out = ok(fresh, "models", "show", "epfl-llm/meditron-7b").stdout
    assert "adapters: acme/meditron-7b-triage-lora" in text_out


def test_show_local_model_without_repo_id_lists_no_adapters(fresh: Path) -> None:
    catalog = Catalog.at(fresh / "catalog.db")
    try:
        with catalog.sessions.begin() as s:
            upsert_model(
                s,
                ModelEntry(ref="my-local-model", name="Local", source="local",
                           local_path="/models/x", domains=["general"], languages=["en"]),
            )
            upsert_model(
                s,
                ModelEntry(ref="orphan-lora", name="Orphan LoRA", source="local",
                           relation="adapter", domains=["general"], languages=["en"]),
            )
    finally:
        catalog.close()
    shown = json.loads(ok(fresh, "models", "show", "my-local-model", "--json").stdout)
    assert shown["repo_id"] is None
    assert shown["adapters"] == []


def test_show_unknown_model_exits_1(seeded: Path) -> None:
    result = run(seeded, "models", "show", "nope")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "nope" in result.stderr


def test_remove_then_show_fails_and_search_no_longer_finds_it(fresh: Path) -> None:
    db_path = fresh / "catalog.db"
    ref = "LeoLM/leo-hessianai-7b"
    model_id = json.loads(ok(fresh, "models", "show", ref, "--json").stdout)["id"]
    assert _fts_rowids(db_path, "Tagesschau") == {model_id}

    result = ok(fresh, "models", "remove", ref)
    assert ref in result.stderr and result.stdout == ""

    assert run(fresh, "models", "show", ref).exit_code == 1
    assert ref not in refs(fresh)
    assert refs(fresh, "--search", "Tagesschau") == set()
    assert _fts_rowids(db_path, "Tagesschau") == set()
    with sqlite3.connect(db_path) as conn:
        for table in ("model_languages", "model_domains", "model_tags", "evals"):
            n = conn.execute(f"SELECT count(*) FROM {table} WHERE model_id = ?", (model_id,)).fetchone()[0]
            assert n == 0, table
    assert run(fresh, "models", "remove", ref).exit_code == 1


def test_upsert_reindexes_text(fresh: Path) -> None:
    db_path = fresh / "catalog.db"
    entry = read_entries()[0]
    entry.description = "Now about quokkas and nothing clinical at all."
    entry.tags = []
    catalog = Catalog.at(db_path)
    try:
        with catalog.sessions.begin() as s:
            model_id = upsert_model(s, entry).id
    finally:
        catalog.close()
    assert model_id in _fts_rowids(db_path, "quokkas")
    assert entry.ref in refs(fresh, "--search", "quokka")
    assert entry.ref not in refs(fresh, "--search", "pubmed")


# --- export ---------------------------------------------------------------------------------


def test_export_json_parses_back(seeded: Path) -> None:
    data = json.loads(ok(seeded, "models", "export", "--format", "json").stdout)
    assert len(data) == len(SEED)
    assert {m["ref"] for m in data} == set(BY_REF)


def test_export_csv_parses_back(seeded: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(ok(seeded, "models", "export", "--format", "csv").stdout)))
    assert len(rows) == len(SEED)
    by_ref = {r["ref"]: r for r in rows}
    assert set(by_ref) == set(BY_REF)
    sea_lion = by_ref["aisingapore/sea-lion-7b"]
    assert sea_lion["languages"].split(";") == sorted(BY_REF["aisingapore/sea-lion-7b"].languages)
    assert int(sea_lion["parameters"]) == 7_500_000_000
    # Descriptions with commas and quotes survive the round trip.
    assert by_ref["cognitivecomputations/Samantha-1.11-70b"]["description"] == (
        BY_REF["cognitivecomputations/Samantha-1.11-70b"].description
    )


def test_export_to_file(seeded: Path, tmp_path: Path) -> None:
    out = tmp_path / "models.csv"
    result = ok(seeded, "models", "export", "--format", "csv", "-o", str(out))
    assert result.stdout == ""
    assert f"wrote {len(SEED)} models" in result.stderr
    with out.open(newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == len(SEED)


# --- domains / languages --------------------------------------------------------------------


def test_domains_counts_parents_include_children(seeded: Path) -> None:
    rows = json.loads(ok(seeded, "domains", "--json").stdout)
    counts = {r["domain"]: r["models"] for r in rows}
    from catalog.taxonomy import DOMAINS

    assert list(counts) == list(DOMAINS)
    for slug in DOMAINS:
        assert counts[slug] == len(
            expected(lambda e, slug=slug: any(d == slug or d.startswith(slug + "/") for d in e.domains))
        ), slug
    code_children = expected(lambda e: bool({"code/sql", "code/python"} & set(e.domains)))
    assert counts["code"] >= len(code_children)
    assert counts["code"] > counts["code/sql"] and counts["code"] > counts["code/python"]
    # BioMistral has both medicine and medicine/biomedical: counted once under medicine.
    assert counts["medicine"] == len(expected(lambda e: any(d.startswith("medicine") for d in e.domains)))


def test_languages_counts(seeded: Path) -> None:
    data = json.loads(ok(seeded, "languages", "--json").stdout)
    counts = {r["language"]: r["models"] for r in data["languages"]}
    names = {r["language"]: r["name"] for r in data["languages"]}
    for code in {c for e in SEED for c in e.languages}:
        assert counts[code] == len(expected(lambda e, code=code: code in e.languages)), code
    assert names["pl"] == "Polish" and names["fil"] == "Filipino"
    assert "fil" in data["groups"]["sea"]
    ordered = [r["models"] for r in data["languages"]]
    assert ordered == sorted(ordered, reverse=True)


# --- seed files -----------------------------------------------------------------------------

GOOD_ENTRY = """
[[model]]
repo_id = "acme/good-7b"
name = "Good 7B"
description = "A perfectly valid seed entry for tests."
parameters = 7_000_000_000
license = "apache-2.0"
domains = ["general"]
languages = ["en"]
"""


def test_seed_file_with_a_bad_language_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(GOOD_ENTRY.replace('languages = ["en"]', 'languages = ["English"]'))
    with pytest.raises(SeedError, match=r"model\[0\]\.languages\[0\]"):
        read_entries(path)


def test_seed_file_with_an_unknown_but_well_formed_code_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(GOOD_ENTRY + GOOD_ENTRY.replace("good-7b", "other-7b").replace('["en"]', '["en", "zz"]')
                    .replace('["general"]', '["general", "astrology"]'))
    with pytest.raises(SeedError) as info:
        read_entries(path)
    assert "model[1].languages[1]" in str(info.value) and "'zz'" in str(info.value)
    assert "model[1].domains[1]" in str(info.value) and "'astrology'" in str(info.value)
    assert "model[0]" not in str(info.value)


def test_seed_file_missing_field_and_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(GOOD_ENTRY.replace('description = ', 'summary = '))
    with pytest.raises(SeedError, match=r"model\[0\]\..*description"):
        read_entries(path)
    path.write_text("[[model]\nname = ")
    with pytest.raises(SeedError, match="not valid TOML"):
        read_entries(path)


def test_seed_file_rejects_a_duplicate_repo_id(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(GOOD_ENTRY + GOOD_ENTRY)
    with pytest.raises(SeedError, match=r"model\[1\]\.repo_id: 'acme/good-7b' appears twice"):
        read_entries(path)


def test_good_seed_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(GOOD_ENTRY)
    (entry,) = read_entries(path)
    assert (entry.ref, entry.repo_id, entry.source, entry.parameters) == (
        "acme/good-7b", "acme/good-7b", "seed", 7_000_000_000,
    )
