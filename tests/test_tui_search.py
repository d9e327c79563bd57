"""The models screen under typing: a search lists by relevance, a burst of keystrokes
loads what was typed last, and a load made useless by a newer one stops its query."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, TimeoutError
from pathlib import Path

import pytest
from sqlalchemy import text

from almanac.paths import Home
from catalog.db import CatalogError
from catalog.search import ModelFilter, count_models, list_models
from tests.tui_capture import send_key, settle
from tests.tui_support import build_home, tui_app
from tui.data import Data, ModelQuery
from tui.screens.models import ModelsScreen

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_home(tmp_path_factory.mktemp("search") / "home")


async def test_a_burst_of_keystrokes_loads_the_words_typed_last_by_relevance(seeded: Path) -> None:
    app = tui_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await pilot.press("slash")
        loads = screen._generation["page"]
        word = "polish"
        for ch in word:  # as fast as a terminal delivers a paste typed out
            send_key(app, ch, ch)
        await settle(pilot)
        assert screen.query_now.search == word and screen.shown == screen.query_now
        with app.data.catalog.sessions() as s:
            f = ModelFilter(search=word, sort="relevance")
            expected = [m.ref for m in list_models(s, f)]
            total = count_models(s, f)
        assert expected and [k.value for k in screen.query_one("#models").rows] == expected[:50]
        assert screen.query_one("#models").total == total
        # The first key loads at once; the rest wait for the typing to pause.
        assert screen._generation["page"] - loads < len(word)
    assert app.load_errors == []


def test_interrupt_stops_a_catalog_read_under_way(seeded: Path) -> None:
    data = Data(Home(seeded).catalog_db, Home(seeded).predictions)
    began = threading.Event()

    def endless() -> None:
        with data._session() as s:
            began.set()
            s.execute(text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                           "SELECT count(*) FROM n")).all()  # counts until stopped

    try:
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(data.run_as, "facets", endless)
            assert began.wait(30)
            for _ in range(600):  # the statement may start just after an interrupt
                data.interrupt("facets")
                try:
                    reading.result(timeout=0.05)
                except TimeoutError:
                    continue
                except CatalogError as stopped:
                    assert "interrupted" in str(stopped)
                    break
            else:
                pytest.fail("the read was not interrupted")
        data.interrupt("facets")  # nothing runs under that name now: nothing happens
        assert data.count(ModelQuery()) > 0  # and the catalog answers as before
    finally:
        data.close()
