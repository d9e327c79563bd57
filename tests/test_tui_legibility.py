"""What tells rows apart on narrow screens: a base model and its adapters as distinct
candidate labels (full in the record view), each prompt's own part after the few-shot
prefix all share, and each score's 95% interval on the comparison chart.

The home: one job, a base and two of its adapters (labels 40–50 characters long that
share their first 24), few-shot prompts, scores; written without an engine, as
tests/score_support.py writes its own."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from batch.cache.index import CandidateInfo
from batch.cache.store import PredictionStore, ShardWriter
from catalog.db import Catalog
from catalog.models import upsert_model
from catalog.records import ModelEntry
from tests.score_support import FRUITS, JOB, T0, _record, answers, score_home, write_job
from tests.tui_capture import screen_text, settle
from tests.tui_support import tui_app
from tui.labels import own_part, shared_prefix, short_labels

SIZE = (100, 30)
BASE = "almanac/tiny-generalist"
TYPES = "almanac/tiny-generalist-fruit-types-lora"
COLOURS = "almanac/tiny-generalist-fruit-colours-lora"
CANDIDATES = [CandidateInfo(BASE, BASE, "rev-g", None, None, 0),
              CandidateInfo(f"{BASE}+{TYPES}", BASE, "rev-g", TYPES, "lora:sha256:aaa", 1),
              CandidateInfo(f"{BASE}+{COLOURS}", BASE, "rev-g", COLOURS, "lora:sha256:bbb", 2)]
# Whose answers (tests/score_support.py's) each candidate gives: three different scores.
ANSWERS_OF = {CANDIDATES[0].label: "small", CANDIDATES[1].label: "big",
              CANDIDATES[2].label: "small+lora"}
FEW_SHOT = "peach: drupe\napple: pome\ngrape: berry\nlemon: hesperidium\n"


def build_adapters_home(root: Path) -> Path:
    catalog = Catalog.at(root / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, ModelEntry(ref=BASE, name="Tiny generalist", source="local",
                                   parameters=1_100_000))
    catalog.close()
    store = PredictionStore(root / "predictions")
    with ShardWriter(store, JOB, "run-one", shard_rows=50, row_group_rows=8) as writer:
        for c in CANDIDATES:
            for fruit, answer in answers(ANSWERS_OF[c.label]).items():
                record = _record(c, fruit, answer, "run-one", T0 + timedelta(hours=1),
                                 error="prompt is 300 tokens; the context is 256"
                                 if answer is None else None)
                record["prompt"] = f"{FEW_SHOT}{fruit}:"
                writer.add(record)
    store.set_candidates(JOB, CANDIDATES)
    store.close()
    score_home(root, write_job(root / "jobs"))
    return root


@pytest.fixture(scope="module")
def adapters_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_adapters_home(tmp_path_factory.mktemp("legible") / "home")


# -- the cutting rules ---------------------------------------------------------------------


def test_a_base_and_its_adapters_keep_distinct_labels_in_sixteen_characters() -> None:
    short = short_labels([c.label for c in CANDIDATES], 16)
    assert len(set(short.values())) == 3
    assert short[BASE] == "tiny-generalist"
    assert all(len(s) <= 16 for s in short.values())
    assert short[CANDIDATES[1].label].endswith("types-lora")
    assert short[CANDIDATES[2].label].endswith("colours-lora")


def test_labels_that_fit_are_left_whole_and_clashing_names_fall_back_to_their_ends() -> None:
    assert short_labels(["big", "small+lora"], 16) == {"big": "big", "small+lora": "small+lora"}
    # Two organisations' models of one name: their names alone would clash.
    short = short_labels(["acme/clinical-model-7b", "other/clinical-model-7b"], 12)
    assert len(set(short.values())) == 2


def test_a_prompt_shows_its_own_part_after_the_prefix_its_page_shares() -> None:
    prompts = [f"{FEW_SHOT}{fruit}:" for fruit, _ in FRUITS[:4]]
    prefix = shared_prefix(prompts)
    assert prefix == FEW_SHOT
    assert own_part(prompts[0], prefix, 16) == "…plum:"
    # The prefix ends where a word does: two fruits starting alike are not cut mid-word.
    assert shared_prefix(["peach: drupe\npear:", "peach: drupe\nplum:"]) == "peach: drupe\n"
    assert shared_prefix(["only one prompt"]) == ""
    assert own_part("a prompt of its own", "peach: drupe\n", 8) == "a promp…"


# -- on screen -------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_predictions_rows_name_their_candidates_apart_and_show_their_own_prompt(
        adapters_home: Path) -> None:
    app = tui_app(adapters_home, job=JOB)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#predictions", DataTable)
        first = [[str(c) for c in table.get_row_at(i)] for i in range(3)]  # apple, by each
        assert len({row[1] for row in first}) == 3, first
        assert {row[2] for row in first} == {"…apple:"}
        await pilot.press("down", "enter")  # the apple of the first adapter
        await settle(pilot)
        text = screen_text(app)
        assert f"candidate  {CANDIDATES[1].label}" in text


@pytest.mark.anyio
async def test_the_comparison_names_candidates_apart_and_draws_their_intervals(
        adapters_home: Path) -> None:
    app = tui_app(adapters_home, job=JOB)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_comparison(JOB)
        await settle(pilot)
        table = app.screen.query_one("#comparison", DataTable)
        names = {str(table.get_row_at(i)[1]) for i in range(table.row_count)}
        assert len(names) == 3, names
        chart = screen_text(app).split("95% interval", 1)[1]
        assert chart.count("│") > 3 * 2  # a vertical interval through each of three bars


def test_predictions_of_a_base_and_its_adapters_snapshot(snap_compare, adapters_home: Path) -> None:
    assert snap_compare(tui_app(adapters_home, job=JOB), terminal_size=SIZE, run_before=settle)


def test_record_of_an_adapter_candidate_snapshot(snap_compare, adapters_home: Path) -> None:
    async def open_adapter_row(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)

    assert snap_compare(tui_app(adapters_home, job=JOB), terminal_size=SIZE,
                        run_before=open_adapter_row)


@pytest.mark.skipif(os.environ.get("PYTHONHASHSEED") != "0" or sys.flags.hash_randomization,
                    reason="plotext places tick labels in set order: the snapshot was taken with "
                           "PYTHONHASHSEED=0 (./scripts/test and the suite's workers use it)")
def test_comparison_of_a_base_and_its_adapters_snapshot(snap_compare, adapters_home: Path) -> None:
    async def open_comparison(pilot: Pilot) -> None:
        await settle(pilot)
        pilot.app.open_comparison(JOB)
        await settle(pilot)

    assert snap_compare(tui_app(adapters_home, job=JOB), terminal_size=SIZE,
                        run_before=open_comparison)
