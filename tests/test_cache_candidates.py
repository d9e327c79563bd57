"""Candidates in the prediction cache: one job's records by several models (or a model
and its adapters), the latest of each per candidate, readers that select one, gc that
keeps only the current candidates, and indexes and shards written before candidates."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.cache.export import ExportError, export
from batch.cache.gc import gc
from batch.cache.index import FORMAT, CandidateInfo
from batch.cache.schema import arrow_schema, columns
from batch.cache.shards import file_sha256
from batch.cache.store import PredictionStore
from batch.cache.verify import verify
from batch.query import (
    CacheReader,
    CandidateRequiredError,
    Predictions,
    UnknownCandidateError,
    UnknownJobError,
    list_jobs,
)
from tests.cache_support import RUN, index_sql, index_table, key_for, record, write

BASE = CandidateInfo("tiny", "tiny", "sha256:abc", None, None, 0)
LORA = CandidateInfo("tiny+lora-a", "tiny", "sha256:abc", "acme/lora-a", "lora:sha256:11", 1)
OTHER = CandidateInfo("other", "other", "sha256:def", None, None, 2)


@pytest.fixture
def predictions(home: Path) -> Path:
    return home / "predictions"


def by(c: CandidateInfo, input_id: str, *, version: int = 1, **fields: object) -> dict:
    """A record of `input_id` made by candidate `c` (keys differ per candidate, as the
    model and adapter identities are part of them)."""
    return record(input_id, version=version, model=c.model, candidate=c.label,
                  adapter=c.adapter, adapter_revision=c.adapter_revision,
                  key=key_for(f"{c.label}/{input_id}", version), **fields)


def name_candidates(predictions: Path, job: str, infos: list[CandidateInfo]) -> None:
    store = PredictionStore(predictions)
    try:
        store.set_candidates(job, infos)
    finally:
        store.close()


def three_candidates(predictions: Path) -> None:
    name_candidates(predictions, "fruits", [BASE, LORA, OTHER])
    rows = [by(c, i, output=f"{c.label}:{i}") for i in ("plum", "apple", "fig") for c in
            (BASE, LORA, OTHER)]
    rows[4]["error"], rows[4]["output"] = "too long", None  # apple by the adapter failed
    write(predictions, rows, row_group_rows=2)


# -- reading a job with several candidates -------------------------------------------------------


def test_listings_hold_every_candidates_rows_by_input_then_candidate_order(predictions: Path) -> None:
    three_candidates(predictions)
    with Predictions.at(predictions, "fruits") as p:
        rows = p.search(limit=100)
        assert [(r["input_id"], r["candidate"]) for r in rows] == [
            (i, c.label) for i in ("apple", "fig", "plum") for c in (BASE, LORA, OTHER)]
        assert p.count() == 9 and p.count(failed=True) == 1
        # Pages cut through the candidates of one input and go on where they stopped.
        assert p.search(limit=4, offset=2) == rows[2:6]
        assert [r["output"] for r in p.search(contains="plum")] == \
            ["tiny:plum", "tiny+lora-a:plum", "other:plum"]
        assert list_jobs(predictions)[0].rows == 9


def test_a_single_lookup_needs_a_candidate_when_there_are_several(predictions: Path) -> None:
    three_candidates(predictions)
    with Predictions.at(predictions, "fruits") as p:
        for ask in (lambda: p.get("plum"), lambda: p.get_many(["plum"]),
                    lambda: p.versions("plum")):
            with pytest.raises(CandidateRequiredError) as caught:
                ask()
            assert caught.value.exit_code == 2
            assert "tiny, tiny+lora-a, other" in str(caught.value)
        assert p.get("plum", candidate="tiny+lora-a")["output"] == "tiny+lora-a:plum"
        assert p.get("apple", candidate="tiny+lora-a")["error"] == "too long"
        assert set(p.get_many(["plum", "fig", "nope"], candidate="other")) == {"plum", "fig"}
        assert [r["candidate"] for r in p.versions("fig", candidate="tiny")] == ["tiny"]
        with pytest.raises(UnknownCandidateError, match="candidate: .* no candidate 'tiny\\+b'"):
            p.get("plum", candidate="tiny+b")


def test_model_and_adapter_select_the_current_candidates_that_match(predictions: Path) -> None:
    three_candidates(predictions)
    with Predictions.at(predictions, "fruits") as p:
        assert p.select(model="tiny") == ["tiny", "tiny+lora-a"]
        assert p.select(adapter="acme/lora-a") == ["tiny+lora-a"]
        assert p.select(model="tiny", adapter="acme/lora-a") == ["tiny+lora-a"]
        assert p.select(model="nobody") == []
        assert {r["candidate"] for r in p.search(model="tiny")} == {"tiny", "tiny+lora-a"}
        assert p.count(adapter="acme/lora-a", failed=True) == 1
        assert p.search(model="nobody") == [] and p.count(model="nobody") == 0
        summary = {c.label: (c.model, c.adapter, c.rows, c.failed) for c in p.candidates()}
        assert summary == {"tiny": ("tiny", None, 3, 0),
                           "tiny+lora-a": ("tiny", "acme/lora-a", 3, 1),
                           "other": ("other", None, 3, 0)}


def test_the_reader_chooses_a_lookups_candidate_by_model_or_adapter_or_says_why_not(
        predictions: Path) -> None:
    three_candidates(predictions)
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("plum", model="other")["output"] == "other:plum"
        assert p.get("plum", adapter="acme/lora-a")["output"] == "tiny+lora-a:plum"
        assert set(p.get_many(["plum", "fig"], model="other")) == {"plum", "fig"}
        assert [r["candidate"] for r in p.versions("fig", model="tiny", adapter=None,
                                                   candidate="tiny")] == ["tiny"]
        with pytest.raises(CandidateRequiredError, match=r"has 2 candidates \(tiny, "
                           r"tiny\+lora-a\) with model 'tiny'") as several:
            p.get("plum", model="tiny")
        with pytest.raises(UnknownCandidateError, match="no candidate with model 'nobody'") \
                as none:
            p.get_many(["plum"], model="nobody")
        assert several.value.exit_code == none.value.exit_code == 2
        assert several.value.http_status == none.value.http_status == 400


def test_a_lookup_by_model_asks_the_index_once(predictions: Path) -> None:
    """The job's existence, its candidates and the input's latest record: one hold of the
    index connection, three statements (before, a server's lookup took four asks)."""
    three_candidates(predictions)
    with CacheReader(predictions) as reader:
        said: list[str] = []
        reader.query(lambda ix: ix.db.set_trace_callback(said.append), None)
        assert reader.job("fruits").get("fig", model="other")["output"] == "other:fig"
        said.clear()  # the shard is open now, as a server's shards are
        view = reader.job("fruits")  # a name only: nothing asked yet
        assert said == []
        assert view.get("plum", model="other")["output"] == "other:plum"
        assert len(said) == 3, said
        with pytest.raises(UnknownJobError):
            reader.job("ghost").get("plum", model="other")


def test_a_job_with_one_candidate_answers_without_naming_it(predictions: Path) -> None:
    write(predictions, [record("plum"), record("pear", output="pome")])
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("plum")["candidate"] == "tiny"  # a record without one is its model's
        assert [r["input_id"] for r in p.versions("pear")] == ["pear"]
        assert [c.label for c in p.candidates()] == ["tiny"]


def test_the_latest_record_is_per_candidate(predictions: Path) -> None:
    name_candidates(predictions, "fruits", [BASE, LORA])
    write(predictions, [by(BASE, "plum", output="v1"), by(LORA, "plum", output="lora v1")])
    write(predictions, [by(BASE, "plum", version=2, output="v2")], run_id="f" * 32)
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("plum", candidate="tiny")["output"] == "v2"
        assert p.get("plum", candidate="tiny+lora-a")["output"] == "lora v1"
        assert [r["output"] for r in p.versions("plum", candidate="tiny")] == ["v1", "v2"]
        assert p.count(all_versions=True) == 3


def test_candidates_a_run_no_longer_names_leave_reads_and_gc_collects_their_shards(
        predictions: Path, home: Path) -> None:
    three_candidates(predictions)
    (only_other,) = write(predictions, [by(OTHER, "kiwi")], run_id="e" * 32)
    name_candidates(predictions, "fruits", [BASE, LORA])  # the next run drops `other`
    with Predictions.at(predictions, "fruits") as p:
        assert {r["candidate"] for r in p.search(limit=100)} == {"tiny", "tiny+lora-a"}
        assert p.get("kiwi", candidate="tiny") is None
        with pytest.raises(UnknownCandidateError, match="its candidates: tiny, tiny\\+lora-a"):
            p.search(candidate="other")
    assert list_jobs(predictions)[0].rows == 6
    report = gc(predictions, home / "locks")
    assert [c.shard for j in report.jobs for c in j.collected] == [only_other]
    with Predictions.at(predictions, "fruits") as p:
        assert p.count() == 6  # the shard shared with current candidates stays


def test_export_selects_candidates_like_a_listing(predictions: Path, tmp_path: Path) -> None:
    three_candidates(predictions)
    out = tmp_path / "lora.parquet"
    assert export(predictions, "fruits", "parquet", out, adapter="acme/lora-a").written == 3
    table = pq.read_table(out)
    assert table.schema.equals(arrow_schema(), check_metadata=False)
    assert set(table["candidate"].to_pylist()) == {"tiny+lora-a"}
    assert export(predictions, "fruits", "parquet", out).written == 9
    with pytest.raises(UnknownCandidateError):
        export(predictions, "fruits", "parquet", out, candidate="nobody")


def test_openai_batch_exports_one_candidate_named_as_its_request_would_be(
        predictions: Path, tmp_path: Path) -> None:
    three_candidates(predictions)
    out = tmp_path / "out.jsonl"
    # Three answers per custom_id, two of them saying body.model = "tiny": refused.
    with pytest.raises(ExportError, match=r"3 candidates \(tiny, tiny\+lora-a, other\).*"
                                          r"--candidate") as refused:
        export(predictions, "fruits", "openai-batch", out)
    assert refused.value.exit_code == 2 and not out.exists()
    with pytest.raises(ExportError, match="2 candidates"):  # the base and its adapter
        export(predictions, "fruits", "openai-batch", out, model="tiny")
    with pytest.raises(ExportError, match="one line per request"):
        export(predictions, "fruits", "openai-batch", out, candidate="tiny", all_versions=True)

    models = {}
    for c in (BASE, LORA, OTHER):
        done = export(predictions, "fruits", "openai-batch", out, candidate=c.label)
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        ids = [x["custom_id"] for x in lines]
        assert done.written == 3 and sorted(ids) == ["apple", "fig", "plum"]  # each once
        models[c.label] = {x["response"]["body"]["model"] for x in lines if x["response"]}
    # The adapter by its own name, as vLLM serves a LoRA module and a batch line names it.
    assert models == {"tiny": {"tiny"}, "tiny+lora-a": {"acme/lora-a"}, "other": {"other"}}


def test_set_candidates_replaces_the_list_in_its_order(predictions: Path) -> None:
    store = PredictionStore(predictions)
    try:
        store.set_candidates("fruits", [OTHER, BASE])
        later = [replace(LORA, ordinal=0), replace(BASE, ordinal=1)]
        store.set_candidates("fruits", later)
        assert store.candidates("fruits") == later
    finally:
        store.close()


# -- shards and indexes written before candidates ------------------------------------------------

EARLIER = pa.schema([f for f in arrow_schema() if f.name not in ("candidate", "adapter_revision", "chat")])
EARLIER_INDEX = """
CREATE TABLE shards (job TEXT NOT NULL, name TEXT NOT NULL, rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, run_id TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (job, name)) WITHOUT ROWID;
CREATE TABLE records (job TEXT NOT NULL, input_id TEXT NOT NULL, key TEXT NOT NULL,
    shard TEXT NOT NULL, row INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (job, input_id, key)) WITHOUT ROWID;
CREATE INDEX records_by_key ON records (key, failed);
CREATE TABLE latest (job TEXT NOT NULL, input_id TEXT NOT NULL, key TEXT NOT NULL,
    shard TEXT NOT NULL, row INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (job, input_id)) WITHOUT ROWID;
CREATE TABLE fingerprints (path TEXT PRIMARY KEY, signature TEXT NOT NULL, digest TEXT NOT NULL);
"""


def earlier_cache(root: Path) -> tuple[Path, Path]:
    """A cache as the version before candidates left it: two jobs, the first with two
    versions of `plum` and `latest` pointing back at the older (a prompt changed back),
    and a shard the index lists that is away from the disk: (where it is, where it
    belongs)."""
    shards = {
        ("fruits", "part-20240501T000000000000-aaaaaaaa-00000.parquet"):
            [record("plum", output="old"), record("pear", error="boom")],
        ("fruits", "part-20240502T000000000000-bbbbbbbb-00000.parquet"):
            [record("plum", version=2, output="new")],
        ("fruits", "part-20240503T000000000000-cccccccc-00000.parquet"):
            [record("fig", output="lost")],
        ("veg", "part-20240501T000000000000-dddddddd-00000.parquet"):
            [record("leek", job="veg", model="other", adapter="lora:sha256:22")],
    }
    root.mkdir(parents=True)
    db = sqlite3.connect(root / "index.db")
    with db:
        db.executescript(EARLIER_INDEX)
        for (job, name), rows in shards.items():
            for r in rows:
                del r["candidate"], r["adapter_revision"]
            path = root / job / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows, schema=EARLIER), path)
            db.execute("INSERT INTO shards VALUES (?, ?, ?, ?, ?, ?, '2024-05-01T00:00:00+00:00')",
                       (job, name, len(rows), path.stat().st_size, file_sha256(path), RUN))
            for i, r in enumerate(rows):
                for table in ("records", "latest"):
                    db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
                               (job, r["input_id"], r["key"], name, i, int(bool(r["error"]))))
        old_plum = next(iter(shards))[1]
        db.execute("UPDATE latest SET key = ?, shard = ?, row = 0 WHERE input_id = 'plum'",
                   (key_for("plum", 1), old_plum))
    db.close()
    lost = root / "fruits" / list(shards)[2][1]
    aside = root.parent / "aside.parquet"
    lost.rename(aside)
    return aside, lost


