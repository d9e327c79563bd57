"""The TUI driven with Textual's Pilot on real homes: the seed catalog plus a real run on
the vLLM engine (one module-scoped run), and the fixed home of tests/tui_support.py."""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from textual.app import App

from batch.query import Predictions
from batch.run.spec.job import load_spec
from catalog.db import Catalog
from catalog.models import upsert_model
from catalog.records import ModelEntry
from catalog.search import ModelFilter, count_models, domain_counts, language_counts, list_models
from catalog.seed import load_seed, read_entries
from tests.engine_support import TINY_MODEL, almanac, runner_for, write_job
from tests.tui_capture import screen_text, settle
from tests.tui_support import build_home, tui_app
from tui.format import counted
from tui.screens.model_detail import ModelDetailScreen
from tui.screens.models import ModelsScreen
from tui.screens.predictions import PredictionsScreen
from tui.screens.record import RecordScreen
from tui.widgets.domain_tree import DomainTree
from tui.widgets.language_list import LanguageList
from tui.widgets.paged_table import PagedTable

# Async tests run on asyncio through anyio's pytest plugin (Textual's Pilot is asyncio).
pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
JOB = "tui-words"
WORDS = ["plum", "pear", "lemon", "peach", "apple", "cherry", "quince", "apricot"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def engine_home(tmp_path_factory: pytest.TempPathFactory, engine_pool, tiny_model: Path) -> Path:
    """`almanac init` (seed catalog) and one real run of a small job on the tiny model,
    with one prompt too long for the context, so one row fails."""
    home = tmp_path_factory.mktemp("tui") / "home"
    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        load_seed(s)
    catalog.close()
    runner = runner_for(home, engine_pool, tiny_model)
    rows = [{"id": f"w{i}", "word": w} for i, w in enumerate(WORDS)]
    rows.append({"id": "too-long", "word": "apple " * 400})
    job = write_job(home.parent / "jobs", JOB, rows, sampling={"max_tokens": 6})
    try:
        result = runner.run(load_spec(job))
    finally:
        runner.close()
        runner.catalog.close()
    assert (result.generated, result.failed) == (len(WORDS), 1)
    return home


@pytest.fixture(scope="module")
def fixed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_home(tmp_path_factory.mktemp("tui-fixed") / "home")


def oracle(home: Path) -> Catalog:
    """The same catalog, opened for the test's own reads."""
    return Catalog.at(home / "catalog.db", migrate=False)


def table_keys(app: App) -> list[str]:
    """The shown rows' keys; a prediction row's key also names its candidate, after a
    unit separator: only the input id is kept here."""
    table = app.screen.query_one(PagedTable)
    return [key.value.split("\x1f")[0] for key in table.rows]


# -- models: facets, search, size filters ---------------------------------------------------


@pytest.mark.engine
async def test_domain_and_language_facets_filter_and_recount(engine_home: Path) -> None:
    cat = oracle(engine_home)
    app = tui_app(engine_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        with cat.sessions() as s:
            everything = count_models(s, ModelFilter())
            langs_all = language_counts(s, ModelFilter())
        assert f"{everything} models" in screen_text(app)
        languages = screen.query_one(LanguageList)
        assert {o.id: o for o in languages._options}.keys() >= set(langs_all)

        # Domain tree: root, code, code/python, ... -> the second line is `code`.
        await pilot.press("d", "down", "enter")
        await settle(pilot)
        with cat.sessions() as s:
            code = list_models(s, ModelFilter(domains=["code"]))
            langs_code = language_counts(s, ModelFilter(domains=["code"]))
        assert screen.query_now.domain == "code"
        assert table_keys(app) == [m.ref for m in code]
        assert f"{counted(len(code), 'model')} · domain code" in screen_text(app)
        assert [(f.key, f.count) for f in languages._facets] == list(langs_code.items())
        assert langs_code != langs_all  # the counts really changed

        # Click the language whose count is shown second (after "All languages").
        second = next(iter(langs_code))
        await pilot.click(LanguageList, offset=(4, 2))
        await settle(pilot)
        assert screen.query_now.language == second
        with cat.sessions() as s:
            both = list_models(s, ModelFilter(domains=["code"], languages=[second]))
            domains_lang = domain_counts(s, ModelFilter(languages=[second]))
        assert table_keys(app) == [m.ref for m in both]
        tree = screen.query_one(DomainTree)
        assert tree._counts == domains_lang
        assert "code" in str(tree._by_slug["code"].label)
        assert f"{domains_lang['code']:,}" in str(tree._by_slug["code"].label)

        # Back to everything: the root of the tree and "c" both clear.
        await pilot.press("c")
        await settle(pilot)
        assert len(table_keys(app)) == min(everything, 50)
        assert f"{everything} models" in screen_text(app)
    cat.close()
    assert app.load_errors == []


@pytest.mark.engine
async def test_search_box_queries_the_full_text_index(engine_home: Path) -> None:
    cat = oracle(engine_home)
    app = tui_app(engine_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"polish")
        await settle(pilot)
        with cat.sessions() as s:
            # A search lists by relevance: the words in the name first.
            expected = [m.ref for m in list_models(s, ModelFilter(search="polish", sort="relevance"))]
        assert expected and table_keys(app) == expected
        assert f"{counted(len(expected), 'model')} · matching “polish”" in screen_text(app)
        await pilot.press("enter")  # Enter leaves the box for the results
        assert isinstance(app.focused, PagedTable)
    cat.close()


@pytest.mark.engine
async def test_parameter_range_and_fits_memory_filters(engine_home: Path) -> None:
    cat = oracle(engine_home)
    app = tui_app(engine_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.click("#params")
        await pilot.press(*"1B-8B")
        await pilot.click("#fits")
        await pilot.press(*"12GB")
        await settle(pilot)
        with cat.sessions() as s:
            expected = [m.ref for m in list_models(s, ModelFilter(
                min_params=10**9, max_params=8 * 10**9, fits_bytes=12 * 1024**3))]
        assert expected and table_keys(app) == expected
        # An unparsable range is marked and ignored, not applied half-way.
        await pilot.click("#params")
        await pilot.press("ctrl+u", *"lots")
        await settle(pilot)
        assert "-invalid" in app.screen.query_one("#params").classes
        assert table_keys(app) == expected
    cat.close()


async def test_paging_loads_the_next_page_near_the_end(tmp_path: Path) -> None:
    from bench.catalog_gen import generate

    generate(tmp_path / "catalog.db", 180)
    cat = oracle(tmp_path)
    app = tui_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert len(table_keys(app)) == 50
        await pilot.press("end")
        await settle(pilot)
        await pilot.press("end")
        await settle(pilot)
        await pilot.press("end")
        await settle(pilot)
        with cat.sessions() as s:
            expected = [m.ref for m in list_models(s, ModelFilter())]
        assert table_keys(app) == expected  # all 180, in order, none twice
    cat.close()


# -- model detail ----------------------------------------------------------------------------


@pytest.mark.engine
async def test_model_detail_shows_lineage_evals_performance_and_jobs(engine_home: Path) -> None:
    app = tui_app(engine_home)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"tiny", "enter")
        await settle(pilot)
        app.screen.query_one(PagedTable).move_cursor(row=table_keys(app).index(TINY_MODEL))
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, ModelDetailScreen) and detail.ref == TINY_MODEL
        card = detail.model
        assert card.performance is not None and card.performance.tokens_per_s > 0
        text = screen_text(app)
        assert "Measured performance" in text and "tokens/s" in text
        assert [j.job for j in detail.jobs] == [JOB]
        assert detail.jobs[0].rows == len(WORDS) + 1

        # The job list leads to the job's predictions.
        await pilot.press("tab", "enter")
        await settle(pilot)
        assert isinstance(app.screen, PredictionsScreen)
        assert app.screen.shown.job == JOB


async def test_model_detail_lists_adapters_and_opens_the_base_model(fixed_home: Path) -> None:
    cat = oracle(fixed_home)
    with cat.sessions() as s:
        adapter = next(m for m in list_models(s, ModelFilter()) if m.relation == "adapter")
    cat.close()
    app = tui_app(fixed_home)
    async with app.run_test(size=(100, 60)) as pilot:
        await settle(pilot)
        app.open_model(adapter.ref)
        await settle(pilot)
        assert app.screen.model.base_model == adapter.base_model
        await pilot.press("b")
        await settle(pilot)
        base = app.screen
        assert isinstance(base, ModelDetailScreen) and base.ref == adapter.base_model
        text = screen_text(app)
        if base.model is not None:  # the base is in the seed catalog: it lists the adapter
            assert adapter.ref in base.model.adapters
        else:
            assert "is not in the catalog" in text
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.ref == adapter.ref


# -- runs ------------------------------------------------------------------------------------


async def test_runs_screen_shows_history_and_the_error_of_a_failed_run(fixed_home: Path) -> None:
    app = tui_app(fixed_home, screen="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        # Newest first; the failed run is the newest and its error is shown.
        assert table_keys(app)[0].endswith("law1")
        assert "FileNotFoundError: clauses.jsonl" in text
        for word in ("Inputs", "Cached", "Generated", "Failed", "tok/s", "Duration"):
            assert word in text
        await pilot.press("down", "down")
        await settle(pilot)
        text = screen_text(app)
        assert "failed_rows" in text and "52.5" in text and "FileNotFoundError" not in text
        await pilot.press("p")  # this run's job, on the predictions screen
        await settle(pilot)
        assert isinstance(app.screen, PredictionsScreen)
        assert app.screen.shown.job == "text-to-sql"


@pytest.mark.engine
async def test_runs_screen_after_a_real_run(engine_home: Path) -> None:
    app = tui_app(engine_home, screen="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert JOB in text and "failed_rows" in text
        assert f"{len(WORDS) + 1}" in text


# -- predictions -----------------------------------------------------------------------------


@pytest.mark.engine
async def test_predictions_search_outputs_open_a_record_and_jump_to_its_model(
        engine_home: Path) -> None:
    with Predictions.at(engine_home / "predictions", JOB) as p:
        target = next(r for r in p.search(failed=False) if len(r["output"].strip()) >= 3)
        needle = target["output"].strip()[:3]
        expected = [r["input_id"] for r in p.search(contains=needle)]
    app = tui_app(engine_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, PredictionsScreen)
        assert len(table_keys(app)) == len(WORDS) + 1
        await pilot.press("slash", *needle)
        await settle(pilot)
        assert table_keys(app) == expected and target["input_id"] in expected
        assert f"{counted(len(expected), 'record')} in {JOB}" in screen_text(app)

        await pilot.press("enter")  # leaves the search box for the results
        table = app.screen.query_one(PagedTable)
        table.move_cursor(row=expected.index(target["input_id"]))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RecordScreen)
        text = screen_text(app)
        for value in (target["prompt"], target["model"], target["revision"], '"max_tokens": 6'):
            assert value in text

        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, ModelDetailScreen) and app.screen.ref == TINY_MODEL
        assert app.current_mode == "models"


@pytest.mark.engine
async def test_predictions_failed_only_and_job_from_the_command_line(engine_home: Path) -> None:
    app = tui_app(engine_home, job=JOB)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.current_mode == "predictions" and app.screen.shown.job == JOB
        await pilot.press("f")
        await settle(pilot)
        assert table_keys(app) == ["too-long"]
        assert "✗ prompt is" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert "max_model_len" in screen_text(app)


async def test_predictions_switches_jobs(fixed_home: Path) -> None:
    app = tui_app(fixed_home, screen="predictions")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.screen.shown.job == "polish-cities"
        await pilot.press("j", "down", "enter")
        await settle(pilot)
        assert app.screen.shown.job == "text-to-sql"
        assert len(table_keys(app)) == 13


# -- keyboard, palette, size, safety ---------------------------------------------------------


async def test_keys_switch_screens_and_q_quits(fixed_home: Path) -> None:
    app = tui_app(fixed_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for key, mode in (("2", "runs"), ("3", "predictions"), ("1", "models")):
            await pilot.press(key)
            await settle(pilot)
            assert app.current_mode == mode
        commands = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Show models", "Show runs", "Show predictions", "Refresh",
                "Clear filters"} <= commands
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_usable_at_80_by_24(fixed_home: Path) -> None:
    app = tui_app(fixed_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PagedTable)
        assert table.size.height >= 10 and table.row_count > 0
        assert f"{len(read_entries())} models" in screen_text(app) and "q Quit" in screen_text(app)
        await pilot.press("f")  # hide the facets: every column then fits
        await settle(pilot)
        assert table.virtual_size.width <= table.size.width
        assert "License" in screen_text(app) and "tok/s" in screen_text(app)


async def test_read_only_never_blocks_a_writer_and_refresh_shows_new_models(
        fixed_home: Path, tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(fixed_home, home)
    app = tui_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        # A run writes while the TUI is open: it gets the write lock at once.
        writer = sqlite3.connect(home / "catalog.db", timeout=0)
        writer.execute("BEGIN IMMEDIATE")
        writer.rollback()
        writer.close()
        cat = Catalog.at(home / "catalog.db")
        with cat.sessions.begin() as s:
            upsert_model(s, ModelEntry(ref="local/aa-new", name="Aa New", source="local",
                                       domains=["law"], languages=["pl"]))
        # ... and while a writer holds the lock, the TUI still reads.
        lock = sqlite3.connect(home / "catalog.db")
        lock.execute("BEGIN IMMEDIATE")
        await pilot.press("r")
        await settle(pilot)
        lock.rollback()
        lock.close()
        cat.close()
        # First by name, so on the first page.
        assert "local/aa-new" in table_keys(app) and f"{len(read_entries()) + 1} models" in screen_text(app)
        assert app.load_errors == []
    # The TUI wrote nothing: its connection cannot write at all.
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True)
        ro.execute("DELETE FROM models")


def test_the_tui_connection_is_read_only(fixed_home: Path) -> None:
    from sqlalchemy import text

    from almanac.paths import Home
    from catalog.db import CatalogUnusableError
    from tui.data import Data

    layout = Home(fixed_home)
    data = Data(layout.catalog_db, layout.predictions)
    try:
        with pytest.raises(CatalogUnusableError, match="read-only"), \
                data.catalog.sessions.begin() as s:
            s.execute(text("DELETE FROM models"))
    finally:
        data.close()


def test_cli_refuses_a_home_without_a_catalog(tmp_path: Path) -> None:
    proc = almanac(tmp_path / "empty", "tui")
    assert proc.returncode == 1
    assert "almanac init" in proc.stderr
    assert not (tmp_path / "empty").exists()  # the TUI creates nothing


def test_make_app_rejects_an_unknown_screen(fixed_home: Path) -> None:
    with pytest.raises(ValueError, match="screen: 'jobs'"):
        tui_app(fixed_home, screen="jobs")


# -- import hygiene --------------------------------------------------------------------------


def test_only_tui_imports_textual() -> None:
    offenders = []
    for folder in ("almanac", "catalog", "batch", "schemas", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                if any(n.split(".")[0] in ("textual", "rich") for n in names):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_data_layer_and_the_cli_stay_free_of_textual(tmp_path: Path) -> None:
    code = ("import sys, tui.data, tui.format\n"
            "from almanac.cli import cli\n"
            "try:\n    cli.main(['tui', '--help'], standalone_mode=False)\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('textual', 'rich') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=os.environ.copy(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
