"""The Hub as it is: Almanac asks only what huggingface_hub documents the Hub accepts, the
stand-in answers as strictly as the Hub (tests/hub_standin.py), and real answers recorded
from the Hub (tests/fixtures/hub/, provenance.json) map onto catalog entries."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi
from huggingface_hub.hf_api import ExpandModelProperty_T

from almanac.cli import cli
from catalog.hubapi import MODEL_EXPAND, fetch_entry, list_models
from catalog.hubhttp import HubHTTP
from catalog.hubquery import LIST_EXPAND, DiscoverQuery
from tests.hub_standin import FIXTURES, HubStandIn, Served, documented_expand, hub_model, recorded

PROVENANCE = json.loads((FIXTURES / "provenance.json").read_text())


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    bodies, renames = recorded()
    stand_in = HubStandIn(renamed=renames)
    stand_in.add(*bodies)
    with Served(stand_in) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield stand_in


def api(hub: HubStandIn) -> HfApi:
    return HfApi(endpoint=hub.url, token=False)


# -- what is asked --------------------------------------------------------------------------------


def test_listings_ask_only_for_the_expand_values_list_models_documents() -> None:
    listing, one_model = documented_expand("list_models"), documented_expand("model_info")
    every = set(get_args(ExpandModelProperty_T))
    # The documentation was read, and it draws the line the Hub draws (PR 3182).
    assert {"cardData", "safetensors", "tags", "gguf"} <= listing <= every
    assert {"baseModels", "childrenModelCount", "usedStorage"} <= (one_model - listing)

    assert set(LIST_EXPAND) <= listing, set(LIST_EXPAND) - listing
    assert set(MODEL_EXPAND) <= one_model, set(MODEL_EXPAND) - one_model


def test_a_listing_is_the_request_list_models_would_send(hub: HubStandIn) -> None:
    query = DiscoverQuery(domains=["law"], languages=["th"], min_params=7 * 10**9, search="legal",
                          sort="trending", limit=5)
    (kwargs,) = [q for q in query.hub_queries() if q["filter"][0] == "law"]

    list(api(hub).list_models(**kwargs, expand=LIST_EXPAND))
    list(list_models(HubHTTP(api(hub)), DiscoverQuery(domains=["law"], languages=["th"], min_params=7 * 10**9,
                                                       search="legal", sort="trending", limit=5)))

    theirs, *ours = hub.listings()
    assert ours and ours[0].query == theirs.query
    assert theirs.query["sort"] == ["trendingScore"] and theirs.query["num_parameters"] == ["min:7B"]


# -- the stand-in is as strict as the Hub --------------------------------------------------------


def test_the_stand_in_refuses_on_a_listing_what_the_hub_refuses(hub: HubStandIn) -> None:
    for value in ("baseModels", "childrenModelCount", "usedStorage"):
        answer = httpx.get(f"{hub.url}/api/models", params={"expand": ["sha", value]})
        assert answer.status_code == 400 and value in answer.json()["error"]
    clash = httpx.get(f"{hub.url}/api/models", params={"expand": "sha", "full": "true"})
    assert clash.status_code == 400
    one = httpx.get(f"{hub.url}/api/models/openai-community/gpt2", params={"expand": ["baseModels", "sha"]})
    assert one.status_code == 200 and set(one.json()) == {"_id", "id", "sha"}


def test_the_stand_in_answers_unknown_renamed_and_paged_as_recorded(hub: HubStandIn) -> None:
    anonymous = httpx.get(f"{hub.url}/api/models/nobody/none")
    with_token = httpx.get(f"{hub.url}/api/models/nobody/none", headers={"Authorization": "Bearer hf_x"})
    assert (anonymous.status_code, anonymous.headers["X-Error-Code"]) == (401, "RepoNotFound")
    assert (with_token.status_code, with_token.headers["X-Error-Code"]) == (404, "RepoNotFound")

    for redirect in PROVENANCE["redirects"]:  # the 307s recorded from the Hub
        answer = httpx.get(f"{hub.url}/api/models/{redirect['from']}")
        assert (answer.status_code, answer.headers["Location"], answer.text) == (
            307, redirect["location"], redirect["body"])
        assert answer.headers["Content-Type"] == redirect["content_type"]

    (recorded_expanded,) = PROVENANCE["expanded"]
    expected = json.loads((FIXTURES / recorded_expanded["file"]).read_text())
    hub.models[expected["id"]]["inferenceProviderMapping"] = expected["inferenceProviderMapping"]
    asked = httpx.get(f"{hub.url}/api/models/{expected['id']}", params={"expand": "inferenceProviderMapping"})
    assert asked.json() == expected  # `_id`, `id` and what was asked, nothing else

    hub.page_size, pages, ids = 5, [], []
    url: str | None = f"{hub.url}/api/models?expand=sha"
    while url:
        page = httpx.get(url)
        pages.append(len(page.json()))
        ids += [m["id"] for m in page.json()]
        url = page.links.get("next", {}).get("url")
    assert pages == [5, 5, 2] and sorted(ids) == sorted(hub.models)


# -- recorded answers -----------------------------------------------------------------------------


def test_the_recorded_answers_are_byte_for_byte_what_provenance_names() -> None:
    listed = [entry["file"] for entry in (*PROVENANCE["bodies"], *PROVENANCE["expanded"])]
    on_disk = sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "provenance.json")
    assert sorted(listed) == on_disk
    assert PROVENANCE["repository"] == "huggingface/huggingface_hub" and len(PROVENANCE["commit"]) == 40
    for entry in (*PROVENANCE["bodies"], *PROVENANCE["expanded"]):
        assert entry["path"].startswith("tests/cassettes/") and entry["request"].startswith("GET https://")
        assert hashlib.sha256((FIXTURES / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]


EN_FR_RO_DE = ["en", "fr", "ro", "de"]
LLAMA_31 = ["en", "de", "fr", "it", "pt", "hi", "es", "th"]
# repo id: parameters, license, gated, languages, (base model, relation), pipeline tag, card evals
# (how many, the first), revision. Read off each recorded body by hand.
EXPECTED: dict[str, tuple[Any, ...]] = {
    "meta-llama/Llama-3.1-8B-Instruct": (8_030_261_248, "llama3.1", True, LLAMA_31,
                                         ("meta-llama/Llama-3.1-8B", "finetune"), "text-generation", 0, None,
                                         "0e9e39f249a16976918f6564b8830bc894c89659"),
    "meta-llama/Meta-Llama-3-70B-Instruct": (70_553_706_496, "llama3", True, ["en"],
                                             ("meta-llama/Meta-Llama-3-70B", "finetune"), "text-generation", 0,
                                             None, "28bd9fa9"),
    "meta-llama/Meta-Llama-3-8B-Instruct": (8_030_261_248, "llama3", True, ["en"], (None, None),
                                            "text-generation", 0, None, "5f0b02c7"),
    "HuggingFaceH4/zephyr-7b-beta": (7_241_732_096, "mit", False, ["en"], ("mistralai/Mistral-7B-v0.1", "finetune"),
                                     "text-generation", 9, ("AI2 Reasoning Challenge (25-Shot) (ARC-Challenge)",
                                                            "normalized accuracy", 62.03071672354948), "892b3d7a"),
    "HuggingFaceH4/zephyr-orpo-141b-A35b-v0.1": (140_620_634_112, "apache-2.0", False, [],
                                                 ("mistral-community/Mixtral-8x22B-v0.1", "finetune"),
                                                 "text-generation", 0, None, "a3be0845"),  # model-index: no results
    "google/flan-t5-xxl": (11_266_928_640, "apache-2.0", False, EN_FR_RO_DE, (None, None), "text2text-generation",
                           0, None, "ae7c9136"),
    "google-t5/t5-small": (60_506_880, "apache-2.0", False, EN_FR_RO_DE, (None, None), "translation", 0, None,
                           "df1b051c"),
    "google-bert/bert-base-uncased": (110_106_428, "apache-2.0", False, ["en"], (None, None), "fill-mask", 0, None,
                                      "86b5e093"),
    "deepset/roberta-base-squad2": (124_057_092, "cc-by-4.0", False, ["en"], ("FacebookAI/roberta-base", "finetune"),
                                    "question-answering", 17, ("squad_v2", "Exact Match", 79.9309), "adc3b06f"),
    "facebook/mbart-large-50-many-to-many-mmt": (611_129_542, None, False, 52, (None, None), "translation", 0, None,
                                                 "e30b6cb8"),
    "dbmdz/bert-large-cased-finetuned-conll03-english": (333_588_489, None, False, [], (None, None),
                                                         "token-classification", 0, None, "4c534963"),  # no card
    "openai-community/gpt2": (137_022_720, "mit", False, ["en"], (None, None), "text-generation", 0, None,
                              "607a30d7"),
}


def test_every_recorded_answer_has_its_expectation() -> None:
    assert sorted(EXPECTED) == sorted(body["id"] for body in recorded()[0])


@pytest.mark.parametrize("repo_id", sorted(EXPECTED))
def test_a_recorded_answer_maps_onto_the_catalog(hub: HubStandIn, repo_id: str) -> None:
    parameters, license_, gated, languages, lineage, task, n_evals, first_eval, sha = EXPECTED[repo_id]

    entry = fetch_entry(repo_id, api=api(hub))

    assert (entry.ref, entry.source, entry.parameters, entry.license, entry.gated) == (
        repo_id, "hub", parameters, license_, gated)
    if isinstance(languages, int):  # mBART's 52 (its card's 53rd entry, "multilingual", is no code)
        assert len(entry.languages) == languages and {"pl", "th", "sw", "xh"} <= set(entry.languages)
    else:
        assert entry.languages == languages
    assert (entry.base_model, entry.relation) == lineage
    assert entry.task == task
    assert len(entry.evals) == n_evals
    if first_eval:
        assert (entry.evals[0].benchmark, entry.evals[0].metric, entry.evals[0].value) == first_eval
    assert entry.revision is not None and entry.revision.startswith(sha) and len(entry.revision) == 40
    asked = [r for r in hub.requests if r.path == f"/api/models/{repo_id}"]
    assert len(asked) == 1 and asked[0].query["expand"] == MODEL_EXPAND


def test_the_hubs_lineage_names_the_base_by_its_new_id_where_the_card_has_the_old(hub: HubStandIn) -> None:
    body = json.loads((FIXTURES / "meta-llama--Llama-3.1-8B-Instruct.json").read_text())
    assert body["cardData"]["base_model"] == "meta-llama/Meta-Llama-3.1-8B"  # renamed since

    assert fetch_entry(body["id"], api=api(hub)).base_model == "meta-llama/Llama-3.1-8B"


@pytest.mark.parametrize("old", sorted(r["from"] for r in PROVENANCE["redirects"]))
def test_a_renamed_repo_is_added_under_its_new_id(hub: HubStandIn, home: Path, old: str) -> None:
    new = next(r["location"] for r in PROVENANCE["redirects"] if r["from"] == old).removeprefix("/api/models/")

    result = CliRunner().invoke(cli, ["--home", str(home), "models", "add", old, "--json"])

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ref"] == new
    assert [r.path for r in hub.requests if r.path.startswith("/api/models/")] == [
        f"/api/models/{old}", f"/api/models/{new}"]


def test_a_gguf_repo_takes_its_size_and_context_length_from_the_gguf_summary(hub: HubStandIn) -> None:
    # No GGUF repo is among the recorded answers: this one has the recorded bodies' shape
    # and the `gguf` object huggingface_hub's ModelInfo keeps (total, architecture,
    # context_length, chat_template, eos/bos tokens).
    gguf = hub_model("acme/clinical-7b-GGUF", sha="9f" * 20, tags=["medical", "gguf"], languages=["en"],
                     parameters=None, base_model="acme/clinical-7b", relation="quantized")
    gguf.pop("config")
    gguf["library_name"] = "gguf"
    gguf["gguf"] = {"total": 6_738_415_616, "architecture": "llama", "context_length": 32_768,
                    "chat_template": "{{ messages }}", "bos_token": "<s>", "eos_token": "</s>"}
    hub.add(gguf)

    entry = fetch_entry("acme/clinical-7b-GGUF", api=api(hub))

    assert (entry.parameters, entry.context_length) == (6_738_415_616, 32_768)
    assert (entry.base_model, entry.relation) == ("acme/clinical-7b", "quantized")
    assert not any(r.path.endswith("/config.json") for r in hub.requests)  # the summary sufficed