def test_an_index_written_before_candidates_is_upgraded_and_keeps_every_answer(
        predictions: Path, tmp_path: Path) -> None:
    aside, lost = earlier_cache(predictions)
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("plum")["output"] == "old"  # still the record `latest` chose
        assert p.get("pear")["error"] == "boom"
        assert [r["output"] for r in p.versions("plum")] == ["old", "new"]
        assert p.get("plum")["candidate"] == "tiny" and p.get("plum")["adapter_revision"] is None
    with Predictions.at(predictions, "veg") as p:
        # The earlier `adapter` column (an identity) reads back as it was written.
        leek = p.get("leek")
        assert (leek["candidate"], leek["adapter"]) == ("other", "lora:sha256:22")
    assert index_sql(predictions, "PRAGMA user_version") == [(FORMAT,)]
    # The lost shard's record took its job's candidate; verify reports the file.
    assert [r[2] for r in index_table(predictions, "records") if r[1] == "fig"] == ["tiny"]
    assert [(r[0], r[1], r[6]) for r in index_table(predictions, "candidates")] == \
        [("fruits", "tiny", 0), ("veg", "other", 0)]
    assert [f.kind for f in verify(predictions).problems] == ["missing"]
    aside.rename(lost)
    assert verify(predictions).ok
    out = tmp_path / "fruits.parquet"
    assert export(predictions, "fruits", "parquet", out).written == 3
    assert set(pq.read_table(out)["candidate"].to_pylist()) == {"tiny"}


def test_a_run_extends_an_upgraded_index_and_old_and_new_shards_read_together(
        predictions: Path) -> None:
    aside, lost = earlier_cache(predictions)
    write(predictions, [record("kiwi", output="berry")], run_id="f" * 32)  # a new writer
    aside.rename(lost)
    with Predictions.at(predictions, "fruits") as p:
        assert {r["input_id"]: r["output"] for r in p.search()} == \
            {"fig": "lost", "kiwi": "berry", "pear": None, "plum": "old"}
        assert set(p.get("kiwi")) == set(columns()) == set(p.get("plum"))
    assert verify(predictions, "veg").ok


def test_an_index_of_a_newer_format_is_refused_not_rewritten(predictions: Path) -> None:
    write(predictions, [record("plum")])
    db = sqlite3.connect(predictions / "index.db")
    db.execute(f"PRAGMA user_version = {FORMAT + 1}")
    db.close()
    with pytest.raises(Exception, match="upgrade Almanac") as caught:
        Predictions.at(predictions, "fruits")
    assert getattr(caught.value, "exit_code", None) == 1
    with pytest.raises(Exception, match="upgrade Almanac"):
        PredictionStore(predictions)
