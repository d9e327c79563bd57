"""Snapshots of the screens at 100×30 on the fixed home of tests/tui_support.py.

Regenerate after a deliberate change with `--snapshot-update`, then look at the
SVGs (or `python -m tests.tui_capture HOME OUT` for text) before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui_capture import settle
from tests.tui_support import build_home, tui_app

SIZE = (100, 30)


@pytest.fixture(scope="module")
def fixed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_home(tmp_path_factory.mktemp("snapshots") / "home")


def test_models_screen(snap_compare, fixed_home: Path) -> None:
    assert snap_compare(tui_app(fixed_home), terminal_size=SIZE, run_before=settle)


def test_models_screen_filtered_by_domain_and_language(snap_compare, fixed_home: Path) -> None:
    async def choose(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("d", "down", "enter")  # domain: code
        await settle(pilot)
        await pilot.press("l", "down", "enter")  # the first language under `code`
        await settle(pilot)

    assert snap_compare(tui_app(fixed_home), terminal_size=SIZE, run_before=choose)


def test_model_detail_screen(snap_compare, fixed_home: Path) -> None:
    async def open_sqlcoder(pilot: Pilot) -> None:
        await settle(pilot)
        pilot.app.open_model("defog/sqlcoder-7b-2")
        await settle(pilot)

    assert snap_compare(tui_app(fixed_home), terminal_size=SIZE, run_before=open_sqlcoder)


def test_runs_screen(snap_compare, fixed_home: Path) -> None:
    assert snap_compare(tui_app(fixed_home, screen="runs"), terminal_size=SIZE,
                        run_before=settle)


def test_predictions_screen(snap_compare, fixed_home: Path) -> None:
    assert snap_compare(tui_app(fixed_home, job="text-to-sql"), terminal_size=SIZE,
                        run_before=settle)


def test_prediction_record_screen(snap_compare, fixed_home: Path) -> None:
    async def open_first(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(tui_app(fixed_home, job="polish-cities"), terminal_size=SIZE,
                        run_before=open_first)
