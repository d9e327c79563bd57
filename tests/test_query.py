"""Reading cached predictions: the Python API, `almanac query` and `almanac export`."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from almanac import api
from batch.cache.index import Located
from batch.cache.reader import PARALLEL_ROWS, CacheReader
from batch.query import (
    JobInfo,
    Predictions,
    ShardUnavailableError,
    UnknownJobError,
    list_jobs,
)
from tests.cache_support import key_for, record, write
from tests.engine_support import almanac

if TYPE_CHECKING:  # the runner imports the engine's room: only the engine test needs it
    from batch.run.runner import Runner


@pytest.fixture
def predictions(home: Path) -> Path:
    return home / "predictions"


def _varied(n: int) -> list[dict]:
    """Rows whose columns vary differently: constant, all-null, mixed, lists."""
    rows = []
    for i in range(n):
        extra = {}
        if i % 7 == 3:
            extra["outputs"] = [f"a{i}", f"b{i}"]
        if i % 5 == 0:
            extra["logprobs"] = json.dumps([-0.1 * i])
        if i >= 20:
            extra["adapter"] = "lora-x"
        rows.append(record(f"in-{i:03d}", error="too long" if i % 6 == 5 else None,
                           output=f"Drupe {i}", **extra))
    return rows


# -- lookups ----------------------------------------------------------------------------------


def test_get_returns_exactly_the_parquet_row_for_every_input(predictions: Path) -> None:
    write(predictions, _varied(40), row_group_rows=4, shard_rows=15)
    plain = {r["input_id"]: r for r in ds.dataset(predictions / "fruits").to_table().to_pylist()}

    with Predictions.at(predictions, "fruits") as p:
        for input_id, expected in plain.items():
            assert p.get(input_id) == expected
        assert p.get_many(list(plain)) == plain
        assert p.get("nope") is None


def test_open_resolves_the_home_like_the_cli(predictions: Path, home: Path) -> None:
    write(predictions, [record("plum")])
    with api.Predictions.open(None, "fruits") as p:  # ALMANAC_HOME points at `home`
        assert p.get("plum")["output"] == "drupe"
    with api.Predictions.open(str(home), "fruits") as p:
        assert p.get("plum") is not None
    assert [j.job for j in api.list_jobs()] == ["fruits"]


def test_unknown_job_raises_and_bad_names_are_unknown(predictions: Path) -> None:
    with pytest.raises(UnknownJobError, match="'nope'"):
        Predictions.at(predictions, "nope")  # not even an index yet
    write(predictions, [record("plum")])
    for name in ("nope", "../fruits", ""):
        with pytest.raises(UnknownJobError):
            Predictions.at(predictions, name)


def test_latest_version_wins_and_every_version_stays_reachable(predictions: Path) -> None:
    write(predictions, [record("plum", version=1, output="pome"), record("pear")])
    write(predictions, [record("plum", version=2, output="drupe")], run_id="f" * 32)

    with Predictions.at(predictions, "fruits") as p:
        assert p.get("plum")["output"] == "drupe"
        assert [r["output"] for r in p.versions("plum")] == ["pome", "drupe"]
        assert p.count() == 2 and p.count(all_versions=True) == 3
        assert [r["input_id"] for r in p.search(all_versions=True)] == ["pear", "plum", "plum"]
        assert p.by_key(key_for("plum", 1))["output"] == "pome"  # old versions by key too


def test_get_many_skips_missing_ids_and_handles_more_than_a_query_holds(predictions: Path) -> None:
    write(predictions, [record(f"id{i:04d}") for i in range(1200)], row_group_rows=64)
    ids = [f"id{i:04d}" for i in range(0, 1200, 2)] + ["missing", "id0000"]
    with Predictions.at(predictions, "fruits") as p:
        found = p.get_many(ids)
    assert sorted(found) == sorted(f"id{i:04d}" for i in range(0, 1200, 2))
    assert all(found[k]["input_id"] == k for k in found)


def test_get_many_across_more_shards_than_a_reader_keeps_open(predictions: Path) -> None:
    """Enough rows to decode shards two at a time, from more shards than the reader keeps
    open: every row comes back whole and in its place."""
    rows = [record(f"id{i:04d}", output=f"drupe {i}") for i in range(PARALLEL_ROWS + 44)]
    assert len(write(predictions, rows, shard_rows=10)) > 4
    plain = {r["input_id"]: r for r in ds.dataset(predictions / "fruits").to_table().to_pylist()}
    with CacheReader(predictions, open_shards=4) as reader:
        assert reader.job("fruits").get_many(list(reversed(plain))) == plain


def test_by_key_prefers_a_success(predictions: Path) -> None:
    shared = key_for("shared")
    write(predictions, [record("a", key=shared, error="boom"), record("b", key=shared, output="ok")])
    with Predictions.at(predictions, "fruits") as p:
        assert p.by_key(shared)["input_id"] == "b"
        assert p.by_key("0" * 64) is None


# Two keys of one job begin alike for 9 characters; a failure's key is text.
TWINS = ["abcdef012" + "0" * 55, "abcdef013" + "1" * 55]
FAILURE = "x" + "5" * 63


def _twins(predictions: Path) -> None:
    write(predictions, [record("a", key=TWINS[0], output="first"),
                        record("b", key=TWINS[1], output="second"),
                        record("c", key=FAILURE, error="line 3: not JSON")])
    write(predictions, [record("d", job="other", key="abcdef01" + "f" * 56)], job="other")


def test_by_key_takes_the_beginning_of_one_key_like_git(predictions: Path) -> None:
    from batch.query import AmbiguousKeyError

    _twins(predictions)
    with Predictions.at(predictions, "fruits") as p:
        assert p.by_key("abcdef012")["input_id"] == "a"  # an odd number of characters
        assert p.by_key("ABCDEF0131111")["input_id"] == "b"  # hex in either case
        assert p.by_key(TWINS[1][:40])["input_id"] == "b"  # past the index's 8 bytes
        assert p.by_key(FAILURE[:8])["input_id"] == "c"  # a key stored as text
        assert p.by_key("abcdef0") is None  # 7 characters: a whole key or nothing
        assert p.by_key("abcdef014") is None
        with pytest.raises(AmbiguousKeyError) as ambiguous:
            p.by_key("abcdef01")  # both keys of this job; the other job's does not count
    assert ambiguous.value.exit_code == 2 and ambiguous.value.keys == TWINS
    assert str(ambiguous.value) == (f"key 'abcdef01' is the beginning of 2 keys: {TWINS[0]}, "
                                    f"{TWINS[1]}; give more of it")
    with Predictions.at(predictions, "other") as p:
        assert p.by_key("abcdef01")["input_id"] == "d"


def test_query_key_takes_a_prefix_and_an_ambiguous_one_is_a_usage_error(
        predictions: Path, home: Path) -> None:
    from click.testing import CliRunner

    from almanac.cli import cli

    _twins(predictions)

    def query(*args: str):
        return CliRunner().invoke(cli, ["--home", str(home), "query", "fruits", *args],
                                  catch_exceptions=False)

    found = query("--key", TWINS[1][:12], "--json")
    assert found.exit_code == 0 and json.loads(found.stdout)[0]["key"] == TWINS[1]
    ambiguous = query("--key", "abcdef01")
    assert ambiguous.exit_code == 2 and ambiguous.stdout == ""
    assert all(k in ambiguous.stderr for k in TWINS) and "Traceback" not in ambiguous.stderr
    short = query("--key", "abcdef0")
    assert short.exit_code == 1 and short.stdout == ""
    assert "needs 8 characters or more" in short.stderr


def test_search_filters_and_pages_in_input_order(predictions: Path) -> None:
    write(predictions, _varied(30), row_group_rows=4)
    write(predictions, [record("zz-other-model", model="other", output="PEAR")], run_id="e" * 32)
    with Predictions.at(predictions, "fruits") as p:
        everything = p.search(limit=1000)
        assert [r["input_id"] for r in everything] == sorted(r["input_id"] for r in everything)
        assert p.count() == 31

        failed = p.search(failed=True, limit=100)
        assert failed and all(r["error"] for r in failed)
        assert p.count(failed=True) == len(failed) == 5
        assert p.count(failed=False) == 26

        assert [r["input_id"] for r in p.search(contains="drupe 1", limit=100)] == \
            [f"in-{i:03d}" for i in (1, 10, 12, 13, 14, 15, 16, 18, 19)]  # 11, 17 failed
        assert p.count(contains="DRUPE 1") == 9
        assert [r["input_id"] for r in p.search(model="other")] == ["zz-other-model"]
        assert p.count(contains="pear", model="other") == 1 and p.count(contains="pear", model="tiny") == 0

        page = [r["input_id"] for r in p.search(limit=4, offset=8)]
        assert page == [r["input_id"] for r in everything[8:12]]
        assert [r["input_id"] for r in p.search(contains="drupe", limit=3, offset=2)] == \
            [r["input_id"] for r in p.search(contains="drupe", limit=100)[2:5]]


def test_search_with_a_text_filter_skips_superseded_rows(predictions: Path) -> None:
    write(predictions, [record("plum", version=1, output="drupe, old")])
    write(predictions, [record("plum", version=2, output="drupe, new")], run_id="f" * 32)
    with Predictions.at(predictions, "fruits") as p:
        assert [r["output"] for r in p.search(contains="drupe")] == ["drupe, new"]
        assert [r["output"] for r in p.search(contains="drupe", all_versions=True)] == \
            ["drupe, old", "drupe, new"]


def test_list_jobs_reports_rows_failures_shards_and_bytes(predictions: Path) -> None:
    assert list_jobs(predictions) == []
    shards = write(predictions, [record("a"), record("b", error="x"), record("c")], shard_rows=2)
    write(predictions, [record("a", version=2)], job="fruits", run_id="f" * 32)
    write(predictions, [record("q", job="veg")], job="veg")

    jobs = {j.job: j for j in list_jobs(predictions)}
    assert sorted(jobs) == ["fruits", "veg"]
    fruits = jobs["fruits"]
    assert isinstance(fruits, JobInfo)
    assert (fruits.rows, fruits.failed, fruits.shards) == (3, 1, len(shards) + 1)
    on_disk = sum(f.stat().st_size for f in (predictions / "fruits").glob("*.parquet"))
    assert fruits.bytes == on_disk and fruits.last_written is not None
    with Predictions.at(predictions, "veg") as p:
        assert p.info() == jobs["veg"]


# -- shards changing under a reader --------------------------------------------------------------


def test_a_vanished_shard_is_retried_once_then_reported(predictions: Path) -> None:
    (shard,) = write(predictions, [record("plum")])
    with Predictions.at(predictions, "fruits") as p:
        (predictions / "fruits" / shard).unlink()
        with pytest.raises(ShardUnavailableError, match="cache verify fruits"):
            p.get("plum")


def test_a_reader_relocates_after_the_index_moved_on(predictions: Path) -> None:
    """The first location is stale (its shard is gone), the second is current: the
    lookup succeeds on its single retry."""
    (old,) = write(predictions, [record("plum", version=1, output="old")])
    (new,) = write(predictions, [record("plum", version=2, output="new")], run_id="f" * 32)
    (predictions / "fruits" / old).unlink()
    answers = iter([[Located("fruits", "plum", key_for("plum", 1), old, 0, False, "tiny")],
                    [Located("fruits", "plum", key_for("plum", 2), new, 0, False, "tiny")]])
    with Predictions.at(predictions, "fruits") as p:
        assert [r["output"] for r in p._resolve(lambda: next(answers))] == ["new"]


def test_a_shard_replaced_by_another_file_is_not_trusted(predictions: Path) -> None:
    """Size and row count must be as indexed (`cache verify` compares checksums)."""
    (first,) = write(predictions, [record("plum")])
    (second,) = write(predictions, [record("pear"), record("fig")], run_id="f" * 32)
    directory = predictions / "fruits"
    (directory / first).write_bytes((directory / second).read_bytes())
    with Predictions.at(predictions, "fruits") as p:
        with pytest.raises(ShardUnavailableError, match="the index recorded"):
            p.get("plum")
        assert p.get("pear")["input_id"] == "pear"
    (directory / first).write_bytes(b"PAR1" + b"\0" * 100)  # no longer Parquet at all
    with Predictions.at(predictions, "fruits") as p, pytest.raises(ShardUnavailableError):
        p.get("plum")


def test_lookups_succeed_while_a_run_writes_and_see_each_shard_once_it_lands(predictions: Path) -> None:
    write(predictions, [record(f"old{i}") for i in range(50)])
    landed: list[str] = []  # ids whose shard has been written and indexed
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            from batch.cache.store import PredictionStore, ShardWriter

            store = PredictionStore(predictions)
            with ShardWriter(store, "fruits", "f" * 32, shard_rows=25, row_group_rows=8) as w:
                for i in range(400):
                    w.add(record(f"new{i:03d}", output=f"n{i}"))
                    if (i + 1) % 25 == 0:  # flush() has returned: the shard is indexed
                        landed.extend(f"new{j:03d}" for j in range(i - 24, i + 1))
            store.close()
        except BaseException as exc:  # reported by the main thread's assertion
            errors.append(exc)
        finally:
            done.set()

    lookups = 0
    with Predictions.at(predictions, "fruits") as p:
        writer = threading.Thread(target=run)
        writer.start()
        while not done.is_set():
            assert p.get(f"old{lookups % 50}")["output"] == "drupe"
            visible = list(landed)
            if visible:
                assert p.get(visible[-1]) is not None  # indexed before `landed` said so
                assert len(p.get_many(visible)) == len(visible)
            lookups += 1
        writer.join()
        assert not errors, errors
        assert len(p.get_many([f"new{i:03d}" for i in range(400)])) == 400
    assert lookups > 0


# -- the command line ---------------------------------------------------------------------------


def test_query_cli_lists_looks_up_and_fails_clearly(predictions: Path, home: Path) -> None:
    write(predictions, _varied(12))

    table = almanac(home, "query", "fruits", "--limit", "3")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["INPUT", "KEY", "OUTPUT"]
    assert "in-000" in table.stdout and "1–3 of 12" in table.stderr
    # Each row's short key, which --key takes back.
    assert table.stdout.splitlines()[1].split()[:2] == ["in-000", key_for("in-000")[:12]]

    got = almanac(home, "query", "fruits", "--input-id", "in-001", "--input-id", "in-002", "--json")
    assert got.returncode == 0 and [r["output"] for r in json.loads(got.stdout)] == ["Drupe 1", "Drupe 2"]

    lines = almanac(home, "query", "fruits", "--failed", "--jsonl").stdout.splitlines()
    assert [json.loads(x)["input_id"] for x in lines] == ["in-005", "in-011"]

    rows = list(csv.DictReader(io.StringIO(almanac(home, "query", "fruits", "--contains", "drupe 1",
                                                   "--csv").stdout)))
    assert [r["input_id"] for r in rows] == ["in-001", "in-010"]

    by_key = almanac(home, "query", "fruits", "--key", key_for("in-003"), "--json")
    assert json.loads(by_key.stdout)[0]["input_id"] == "in-003"

    partly = almanac(home, "query", "fruits", "--input-id", "in-001", "--input-id", "ghost", "--jsonl")
    assert partly.returncode == 1
    assert json.loads(partly.stdout)["input_id"] == "in-001"  # what exists is still printed
    assert "ghost" in partly.stderr and "Traceback" not in partly.stderr
    none = almanac(home, "query", "fruits", "--input-id", "ghost")
    assert none.returncode == 1 and none.stdout == ""  # no header: stdout is data alone
    assert "ghost" in none.stderr

    unknown = almanac(home, "query", "nojob")
    assert unknown.returncode == 1 and "no cached predictions for job 'nojob'" in unknown.stderr

    assert almanac(home, "query", "fruits", "--json", "--csv").returncode == 2
    assert almanac(home, "query", "fruits", "--key", "k", "--failed").returncode == 2


# -- exports -------------------------------------------------------------------------------------


def test_exports_hold_the_latest_rows_in_every_format(predictions: Path, home: Path, tmp_path: Path) -> None:
    write(predictions, _varied(10))
    write(predictions, [record("in-000", version=2, output="newer")], run_id="f" * 32)

    out = tmp_path / "out.parquet"
    assert almanac(home, "export", "fruits", "--format", "parquet", "-o", str(out)).returncode == 0
    table = pq.read_table(out).to_pylist()
    assert len(table) == 10 and {r["input_id"]: r["output"] for r in table}["in-000"] == "newer"

    everything = tmp_path / "all.jsonl"
    assert almanac(home, "export", "fruits", "--format", "jsonl", "--all", "-o", str(everything)).returncode == 0
    assert len(everything.read_text().splitlines()) == 11

    csv_out = almanac(home, "export", "fruits", "--format", "csv", "-o", "-")
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert len(rows) == 10 and "exported 10" in csv_out.stderr
    assert json.loads(next(r for r in rows if r["input_id"] == "in-003")["outputs"]) == ["a3", "b3"]

    assert almanac(home, "export", "nojob", "--format", "csv", "-o", "-").returncode == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_openai_batch_export_reads_as_openai_batch_output(predictions: Path, home: Path,
                                                           tmp_path: Path) -> None:
    openai_types = pytest.importorskip("openai.types")
    write(predictions, _varied(8))  # plain prompts: answered as text completions
    out = tmp_path / "batch_output.jsonl"
    assert almanac(home, "export", "fruits", "--format", "openai-batch", "-o", str(out)).returncode == 0

    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len({x["id"] for x in lines}) == 8
    by_id = {x["custom_id"]: x for x in lines}
    ok, failed, multi = by_id["in-000"], by_id["in-005"], by_id["in-003"]
    assert ok["error"] is None and ok["response"]["status_code"] == 200
    completion = openai_types.Completion.model_validate(ok["response"]["body"])
    assert completion.choices[0].text == "Drupe 0"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert [c.text for c in openai_types.Completion.model_validate(
        multi["response"]["body"]).choices] == ["a3", "b3"]
    assert failed["response"] is None and failed["error"]["message"] == "too long"


# -- a real run ---------------------------------------------------------------------------------


@pytest.mark.engine
def test_a_real_runs_predictions_read_back_through_api_and_cli(runner: Runner, home: Path,
                                                               tmp_path: Path) -> None:
    from batch.run.spec.job import load_spec
    from tests.engine_support import write_job

    rows = [{"id": f"w{i}", "word": w} for i, w in enumerate(["plum", "pear", "fig", "lime"])]
    result = runner.run(load_spec(write_job(tmp_path / "job", "words", rows, shard_rows=3)))
    assert result.status == "ok"

    with api.Predictions.open(home, "words") as p:
        found = p.get_many([r["id"] for r in rows])
        assert sorted(found) == ["w0", "w1", "w2", "w3"]
        assert all(r["run_id"] == result.run_id and r["output"] is not None for r in found.values())
        assert p.by_key(found["w2"]["key"])["input_id"] == "w2"
    cli = almanac(home, "query", "words", "--input-id", "w1", "--json")
    assert cli.returncode == 0 and json.loads(cli.stdout)[0]["output"] == found["w1"]["output"]
    exported = almanac(home, "export", "words", "--format", "openai-batch", "-o", "-")
    assert {json.loads(x)["custom_id"] for x in exported.stdout.splitlines()} == set(found)
