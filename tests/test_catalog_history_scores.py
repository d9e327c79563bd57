"""A model's history when the Hub moves it, the check other rooms ask of it, and scores
measured on jobs: shown apart from card evals and sortable, on the CLI and over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from almanac.cli import cli
from catalog.db import Catalog
from catalog.evals import record_measured
from catalog.history import revision_status, revision_statuses
from catalog.models import upsert_model
from catalog.records import MeasuredEvalRecord, ModelEntry
from tests.hub_standin import HubStandIn, Served, hub_model
from tests.test_server import LiveServer

OLD, NEW = "0a" * 20, "0b" * 20


def almanac(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def ok_json(home: Path, *args: str) -> Any:
    result = almanac(home, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    stand_in = HubStandIn()
    stand_in.add(hub_model("acme/clinical-7b", sha=OLD, tags=["medical"], languages=["en"],
                           parameters=6_738_415_616, downloads=10, evals=[("MedQA", "accuracy", 0.4)]))
    stand_in.readmes["acme/clinical-7b"] = "---\nlicense: apache-2.0\n---\n\nThe first card.\n"
    with Served(stand_in) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        yield stand_in


def _move(hub: HubStandIn) -> None:
    """The Hub publishes a new revision: new weights, card and card evals."""
    model = hub.models["acme/clinical-7b"]
    model["sha"] = NEW
    model["safetensors"] = {"parameters": {"BF16": 7_241_732_096}, "total": 7_241_732_096}
    model["cardData"]["model-index"][0]["results"][0]["metrics"][0]["value"] = 0.5
    hub.readmes["acme/clinical-7b"] = "---\nlicense: apache-2.0\n---\n\nThe second card.\n"


def test_a_moved_revision_keeps_the_old_facts_in_the_models_history(hub: HubStandIn, home: Path) -> None:
    ok_json(home, "models", "discover", "--domain", "medicine")
    ok_json(home, "models", "refresh")  # fetches the card the listing did not carry
    _move(hub)

    report = ok_json(home, "models", "refresh")

    assert [(m["previous_revision"], m["revision"]) for m in report["models"]] == [(OLD, NEW)]
    model = ok_json(home, "models", "show", "acme/clinical-7b")
    assert (model["revision"], model["parameters"], model["description"]) == (NEW, 7_241_732_096, "The second card.")
    assert [e["value"] for e in model["evals"]] == [0.5]
    (old,) = model["history"]
    assert (old["revision"], old["replaced_by"]) == (OLD, NEW)
    assert old["facts"]["parameters"] == 6_738_415_616
    assert old["facts"]["description"] == "The first card."
    assert [e["value"] for e in old["facts"]["evals"]] == [0.4]
    text = almanac(home, "models", "show", "acme/clinical-7b").stdout
    assert f"old revision: {OLD} (replaced by {NEW}" in text


def test_revision_status_tells_other_rooms_whether_predictions_are_current(hub: HubStandIn, home: Path) -> None:
    ok_json(home, "models", "discover", "--domain", "medicine")
    _move(hub)
    ok_json(home, "models", "refresh")

    catalog = Catalog.at(home / "catalog.db")
    try:
        with catalog.sessions() as s:
            old = revision_status(s, "acme/clinical-7b", OLD)
            new = revision_status(s, "clinical-7b", NEW)  # any reference find_model accepts
            never = revision_status(s, "acme/clinical-7b", "c" * 40)
            unknown = revision_status(s, "nobody/none", OLD)
            local = revision_status(s, "acme/clinical-7b", None)
            many = revision_statuses(s, [("acme/clinical-7b", OLD), ("acme/clinical-7b", OLD)])
    finally:
        catalog.close()
    assert (old.is_current, old.current_revision, old.model_ref) == (False, NEW, "acme/clinical-7b")
    assert old.replaced_at is not None and old.to_json()["replaced_at"].startswith(str(datetime.now(UTC).year))
    assert (new.is_current, new.replaced_at) == (True, None)
    assert (never.is_current, never.replaced_at) == (False, None)  # not current; never seen replaced
    assert (unknown.is_current, unknown.model_ref) == (None, None)
    assert local.is_current is None
    assert list(many) == [("acme/clinical-7b", OLD)]


def test_refresh_older_than_skips_what_the_hub_described_recently(hub: HubStandIn, home: Path) -> None:
    ok_json(home, "models", "discover", "--domain", "medicine")
    hub.requests.clear()

    report = ok_json(home, "models", "refresh", "--older-than", "7d")

    assert report["models"] == [] and hub.requests == []
    bad = almanac(home, "models", "refresh", "--older-than", "soon")
    assert bad.exit_code == 2 and "--older-than" in bad.stderr
    unknown = almanac(home, "models", "refresh", "nobody/none")
    assert unknown.exit_code == 1 and "nobody/none" in unknown.stderr


# -- measured scores ----------------------------------------------------------------------------

SQL_LORA = "acme/sqlcoder-lora"
SCORES = {"bigcode/starcoder2-15b": 0.62, "defog/sqlcoder-7b-2": 0.81, "codellama/CodeLlama-7b-hf": 0.55}


@pytest.fixture
def scored(home: Path) -> Path:
    assert almanac(home, "init").exit_code == 0
    catalog = Catalog.at(home / "catalog.db")
    try:
        with catalog.sessions.begin() as s:
            for ref, value in SCORES.items():
                record_measured(s, MeasuredEvalRecord(ref, "sql-eval", "exact", value, 200, ci_low=value - 0.05,
                                                      ci_high=value + 0.05,
                                                      measured_at=datetime(2026, 11, 1, tzinfo=UTC)))
            # sqlcoder with its LoRA adapter, which the catalog holds: the adapter's score.
            upsert_model(s, ModelEntry(ref=SQL_LORA, name="SQL LoRA", source="local",
                                       base_model="defog/sqlcoder-7b-2", relation="adapter",
                                       adapter_rank=8, domains=["code/sql"]))
            record_measured(s, MeasuredEvalRecord("defog/sqlcoder-7b-2", "sql-eval", "exact", 0.9, 200,
                                                  adapter=SQL_LORA, label="sqlcoder+lora"))
            # ... and with an adapter the catalog does not hold: the base shows it, named.
            record_measured(s, MeasuredEvalRecord("defog/sqlcoder-7b-2", "sql-eval", "exact", 0.95, 200,
                                                  adapter="adapters/elsewhere"))
    finally:
        catalog.close()
    return home


def test_show_lists_measured_evals_apart_from_card_evals(scored: Path) -> None:
    shown = ok_json(scored, "models", "show", "bigcode/starcoder2-15b")
    text = almanac(scored, "models", "show", "bigcode/starcoder2-15b").stdout

    assert {e["benchmark"] for e in shown["evals"]} >= {"HumanEval", "DS-1000"}
    assert [(m["task"], m["metric"], m["value"], m["n"]) for m in shown["measured"]] == [
        ("sql-eval", "exact", 0.62, 200)]
    assert "    card eval: HumanEval pass@1 = 0.463" in text
    assert "measured eval: sql-eval: exact = 0.62 [0.57, 0.67] (n=200, 2026-11-01)" in text


def test_a_base_shows_its_own_score_and_its_adapter_in_the_catalog_shows_its_own(scored: Path) -> None:
    base = ok_json(scored, "models", "show", "defog/sqlcoder-7b-2")
    adapter = ok_json(scored, "models", "show", SQL_LORA)
    base_text = almanac(scored, "models", "show", "defog/sqlcoder-7b-2").stdout
    adapter_text = almanac(scored, "models", "show", SQL_LORA).stdout

    assert sorted((m["adapter"], m["value"]) for m in base["measured"]) == [
        ("", 0.81), ("adapters/elsewhere", 0.95)]
    assert [(m["adapter"], m["value"], m["label"]) for m in adapter["measured"]] == [
        (SQL_LORA, 0.9, "sqlcoder+lora")]
    assert "measured eval: sql-eval: exact = 0.81" in base_text
    assert "measured eval: sql-eval + adapters/elsewhere: exact = 0.95" in base_text
    assert "0.9 " not in base_text
    assert "measured eval: sql-eval (on defog/sqlcoder-7b-2): exact = 0.9 (n=200" in adapter_text


def test_list_sorts_by_a_jobs_measured_score(scored: Path) -> None:
    listed = ok_json(scored, "models", "list", "--domain", "code", "--sort", "score:sql-eval")
    table = almanac(scored, "models", "list", "--domain", "code", "--sort", "score:sql-eval", "--limit", "3")

    refs = [m["ref"] for m in listed]
    # A model's own score counts, never its adapter's: the adapter in the catalog has its
    # own (0.9), sqlcoder alone scored 0.81; unscored models follow by name.
    assert refs[:4] == [SQL_LORA, "defog/sqlcoder-7b-2", "bigcode/starcoder2-15b",
                        "codellama/CodeLlama-7b-hf"]
    assert [m["score"] for m in listed[:4]] == [0.9, 0.81, 0.62, 0.55]
    assert all(m["score"] is None for m in listed[4:]) and len(refs) > 4
    header, first, second, _ = table.stdout.splitlines()
    assert header.split()[-1] == "SCORE" and first.startswith(SQL_LORA) and first.endswith("0.9")
    assert second.startswith("defog/sqlcoder-7b-2") and second.endswith("0.81")
    bad = almanac(scored, "models", "list", "--sort", "score:")
    assert bad.exit_code == 2 and "--sort" in bad.stderr


def test_http_models_sorts_by_a_jobs_measured_score(scored: Path) -> None:
    server = LiveServer(scored)
    try:
        ranked = httpx.get(f"{server.url}/models", params={"sort": "score:sql-eval", "limit": 2}, timeout=30)
        bad = httpx.get(f"{server.url}/models", params={"sort": "score:"}, timeout=30)
    finally:
        server.close()
    assert ranked.status_code == 200, ranked.text
    assert [(m["ref"], m["score"]) for m in ranked.json()["items"]] == [
        (SQL_LORA, 0.9), ("defog/sqlcoder-7b-2", 0.81)]
    assert bad.status_code == 400 and "sort" in bad.text
