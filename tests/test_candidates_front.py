"""Choosing a candidate at the front door: `almanac query` and `almanac export`
(--candidate, --model, --adapter), the HTTP API (candidate=, model=, adapter=) and the
TUI's predictions screen, over a job cached by three candidates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from batch.cache.index import CandidateInfo
from batch.cache.store import PredictionStore
from catalog.db import Catalog
from tests.cache_support import key_for, record, write
from tests.engine_support import almanac
from tests.test_server import LiveServer
from tests.tui_capture import screen_text, settle
from tests.tui_support import tui_app
from tui.screens.predictions import PredictionsScreen
from tui.widgets.paged_table import PagedTable

BASE = CandidateInfo("tiny", "tiny", "sha256:abc", None, None, 0)
LORA = CandidateInfo("tiny+lora-a", "tiny", "sha256:abc", "acme/lora-a", "lora:sha256:11", 1)
OTHER = CandidateInfo("other", "other", "sha256:def", None, None, 2)
FRUITS = ["apple", "fig", "plum"]


def fill(home: Path) -> None:
    """Job `fruits`: three candidates over three fruits; job `solo`: one model."""
    Catalog.at(home / "catalog.db").close()  # an empty catalog, for the TUI
    store = PredictionStore(home / "predictions")
    try:
        store.set_candidates("fruits", [BASE, LORA, OTHER])
    finally:
        store.close()
    write(home / "predictions", [
        record(f, model=c.model, candidate=c.label, adapter=c.adapter,
               adapter_revision=c.adapter_revision, key=key_for(f"{c.label}/{f}"),
               output=f"{c.label} says {f}")
        for f in FRUITS for c in (BASE, LORA, OTHER)])
    write(home / "predictions", [record("plum", job="solo")], job="solo")


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("candidates") / "home"
    fill(home)
    return home


# -- the command line ----------------------------------------------------------------------------


def test_query_lists_every_candidate_and_looks_up_the_one_named(filled: Path) -> None:
    listed = almanac(filled, "query", "fruits", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["input_id"], r["candidate"]) for r in json.loads(listed.stdout)] == \
        [(f, c.label) for f in FRUITS for c in (BASE, LORA, OTHER)]
    table = almanac(filled, "query", "fruits")
    assert "CANDIDATE" in table.stdout and "tiny+lora-a" in table.stdout

    for how in (["--candidate", "tiny+lora-a"], ["--adapter", "acme/lora-a"],
                ["--model", "tiny", "--adapter", "acme/lora-a"]):
        one = almanac(filled, "query", "fruits", "--input-id", "plum", "--json", *how)
        assert one.returncode == 0, one.stderr
        assert [r["output"] for r in json.loads(one.stdout)] == ["tiny+lora-a says plum"]
    by_model = almanac(filled, "query", "fruits", "--model", "tiny", "--jsonl")
    assert {json.loads(line)["candidate"] for line in by_model.stdout.splitlines()} == \
        {"tiny", "tiny+lora-a"}

    listing = almanac(filled, "query", "fruits", "--candidates", "--json")
    assert [(c["label"], c["adapter"], c["rows"]) for c in json.loads(listing.stdout)] == \
        [("tiny", None, 3), ("tiny+lora-a", "acme/lora-a", 3), ("other", None, 3)]
    solo = almanac(filled, "query", "solo", "--input-id", "plum", "--json")
    assert solo.returncode == 0 and json.loads(solo.stdout)[0]["candidate"] == "tiny"


@pytest.mark.parametrize(("args", "says"), [
    (["--input-id", "plum"], "has 3 candidates (tiny, tiny+lora-a, other)"),
    (["--input-id", "plum", "--model", "tiny"], "has 2 candidates (tiny, tiny+lora-a)"),
    (["--input-id", "plum", "--model", "nobody"], "no candidate with model 'nobody'"),
    (["--candidate", "tiny+b"], "candidate: job 'fruits' has no candidate 'tiny+b'"),
])
def test_query_without_a_clear_candidate_exits_2_naming_them(filled: Path, args: list[str],
                                                             says: str) -> None:
    out = almanac(filled, "query", "fruits", *args)
    assert out.returncode == 2 and says in out.stderr and out.stdout == ""
    assert "Traceback" not in out.stderr


def test_export_writes_the_candidate_chosen(filled: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora.parquet"
    done = almanac(filled, "export", "fruits", "--format", "parquet", "-o", str(out),
                   "--candidate", "tiny+lora-a")
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out)["output"].to_pylist() == [f"tiny+lora-a says {f}" for f in FRUITS]
    every = almanac(filled, "export", "fruits", "--format", "jsonl", "-o", "-")
    assert len(every.stdout.splitlines()) == 9
    wrong = almanac(filled, "export", "fruits", "--format", "jsonl", "-o", "-",
                    "--candidate", "nobody")
    assert wrong.returncode == 2 and "no candidate 'nobody'" in wrong.stderr


# -- HTTP ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(filled: Path) -> Iterator[httpx.Client]:
    server = LiveServer(filled)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
    server.close()


def test_http_pages_every_candidate_and_filters_by_candidate_model_adapter(
        client: httpx.Client) -> None:
    page = client.get("/jobs/fruits/predictions").json()
    assert page["total"] == 9 and page["items"][1]["candidate"] == "tiny+lora-a"
    for params in ({"candidate": "other"}, {"model": "other"}):
        items = client.get("/jobs/fruits/predictions", params=params).json()["items"]
        assert {i["candidate"] for i in items} == {"other"}
    assert client.get("/jobs/fruits/predictions",
                      params={"adapter": "acme/lora-a"}).json()["total"] == 3
    listed = client.get("/jobs/fruits/candidates").json()
    assert [(c["label"], c["model"], c["rows"]) for c in listed] == \
        [("tiny", "tiny", 3), ("tiny+lora-a", "tiny", 3), ("other", "other", 3)]


def test_http_lookups_need_a_candidate_in_a_job_with_several(client: httpx.Client) -> None:
    needs = client.get("/jobs/fruits/predictions/plum")
    assert needs.status_code == 400
    assert needs.json()["error"] == "bad_request" and "tiny, tiny+lora-a, other" in \
        needs.json()["message"]
    got = client.get("/jobs/fruits/predictions/plum", params={"candidate": "tiny+lora-a"})
    assert got.status_code == 200 and got.json()["output"] == "tiny+lora-a says plum"
    assert client.get("/jobs/fruits/predictions/plum",
                      params={"adapter": "acme/lora-a"}).json()["candidate"] == "tiny+lora-a"
    assert client.get("/jobs/fruits/predictions/plum",
                      params={"model": "tiny"}).status_code == 400  # two candidates run it
    assert client.get("/jobs/fruits/predictions/plum",
                      params={"candidate": "nobody"}).status_code == 400
    found = client.post("/jobs/fruits/lookup", params={"model": "other"},
                        json={"ids": ["plum", "kiwi"]}).json()
    assert found["found"]["plum"]["candidate"] == "other" and found["missing"] == ["kiwi"]
    assert client.post("/jobs/fruits/lookup", json={"ids": ["plum"]}).status_code == 400
    assert client.get("/jobs/solo/predictions/plum").json()["candidate"] == "tiny"


# -- the TUI -------------------------------------------------------------------------------------

@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def rows(app: PredictionsScreen) -> list[tuple[str, str]]:
    table = app.screen.query_one(PagedTable)
    return [tuple(str(k.value).split("\x1f")) for k in table.rows]


@pytest.mark.anyio
async def test_the_predictions_screen_shows_whose_each_row_is_and_chooses_one(
        filled: Path) -> None:
    app = tui_app(filled, job="fruits")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, PredictionsScreen)
        assert rows(app) == [(f, c.label) for f in FRUITS for c in (BASE, LORA, OTHER)]
        text = screen_text(app)
        assert "Candidate" in text and "All candidates" in text and "3 candidates" in text
        await pilot.press("k")  # the first candidate alone
        await settle(pilot)
        assert rows(app) == [(f, "tiny") for f in FRUITS]
        assert "candidate tiny" in screen_text(app)
        app.screen.select_candidate("other")
        await settle(pilot)
        assert rows(app) == [(f, "other") for f in FRUITS]
        await pilot.press("k")  # after the last: every candidate again
        await settle(pilot)
        assert len(rows(app)) == 9

        app.screen.select_job("solo")  # one candidate: no chooser, no column
        await settle(pilot)
        assert rows(app) == [("plum", "tiny")]
        assert not app.screen.query_one("#candidate").display
        assert "Candidate" not in screen_text(app)


# -- revisions ---------------------------------------------------------------------------------


def replaced_revision(home: Path) -> None:
    """Job `rev`: predictions of acme/m on an older revision than the catalog's, and on
    the current one."""
    from catalog.models import upsert_model
    from catalog.records import ModelEntry

    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, ModelEntry(ref="acme/m", name="m", source="hub", repo_id="acme/m",
                                   revision="b" * 40))
    catalog.close()
    write(home / "predictions", [record("old", job="rev", model="acme/m", revision="a" * 40),
                                 record("new", job="rev", model="acme/m", revision="b" * 40),
                                 record("local", job="rev", model="acme/m", candidate="other",
                                        revision=None, key=key_for("x"))], job="rev")


def test_query_json_says_when_predictions_were_made_on_an_older_revision(home: Path) -> None:
    replaced_revision(home)
    rows = {r["input_id"]: r for r in json.loads(almanac(home, "query", "rev", "--json").stdout)}
    # One field: the catalog's current revision, beside the record's own `revision`.
    assert all("revision_current" not in r for r in rows.values())
    assert [(rows[i]["revision"], rows[i]["current_revision"]) for i in ("old", "new", "local")] \
        == [("a" * 40, "b" * 40), ("b" * 40, "b" * 40), (None, "b" * 40)]
    assert "current_revision" in almanac(home, "query", "--help").stdout
    table = almanac(home, "query", "rev")
    assert f"made on revision {'a' * 40}; the catalog's current revision is {'b' * 40}" in \
        table.stderr


@pytest.mark.anyio
async def test_the_predictions_screen_says_when_the_model_has_moved_on(home: Path) -> None:
    replaced_revision(home)
    app = tui_app(home, job="rev")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "made on an older revision of acme/m" in screen_text(app)
