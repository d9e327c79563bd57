"""The comparison where people look at it: `GET /jobs/{job}/compare` on a real server,
and the TUI's comparison view (pilot and snapshot), reached from the predictions screen
and from a model's detail, which lists the model's measured evals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from textual.pilot import Pilot
from textual.widgets import DataTable, OptionList
from textual_plotext import PlotextPlot

from almanac.cli import cli
from tests.score_support import BIG, JOB, build_scored_home, score_home
from tests.test_server import LiveServer
from tests.tui_capture import screen_text, settle
from tests.tui_support import tui_app

SIZE = (100, 30)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual's Pilot runs on asyncio, through anyio's pytest plugin


@pytest.fixture(scope="module")
def scored_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare") / "home"
    score_home(root, build_scored_home(root, second_price=1.2))
    return root


@pytest.fixture(scope="module")
def cheap_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same runs on a machine that costs a tenth of a cent an hour."""
    root = tmp_path_factory.mktemp("cheap") / "home"
    build_scored_home(root, first_price=0.001, second_price=0.001)
    return root


# What each candidate's 1,000 rows cost at 0.001 USD an hour: its engine-seconds per row.
CHEAP = {"big": 0.001 * 11.5 / 3600 / 23 * 1000, "small": 0.001 * 6.0 / 3600 / 24 * 1000,
         "small+lora": 0.001 * 2.0 / 3600 / 12 * 1000}
CHEAP_TEXT = {"big": "0.000139", "small": "0.0000694", "small+lora": "0.0000463"}


@pytest.fixture(scope="module")
def client(scored_home: Path) -> Iterator[httpx.Client]:
    server = LiveServer(scored_home)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
    server.close()


def test_http_compare_answers_what_the_cli_computes(client: httpx.Client, scored_home: Path) -> None:
    from batch.query import Predictions
    from batch.score.compare import compare_job
    from catalog.db import Catalog

    body = client.get(f"/jobs/{JOB}/compare").json()
    catalog = Catalog.at(scored_home / "catalog.db")
    with Predictions.at(scored_home / "predictions", JOB) as p:
        expected = [e.to_json() for e in compare_job(catalog.sessions, p)]
    catalog.close()
    assert body == expected
    assert [e["label"] for e in body] == ["big", "small+lora", "small"]
    assert body[0]["cost_per_1k"] == pytest.approx(1.2 * 11.5 / 3600 / 23 * 1000)
    priced = client.get(f"/jobs/{JOB}/compare", params={"usd_per_hour": 3.6}).json()
    assert priced[0]["usd_per_hour"] == 3.6
    assert client.get("/jobs/nothing-here/compare").status_code == 404
    for bad in ("0", "-1", "nan", "inf", "1e9", "cheap"):
        assert client.get(f"/jobs/{JOB}/compare", params={"usd_per_hour": bad}).status_code == 422
    assert "/jobs/{job}/compare" in client.get("/openapi.json").json()["paths"]


def test_a_cost_of_a_fraction_of_a_cent_shows_its_significant_digits(
        client: httpx.Client, cheap_home: Path) -> None:
    table = CliRunner().invoke(cli, ["--home", str(cheap_home), "compare", JOB],
                               catch_exceptions=False)
    listed = CliRunner().invoke(cli, ["--home", str(cheap_home), "compare", JOB, "--json"],
                                catch_exceptions=False)
    priced = client.get(f"/jobs/{JOB}/compare", params={"usd_per_hour": 0.001}).json()

    assert table.exit_code == 0, table.stderr
    rows = {line.split()[0]: line.split()[-1] for line in table.stdout.splitlines()[1:]}
    assert rows == CHEAP_TEXT  # never 0.0000, which reads as free
    # JSON keeps the full float, on the command line and over HTTP.
    assert {e["label"]: e["cost_per_1k"] for e in json.loads(listed.stdout)} == pytest.approx(CHEAP)
    assert {e["label"]: e["cost_per_1k"] for e in priced} == pytest.approx(CHEAP)


@pytest.mark.anyio
async def test_the_tuis_comparison_shows_a_small_cost_whole(cheap_home: Path) -> None:
    app = tui_app(cheap_home, job=JOB)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_comparison(JOB)
        await settle(pilot)
        table = app.screen.query_one("#comparison", DataTable)
        costs = {str(table.get_row_at(i)[1]): str(table.get_row_at(i)[-1])
                 for i in range(table.row_count)}
        shown = screen_text(app)
    assert costs == CHEAP_TEXT
    assert all(text in shown for text in CHEAP_TEXT.values())  # the column is wide enough


@pytest.mark.anyio
async def test_the_comparison_opens_from_the_predictions_screen(scored_home: Path) -> None:
    app = tui_app(scored_home, job=JOB)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert type(screen).__name__ == "ComparisonScreen" and screen.job == JOB
        table = screen.query_one("#comparison", DataTable)
        assert table.row_count == 3
        assert [str(c) for c in table.get_row_at(0)[:2]] == ["*", "big"]
        assert "score: exact" in str(screen.query_one("#status").render())
        assert screen.query_one(PlotextPlot).plt  # drawn into by batch.score.chart
        await pilot.press("m")  # the highlighted candidate's model
        await settle(pilot)
        assert type(app.screen).__name__ == "ModelDetailScreen" and app.screen.ref == BIG
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert type(app.screen).__name__ == "PredictionsScreen"


@pytest.mark.anyio
async def test_a_models_detail_lists_its_measured_evals_and_opens_their_comparison(
        scored_home: Path) -> None:
    app = tui_app(scored_home)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_model(BIG)
        await settle(pilot)
        measured = app.screen.query_one("#measured", OptionList)
        assert measured.display and measured.option_count == 1
        assert JOB in str(measured.get_option_at_index(0).prompt)
        measured.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "ComparisonScreen" and app.screen.job == JOB


@pytest.mark.anyio
async def test_a_model_without_measured_evals_shows_no_such_list(scored_home: Path) -> None:
    app = tui_app(scored_home)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_model("org/nowhere")
        await settle(pilot)
        assert not app.screen.query_one("#measured", OptionList).display


def test_comparison_screen_snapshot(snap_compare, scored_home: Path) -> None:
    async def open_comparison(pilot: Pilot) -> None:
        await settle(pilot)
        pilot.app.open_comparison(JOB)
        await settle(pilot)

    assert snap_compare(tui_app(scored_home, job=JOB), terminal_size=SIZE,
                        run_before=open_comparison)
