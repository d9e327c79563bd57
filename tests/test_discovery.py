"""`almanac models discover` and `models refresh` against a real HTTP server on 127.0.0.1
that answers like the Hub's model API and refuses what it refuses (tests/hub_standin.py),
pointed at with HF_ENDPOINT. Nothing of huggingface_hub is replaced: what reaches the
stand-in is what the Hub would receive."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from almanac.cli import cli
from tests.hub_standin import HubStandIn, Served, documented_expand, hub_model

REPO_ROOT = Path(__file__).resolve().parents[1]
LLAMA3 = "meta-llama/Meta-Llama-3-8B"


def _models() -> list[dict[str, Any]]:
    return [
        hub_model("acme/clinical-7b", sha="a1" * 20, tags=["medical", "clinical"], languages=["en", "pl"],
                  parameters=6_738_415_616, license="llama2", base_model="meta-llama/Llama-2-7b-hf",
                  relation="finetune", gated="manual", downloads=5_000, likes=40,
                  evals=[("MedMCQA", "accuracy", 0.512)]),
        hub_model("lexis/thai-legal-13b", sha="b2" * 20, tags=["legal"], languages=["th"],
                  parameters=13_015_864_320, downloads=900, likes=12),
        hub_model("acme/sql-lora", sha="c3" * 20, tags=["text-to-sql", "lora", "peft"], languages=["en"],
                  parameters=3_407_872, pipeline_tag=None, base_model=LLAMA3, relation="adapter",
                  downloads=700, likes=9),
        hub_model("quant/finance-350m", sha="d4" * 20, tags=["finance"], languages=["en"],
                  parameters=350_000_000, downloads=300, likes=2),
        hub_model("chat/general-8b", sha="e5" * 20, tags=[], languages=["en"],
                  parameters=8_030_261_248, downloads=100_000, likes=800),
        # A seed model, as the Hub describes it: its curated facts must survive.
        hub_model("epfl-llm/meditron-7b", sha="f6" * 20, tags=["medical"], languages=["en"],
                  parameters=6_738_554_880, license="llama2", gated="auto", downloads=12_345, likes=300),
    ]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    stand_in = HubStandIn()
    stand_in.add(*_models())
    stand_in.readmes["acme/clinical-7b"] = "---\nlicense: llama2\n---\n\nA clinical assistant for Polish wards.\n"
    with Served(stand_in) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield stand_in


def almanac(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def ok_json(home: Path, *args: str) -> Any:
    result = almanac(home, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def show(home: Path, ref: str) -> dict[str, Any]:
    return ok_json(home, "models", "show", ref)


def dump(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                              "AND name NOT LIKE 'models_fts_%' AND name != 'alembic_version'")]
        # Sorted in Python: a table of one column (search_terms) has no second ORDER BY term.
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in sorted(tables)}


# -- filters reach the Hub ------------------------------------------------------------------------


def test_every_filter_is_sent_to_the_hub_and_nothing_is_listed_whole(hub: HubStandIn, home: Path) -> None:
    ok_json(home, "models", "discover", "--domain", "law", "--language", "th", "--min-params", "7B",
            "--max-params", "70B", "--search", "legal", "--sort", "likes", "--limit", "5")

    sent = hub.listings()
    # The Hub ANDs one request's filters; a domain is several Hub tags: one request each.
    assert sorted(tuple(r.query["filter"]) for r in sent) == [("law", "th"), ("legal", "th")]
    for request in sent:
        assert request.query["pipeline_tag"] == ["text-generation"]
        assert request.query["num_parameters"] == ["min:7B,max:70B"]
        assert request.query["search"] == ["legal"]
        assert request.query["sort"] == ["likes"]
        assert request.query["limit"] == ["5"]
        assert {"cardData", "safetensors", "tags", "gated", "downloads", "likes"} <= set(request.query["expand"])
        assert set(request.query["expand"]) <= documented_expand("list_models")  # else the Hub says 400
    assert [m["ref"] for m in ok_json(home, "models", "list", "--source", "hub")] == ["lexis/thai-legal-13b"]


def test_a_language_group_asks_once_per_member_and_merges_by_the_sort(hub: HubStandIn, home: Path) -> None:
    hub.add(hub_model("sea/vi-chat", sha="11" * 20, tags=[], languages=["vi"], parameters=7 * 10**9,
                      downloads=50, likes=1))
    found = ok_json(home, "models", "discover", "--language", "sea", "--dry-run")

    languages = sorted(r.query["filter"][0] for r in hub.listings())
    assert languages == sorted(["id", "ms", "th", "vi", "fil", "tl", "my", "km", "lo", "ta", "jv", "su"])
    assert [m["ref"] for m in found["models"]] == ["lexis/thai-legal-13b", "sea/vi-chat"]  # most downloaded first


def test_adapters_of_a_base_asks_the_model_tree_and_records_the_lineage(hub: HubStandIn, home: Path) -> None:
    found = ok_json(home, "models", "discover", "--adapters-of", LLAMA3)

    (request,) = hub.listings()
    assert request.query["filter"] == [f"base_model:adapter:{LLAMA3}"]
    assert "pipeline_tag" not in request.query  # adapters rarely declare one
    assert [m["ref"] for m in found["models"]] == ["acme/sql-lora"]
    lora = show(home, "acme/sql-lora")
    assert (lora["base_model"], lora["relation"], lora["parameters"]) == (LLAMA3, "adapter", 3_407_872)
    assert lora["domains"] == ["code/sql"]


def test_adapters_of_a_catalog_model_uses_its_repo_id_and_the_base_lists_them(hub: HubStandIn, home: Path) -> None:
    hub.add(hub_model(LLAMA3, sha="99" * 20, tags=[], languages=["en"], parameters=8_030_261_248, downloads=10**7))
    ok_json(home, "models", "discover", "--search", "Meta-Llama-3-8B")

    ok_json(home, "models", "discover", "--adapters-of", "Meta-Llama-3-8B")  # found by its name

    assert hub.listings()[-1].query["filter"] == [f"base_model:adapter:{LLAMA3}"]
    assert show(home, LLAMA3)["adapters"] == ["acme/sql-lora"]


def test_bad_filters_are_refused_before_the_hub_is_asked(hub: HubStandIn, home: Path) -> None:
    everything = ["--domain", "medicine", *(x for g in ("sea", "cjk", "iberian", "nordic") for x in ("--language", g))]
    bad = ((["--domain", "astrology"], "--domain"), (["--language", "xx-klingon"], "--language"),
           (["--min-params", "lots"], "--min-params"), (["--adapters-of", "not a repo"], "--adapters-of"),
           (everything, "--domain/--language"))  # 8 tags x 27 codes: too many listings
    for args, option in bad:
        result = almanac(home, "models", "discover", *args)
        assert result.exit_code == 2, (args, result.output)
        assert option in result.stderr
    assert hub.requests == []


# -- mapping and idempotence -------------------------------------------------------------------------


def test_discovered_models_carry_size_license_lineage_gating_popularity_and_card_evals(hub: HubStandIn,
                                                                                      home: Path) -> None:
    found = ok_json(home, "models", "discover", "--domain", "medicine")

    assert found["added"] == 2 and found["refused"] == []
    model = show(home, "acme/clinical-7b")
    assert model["source"] == "hub" and model["revision"] == "a1" * 20
    assert model["parameters"] == 6_738_415_616 and model["dtype"] == "bfloat16"
    assert model["license"] == "llama2"
    assert model["domains"] == ["medicine"] and model["languages"] == ["en", "pl"]
    assert (model["base_model"], model["relation"]) == ("meta-llama/Llama-2-7b-hf", "finetune")
    assert model["gated"] is True
    assert (model["downloads"], model["likes"]) == (5_000, 40)
    assert [(e["benchmark"], e["metric"], e["value"]) for e in model["evals"]] == [("MedMCQA", "accuracy", 0.512)]
    assert model["refreshed_at"] is not None
    assert [m["ref"] for m in ok_json(home, "models", "list", "--domain", "medicine", "--language", "pl")] == [
        "acme/clinical-7b"]


def test_discovering_again_refreshes_without_duplicates(hub: HubStandIn, home: Path) -> None:
    first = ok_json(home, "models", "discover", "--task", "any")
    hub.models["acme/clinical-7b"]["downloads"] = 6_000
    hub.models["lexis/thai-legal-13b"]["cardData"]["license"] = "mit"

    second = ok_json(home, "models", "discover", "--task", "any")

    assert first["added"] == len(hub.models) and second["added"] == 0
    actions = {m["ref"]: m["action"] for m in second["models"]}
    assert actions["acme/clinical-7b"] == "unchanged"  # a new download count is not a new fact
    assert actions["lexis/thai-legal-13b"] == "updated"
    assert show(home, "acme/clinical-7b")["downloads"] == 6_000
    assert show(home, "lexis/thai-legal-13b")["license"] == "mit"
    assert len(ok_json(home, "models", "list")) == len(hub.models)


def test_curated_facts_survive_discovery(hub: HubStandIn, home: Path) -> None:
    assert almanac(home, "init").exit_code == 0
    seeded = show(home, "epfl-llm/meditron-7b")
    add = almanac(home, "models", "add", "acme/clinical-7b", "--domain", "psychology")
    assert add.exit_code == 0, add.stderr

    ok_json(home, "models", "discover", "--domain", "medicine")

    meditron = show(home, "epfl-llm/meditron-7b")
    for kept in ("source", "name", "description", "domains", "languages", "architecture", "base_model"):
        assert meditron[kept] == seeded[kept], kept
    assert set(seeded["tags"]) <= set(meditron["tags"])
    assert (meditron["downloads"], meditron["revision"], meditron["gated"]) == (12_345, "f6" * 20, True)
    clinical = show(home, "acme/clinical-7b")
    assert clinical["domains"] == ["psychology"] and clinical["curated"] == ["domains"]
    again = json.loads(almanac(home, "init", "--json").stdout)["seed"]
    assert again["added"] == 0  # and the seed load keeps what the Hub filled in
    assert show(home, "epfl-llm/meditron-7b")["downloads"] == 12_345


def test_dry_run_shows_what_would_change_and_writes_nothing(hub: HubStandIn, home: Path) -> None:
    assert almanac(home, "init").exit_code == 0
    before = dump(home / "catalog.db")

    found = ok_json(home, "models", "discover", "--domain", "medicine", "--dry-run")
    text = almanac(home, "models", "discover", "--domain", "medicine", "--dry-run")

    assert found["dry_run"] is True
    assert {m["ref"]: m["action"] for m in found["models"]} == {
        "epfl-llm/meditron-7b": "updated", "acme/clinical-7b": "added"}
    assert "would be added     acme/clinical-7b" in text.stdout
    assert dump(home / "catalog.db") == before


def test_an_interrupted_discovery_keeps_its_batches_and_a_rerun_completes_them(hub: HubStandIn,
                                                                               home: Path) -> None:
    from huggingface_hub import HfApi

    from catalog.db import Catalog
    from catalog.hubhttp import HubError
    from catalog.hubquery import DiscoverQuery
    from catalog.hubsync import discover

    hub.page_size = 2  # three pages of two; the second is refused for good (the token, say)
    hub.fail_next("/api/models", 401, after=1,
                  body=b'{"error":"Invalid credentials in Authorization header"}')
    query = DiscoverQuery(task=None, limit=100)
    catalog = Catalog.at(home / "catalog.db")
    try:
        with pytest.raises(HubError, match="401 Unauthorized: Invalid credentials"):
            discover(catalog, HfApi(endpoint=hub.url, token=False), query, batch=2)
        assert len(ok_json(home, "models", "list")) == 2  # the first batch stayed
        report = discover(catalog, HfApi(endpoint=hub.url, token=False), query, batch=2)
    finally:
        catalog.close()
    assert (report.count("added"), report.count("unchanged")) == (len(hub.models) - 2, 2)
    assert len(ok_json(home, "models", "list")) == len(hub.models)


# -- the Hub saying no ----------------------------------------------------------------------------


def test_a_rate_limited_listing_waits_and_goes_on(hub: HubStandIn, home: Path) -> None:
    hub.fail_next("/api/models", 429, headers={"Retry-After": "0"})

    found = ok_json(home, "models", "discover", "--domain", "finance")

    finance = [r for r in hub.listings() if r.query["filter"] == ["finance"]]
    assert len(finance) == 2  # refused once, asked again (also asked: the other finance tags)
    assert [m["ref"] for m in found["models"]] == ["quant/finance-350m"]


def test_a_listing_refused_again_and_again_waits_each_time_the_hub_asks(hub: HubStandIn,
                                                                        home: Path) -> None:
    hub.fail_next("/api/models", 429, times=6, headers={"RateLimit": '"api";r=0;t=0'})

    found = ok_json(home, "models", "discover", "--domain", "finance")

    finance = [r for r in hub.listings() if r.query["filter"] == ["finance"]]
    assert len(finance) == 7
    assert found["added"] == 1


def test_a_refused_model_is_reported_and_the_others_refresh(hub: HubStandIn, home: Path) -> None:
    ok_json(home, "models", "discover", "--task", "any")
    hub.refuse.add("lexis/thai-legal-13b")
    hub.models["chat/general-8b"]["likes"] = 801

    result = almanac(home, "models", "refresh", "--json")

    assert result.exit_code == 3  # finished, with a model skipped
    report = json.loads(result.stdout)
    assert [r["repo_id"] for r in report["refused"]] == ["lexis/thai-legal-13b"]
    assert "no such model on the Hub" in report["refused"][0]["reason"]
    assert "401 Unauthorized: Invalid username or password." in report["refused"][0]["reason"]
    assert report["unchanged"] + report["updated"] == len(hub.models) - 1
    assert show(home, "chat/general-8b")["likes"] == 801
    assert "skipped: lexis/thai-legal-13b: no such model" in result.stderr


def test_refresh_rate_limited_on_one_model_waits_and_asks_again(hub: HubStandIn, home: Path) -> None:
    ok_json(home, "models", "discover", "--task", "any")
    hub.fail_next("/api/models/acme/clinical-7b", 429, times=2, headers={"Retry-After": "0"})

    report = ok_json(home, "models", "refresh", "acme/clinical-7b")

    asked = [r for r in hub.requests if r.path == "/api/models/acme/clinical-7b"]
    assert len(asked) == 3 and report["refused"] == []


def _subprocess(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    base.update(PYTHONPATH=str(REPO_ROOT), HF_HOME=str(home.parent / "hf-home"), **env)
    return subprocess.run([sys.executable, "-m", "almanac", "--home", str(home), "models", *args],
                          env=base, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["discover", "--domain", "medicine"], ["refresh"]])
def test_offline_is_one_clear_error_and_nothing_changes(hub: HubStandIn, home: Path, command: list[str]) -> None:
    assert almanac(home, "init").exit_code == 0
    before = dump(home / "catalog.db")

    proc = _subprocess(home, *command, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1")

    assert proc.returncode == 1 and proc.stdout == ""
    assert "offline mode is on (HF_HUB_OFFLINE)" in proc.stderr and "Traceback" not in proc.stderr
    assert hub.requests == []
    assert dump(home / "catalog.db") == before


def test_an_unreachable_hub_stops_a_refresh_with_one_clear_error(home: Path) -> None:
    assert almanac(home, "init").exit_code == 0
    before = dump(home / "catalog.db")

    proc = _subprocess(home, "refresh", HF_ENDPOINT="http://127.0.0.1:9")

    assert proc.returncode == 1 and "cannot reach the Hub at http://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert dump(home / "catalog.db") == before


def test_the_token_in_hf_token_is_sent(hub: HubStandIn, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_standin_token")

    ok_json(home, "models", "discover", "--domain", "finance", "--dry-run")

    assert hub.listings()[0].headers.get("authorization") == "Bearer hf_standin_token"


# -- the Done-when of the listing contract ---------------------------------------------------------


def test_polish_medical_models_are_discovered_from_the_strict_hub_with_their_lineage(hub: HubStandIn,
                                                                                     home: Path) -> None:
    hub.add(hub_model("speakleash/med-bielik-7b", sha="77" * 20, tags=["medical"], languages=["pl"],
                      parameters=7_241_732_096, base_model="speakleash/Bielik-7B-v0.1", relation="finetune",
                      downloads=50))

    found = almanac(home, "models", "discover", "--domain", "medicine", "--language", "pl", "--json")

    assert found.exit_code == 0, found.stderr
    assert sorted(m["ref"] for m in json.loads(found.stdout)["models"]) == [
        "acme/clinical-7b", "speakleash/med-bielik-7b"]
    assert all("baseModels" not in r.query["expand"] for r in hub.listings())
    bielik = show(home, "speakleash/med-bielik-7b")
    assert (bielik["base_model"], bielik["relation"]) == ("speakleash/Bielik-7B-v0.1", "finetune")
    assert [r.path for r in hub.requests if r.path.startswith("/api/models/")] == []  # the tags sufficed


def test_a_card_base_the_tags_do_not_explain_is_asked_of_that_model_alone(hub: HubStandIn, home: Path) -> None:
    quant = hub_model("quant/clinical-7b-awq", sha="88" * 20, tags=["medical"], languages=["en"],
                      parameters=1_100_000_000, downloads=20)
    quant["cardData"]["base_model"] = "acme/clinical-7b"  # the card names it; no model-tree tag
    quant["baseModels"] = {"relation": "quantized", "models": [{"id": "acme/clinical-7b"}]}
    hub.add(quant)

    ok_json(home, "models", "discover", "--domain", "medicine", "--task", "any")

    asked = [r for r in hub.requests if r.path.startswith("/api/models/")]
    assert [(r.path, r.query["expand"]) for r in asked] == [("/api/models/quant/clinical-7b-awq", ["baseModels"])]
    model = show(home, "quant/clinical-7b-awq")
    assert (model["base_model"], model["relation"]) == ("acme/clinical-7b", "quantized")


# -- garbled answers: one line each, the rest go on ----------------------------------------------

JSON_HEADERS = {"Content-Type": "application/json"}


def _item(repo_id: str, **changes: Any) -> dict[str, Any]:
    """A listing item as the Hub shapes it (expand: `_id`, `id` and the asked fields)."""
    data = hub_model(repo_id, sha="ab" * 20, tags=["finance"], languages=["en"], parameters=10**9)
    return {**data, **changes}


@pytest.mark.parametrize(("item", "said"), [
    ({k: v for k, v in _item("x/no-id").items() if k != "id"}, "item 2 of page 1 of the listing all models: "
                                                                "the Hub's answer does not fit: no `id`"),
    (_item("x/no-total", safetensors={"parameters": {"BF16": 5}}), "x/no-total: the Hub's answer does not "
                                                                   "fit: safetensors has no `total`"),
    (_item("x/tags-string", tags="finance"), "x/tags-string: the Hub's answer does not fit: tags: 'finance' "
                                             "is not a list of strings"),
    (_item("x/one-string", cardData={"language": "en, pl"}), "x/one-string: the Hub's answer does not fit: "
                                                             "cardData.language: 'en, pl' is not a language code"),
], ids=["no-id", "safetensors-without-total", "tags-string", "card-language-string"])
def test_a_garbled_listing_item_is_one_line_and_the_others_are_imported(hub: HubStandIn, home: Path,
                                                                       item: dict[str, Any], said: str) -> None:
    page = [_item("x/good-1"), item, _item("x/good-2")]
    hub.fail_next("/api/models", 200, body=json.dumps(page).encode(), headers=JSON_HEADERS)

    result = almanac(home, "models", "discover", "--task", "any", "--json")

    assert result.exit_code == 3
    assert "Traceback" not in result.output
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and said in skipped[0], result.stderr
    assert sorted(m["ref"] for m in ok_json(home, "models", "list")) == ["x/good-1", "x/good-2"]


@pytest.mark.parametrize(("body", "kind"), [
    (b"<!DOCTYPE html><html><body>We're sorry, something went wrong.</body></html>", "text/html"),
    (json.dumps([_item("x/cut")]).encode()[:-40], "application/json"),
], ids=["html-page-with-200", "truncated-json"])
def test_a_listing_page_that_is_not_json_is_one_line_and_the_other_listings_go_on(
        hub: HubStandIn, home: Path, body: bytes, kind: str) -> None:
    hub.add(hub_model("bank/fintech-1b", sha="99" * 20, tags=["fintech"], languages=["en"], parameters=10**9))
    hub.fail_next("/api/models", 200, body=body, headers={"Content-Type": kind})  # the first listing's page

    result = almanac(home, "models", "discover", "--domain", "finance")  # three listings: three tags

    assert result.exit_code == 3 and "Traceback" not in result.output
    (skipped,) = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert "the listing filter=finance " in skipped and "the Hub's answer is not JSON" in skipped
    assert f"200, {kind}" in skipped
    assert len(hub.listings()) == 3
    assert [m["ref"] for m in ok_json(home, "models", "list")] == ["bank/fintech-1b"]


def test_a_rate_limit_asking_for_days_is_reported_not_waited(hub: HubStandIn, home: Path) -> None:
    hub.fail_next("/api/models", 429, headers={"RateLimit": '"api";r=0;t=999999999'})

    result = almanac(home, "models", "discover", "--search", "finance")

    assert result.exit_code == 3
    (skipped,) = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert "asks to wait 999,999,999 s, longer than the 300 s Almanac waits" in skipped
    assert len(hub.listings()) == 1  # not asked again


def test_transient_failures_are_asked_again_with_growing_pauses_then_reported(hub: HubStandIn,
                                                                             home: Path) -> None:
    from huggingface_hub import HfApi

    from catalog.db import Catalog
    from catalog.hubquery import DiscoverQuery
    from catalog.hubsync import discover

    api = HfApi(endpoint=hub.url, token=False)
    query = DiscoverQuery(search="finance", task=None)
    waits: list[float] = []
    catalog = Catalog.at(home / "catalog.db")
    try:
        hub.fail_next("/api/models", 502)
        hub.cut_next("/api/models")  # a connection reset halfway through the answer
        first = discover(catalog, api, query, sleep=waits.append)
        assert (waits, first.count("added"), first.refused) == ([1.0, 2.0], 1, [])
        waits.clear()
        hub.fail_next("/api/models", 503, times=4)
        second = discover(catalog, api, query, sleep=waits.append)
    finally:
        catalog.close()
    assert waits == [1.0, 2.0, 4.0]  # four tries in all
    (refusal,) = second.refused
    assert "503 Service Unavailable: scripted 503" in refusal.reason and refusal.listing == "search=finance"


def test_refresh_skips_a_garbled_model_and_refreshes_the_others(hub: HubStandIn, home: Path) -> None:
    ok_json(home, "models", "discover", "--task", "any")
    for repo_id in hub.models:
        hub.models[repo_id]["likes"] = 7
    truncated = json.dumps(hub.models["lexis/thai-legal-13b"]).encode()[:-25]
    hub.fail_next("/api/models/lexis/thai-legal-13b", 200, body=truncated, headers=JSON_HEADERS)
    before = show(home, "lexis/thai-legal-13b")

    result = almanac(home, "models", "refresh")

    assert result.exit_code == 3 and "Traceback" not in result.output
    (skipped,) = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert skipped.startswith("skipped: lexis/thai-legal-13b: the Hub's answer is not JSON")
    assert show(home, "lexis/thai-legal-13b") == before
    assert {show(home, r)["likes"] for r in hub.models if r != "lexis/thai-legal-13b"} == {7}


def test_a_refusal_keeps_the_hubs_whole_reason_and_never_the_token(hub: HubStandIn, home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_standin")
    hub.fail_next("/api/models", 400, body=b'{"error": "Invalid filter: \\"num_parameters\\" is malformed"}',
                  headers=JSON_HEADERS)

    result = almanac(home, "models", "discover", "--search", "finance")

    (skipped,) = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert ('the Hub refused the listing search=finance pipeline_tag=text-generation: 400 Bad Request: '
            'Invalid filter: "num_parameters" is malformed (GET ' + hub.url + '/api/models?search=finance') in skipped
    assert "hf_secret_standin" not in result.output


# -- context length: config.json, once per revision ------------------------------------------------


def test_refresh_reads_the_context_length_from_config_json_once_per_revision(hub: HubStandIn,
                                                                             home: Path) -> None:
    hub.configs["lexis/thai-legal-13b"] = {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096,
                                           "rope_scaling": None, "torch_dtype": "bfloat16"}
    ok_json(home, "models", "discover", "--search", "thai-legal")
    assert show(home, "lexis/thai-legal-13b")["context_length"] is None  # a listing carries no config.json

    ok_json(home, "models", "refresh", "lexis/thai-legal-13b")
    ok_json(home, "models", "refresh", "lexis/thai-legal-13b")
    hub.models["lexis/thai-legal-13b"]["sha"] = "b3" * 20
    hub.configs["lexis/thai-legal-13b"]["max_position_embeddings"] = 8192
    ok_json(home, "models", "refresh", "lexis/thai-legal-13b")

    fetched = [r.path for r in hub.requests if r.path.endswith("/config.json")]
    assert fetched == [f"/lexis/thai-legal-13b/resolve/{'b2' * 20}/config.json",
                       f"/lexis/thai-legal-13b/resolve/{'b3' * 20}/config.json"]
    assert show(home, "lexis/thai-legal-13b")["context_length"] == 8192


def test_a_hub_gone_halfway_through_a_refresh_keeps_what_was_refreshed_before(home: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import close_session

    from catalog.db import Catalog
    from catalog.hubhttp import HubError
    from catalog.hubsync import due, refresh

    stand_in = HubStandIn()
    stand_in.add(*_models())
    with Served(stand_in) as served:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HF_ENDPOINT", served.url)
            ok_json(home, "models", "discover", "--task", "any")
        for data in stand_in.models.values():
            data["likes"] = 1234
        catalog = Catalog.at(home / "catalog.db")
        with catalog.sessions() as s:
            order = [d.repo_id for d in due(s)]
        stand_in.fail_next(f"/api/models/{order[2]}", 429, headers={"Retry-After": "1"})

        def gone(_seconds: float) -> None:  # the Hub goes away while we wait
            served.server.shutdown()
            served.server.server_close()
            close_session()  # and the client's open connections with it

        try:
            with pytest.raises(HubError, match="cannot reach the Hub") as raised:
                refresh(catalog, HfApi(endpoint=served.url, token=False), sleep=gone)
        finally:
            catalog.close()
    assert raised.value.fatal
    likes = {m["ref"]: m["likes"] for m in ok_json(home, "models", "list")}
    assert sorted(ref for ref, n in likes.items() if n == 1234) == sorted(order[:2])
