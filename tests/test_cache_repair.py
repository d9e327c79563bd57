"""`almanac cache repair`: what a missing or damaged shard held leaves the index (the
damaged file kept aside, never deleted), crash leftovers are put right, and the index
is rebuilt from the files where it contradicts them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.cache.errors import RowMismatchError
from batch.cache.index import Located
from batch.cache.lock import JobLock, JobLockedError
from batch.cache.repair import repair
from batch.cache.schema import arrow_schema
from batch.cache.shards import file_sha256
from batch.cache.store import PredictionStore
from batch.cache.verify import verify
from batch.query import Predictions
from tests.cache_support import index_table, key_for, record, relabel_row, unindex_shard, write
from tests.damage import flip_in_column, truncate
from tests.engine_support import almanac


@pytest.fixture
def predictions(home: Path) -> Path:
    return home / "predictions"


@pytest.fixture
def shards(predictions: Path) -> list[Path]:
    """Four shards of ten rows: shard i holds r{10i} … r{10i+9}; and another job."""
    names = write(predictions, [record(f"r{i:02d}", output=f"drupe {i}") for i in range(40)],
                  shard_rows=10)
    write(predictions, [record("leek", job="veg")], job="veg")
    return [predictions / "fruits" / name for name in names]


def test_repair_drops_what_lost_shards_held_and_keeps_the_damaged_files(
        shards: list[Path], predictions: Path, home: Path) -> None:
    truncate(shards[0])
    flip_in_column(shards[1], "output")
    shards[2].unlink()
    flipped = shards[1].read_bytes()
    before = sorted(p.name for p in (predictions / "fruits").iterdir())

    dry = almanac(home, "cache", "repair", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["inputs"] == 30 and len(planned["shards"]) == 3
    assert sorted(p.name for p in (predictions / "fruits").iterdir()) == before

    cli = almanac(home, "cache", "repair", "fruits")
    assert cli.returncode == 0, cli.stderr
    assert "generates 30 inputs again" in cli.stderr and "Traceback" not in cli.stderr
    assert {line.split()[2] for line in cli.stdout.splitlines()[1:]} == {"damaged", "missing"}
    kept = predictions / "fruits" / f".{shards[1].name}.damaged"
    assert kept.read_bytes() == flipped  # the evidence, as it was
    assert (predictions / "fruits" / f".{shards[0].name}.damaged").exists()
    assert not shards[0].exists() and not shards[1].exists()

    report = verify(predictions)
    assert report.ok and sorted(n.kind for n in report.notes) == ["damaged-kept"] * 2
    with Predictions.at(predictions, "fruits") as p:
        assert p.get_many([f"r{i:02d}" for i in range(40)]).keys() == \
            {f"r{i}" for i in range(30, 40)}
        assert p.count() == 10 and p.search(contains="drupe 3")[0]["input_id"] == "r30"
    assert [r[1] for r in index_table(predictions, "records") if r[0] == "veg"] == ["leek"]
    again = almanac(home, "cache", "repair", "--json")
    assert json.loads(again.stdout)["changed"] is False


def test_a_job_whose_every_shard_was_lost_is_repaired_then_has_nothing_to_repair(
        shards: list[Path], predictions: Path, home: Path) -> None:
    for shard in shards:
        shard.unlink()
    assert repair(predictions, home / "locks").inputs == 40
    for dry_run in (True, False):  # the job is still there, with no rows left
        again = repair(predictions, home / "locks", dry_run=dry_run)
        assert again.changed is False and again.inputs == 0


def test_repair_changes_nothing_while_a_run_holds_a_lock(shards: list[Path], predictions: Path,
                                                         home: Path) -> None:
    shards[2].unlink()
    with JobLock(home / "locks", "veg"):
        with pytest.raises(JobLockedError):
            repair(predictions, home / "locks", job="fruits")
        cli = almanac(home, "cache", "repair")
        assert cli.returncode == 75 and "Traceback" not in cli.stderr
    assert [f.kind for f in verify(predictions).problems] == ["missing"]
    assert repair(predictions, home / "locks").inputs == 10


def test_repair_cleans_up_after_a_crash_and_sets_aside_a_landed_shard_that_is_damaged(
        shards: list[Path], predictions: Path, home: Path) -> None:
    directory = predictions / "fruits"
    unindex_shard(predictions, shards[3].name)  # landed, never indexed: good rows
    late = record("r40", output="late", candidate="tiny")
    bad = directory / "part-99991231T000000000000-cccccccc-00000.parquet"
    pq.write_table(pa.Table.from_pylist([late], schema=arrow_schema()), bad,
                   write_page_checksum=True)
    flip_in_column(bad, "output")
    (directory / ".part-x.parquet.tmp").write_bytes(b"half a shard")

    report = repair(predictions, home / "locks", job="fruits")
    assert (report.indexed, report.removed_tmp) == (1, 1)
    assert [(r.shard, r.problem) for r in report.shards] == [(bad.name, "damaged-unindexed")]
    assert (directory / f".{bad.name}.damaged").exists() and not bad.exists()
    assert verify(predictions).ok
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r35")["output"] == "drupe 35" and p.get("r40") is None


def test_repair_rebuilds_entries_that_contradict_intact_files_and_keeps_latest_choices(
        shards: list[Path], predictions: Path, home: Path) -> None:
    (newer,) = write(predictions, [record("r05", version=2, output="drupe v2")], run_id="f" * 32)
    store = PredictionStore(predictions)
    try:  # a prompt changed back: the first version is r05's latest again
        store.index.repoint("fruits", "tiny", [Located("fruits", "r05", key_for("r05"), shards[0].name,
                                                 5, False, "tiny")])
    finally:
        store.close()
    relabel_row(predictions, shards[2].name, 3, "r20")  # the index now contradicts the file
    assert {f.kind for f in verify(predictions).problems} == {"index-mismatch", "latest-mismatch"}

    report = repair(predictions, home / "locks")
    assert report.rebuilt == ["fruits"] and report.shards == []
    assert verify(predictions).ok
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r23")["output"] == "drupe 23" and p.get("r20")["output"] == "drupe 20"
        assert p.get("r05")["output"] == "drupe 5"  # the choice made, kept
        assert [r["output"] for r in p.versions("r05")] == ["drupe 5", "drupe v2"]
    assert newer


def test_a_runs_recovery_drops_shards_gone_truncated_or_written_over_and_trusts_a_touch(
        shards: list[Path], predictions: Path) -> None:
    truncate(shards[0])
    flip_in_column(shards[1], "output")  # the same size, but its stat changed
    shards[2].unlink()
    shards[3].touch()  # its stat changed too, its bytes did not
    store = PredictionStore(predictions)
    try:
        assert store.recover("fruits") == {"removed_tmp": 0, "indexed": 0, "lost": 3}
        assert store.latest_for("fruits", "tiny", [f"r{i:02d}" for i in range(40)]).keys() == \
            {f"r{i}" for i in range(30, 40)}
        assert store.recover("fruits")["lost"] == 0  # the touched one's stat is recorded now
    finally:
        store.close()
    kept = sorted(p.name for p in (predictions / "fruits").glob(".*.damaged"))
    assert kept == sorted(f".{p.name}.damaged" for p in shards[:2])
    assert verify(predictions).ok


# -- another job's shards in a job's directory ------------------------------------------------


def test_another_jobs_shards_copied_into_a_directory_are_found_and_set_aside_not_adopted(
        shards: list[Path], predictions: Path, home: Path) -> None:
    veg = predictions / "veg"
    for shard in shards:
        shutil.copy2(shard, veg / shard.name)
    found = verify(predictions, "veg")
    assert sorted((f.shard, f.kind) for f in found.problems) == \
        sorted((s.name, "foreign") for s in shards)
    assert "holds rows of job 'fruits'" in found.problems[0].detail

    cli = almanac(home, "cache", "repair", "--json")
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert sorted((r["shard"], r["problem"], r["kept_as"]) for r in report["shards"]) == \
        sorted((s.name, "foreign", f".{s.name}.foreign") for s in shards)
    assert report["indexed"] == 0
    assert len(list(veg.glob("*.parquet"))) == 1  # leek's own shard
    checked = verify(predictions)
    assert checked.ok and {n.kind for n in checked.notes} == {"foreign-kept"}
    with Predictions.at(predictions, "veg") as p:
        assert p.get("r01") is None and p.count() == 1 and p.get("leek")["job"] == "veg"
    assert [r[1] for r in index_table(predictions, "records") if r[0] == "veg"] == ["leek"]


def test_a_runs_recovery_never_indexes_another_jobs_shard(shards: list[Path],
                                                          predictions: Path) -> None:
    copied = predictions / "veg" / shards[0].name
    shutil.copy2(shards[0], copied)
    store = PredictionStore(predictions)
    try:
        assert store.recover("veg")["indexed"] == 0
        assert store.latest_for("veg", "tiny", ["r01"]) == {}
    finally:
        store.close()
    assert not copied.exists() and copied.with_name(f".{copied.name}.foreign").exists()


def test_a_foreign_shard_an_index_already_lists_is_refused_found_and_set_aside(
        shards: list[Path], predictions: Path, home: Path) -> None:
    copied = predictions / "veg" / shards[0].name
    shutil.copy2(shards[0], copied)
    store = PredictionStore(predictions)
    try:  # as an earlier version's recovery indexed it
        rows = [(r["input_id"], r["key"], False, r["candidate"]) for r in
                pq.read_table(copied, columns=["input_id", "key", "candidate"]).to_pylist()]
        store.index.add_shard("veg", copied.name, "x" * 32, rows, copied.stat().st_size,
                              file_sha256(copied))
    finally:
        store.close()
    with Predictions.at(predictions, "veg") as p, \
            pytest.raises(RowMismatchError, match="which holds job 'fruits'.*cache verify veg"):
        p.get("r01")
    assert [(f.shard, f.kind) for f in verify(predictions, "veg").problems] == \
        [(copied.name, "foreign")]
    report = repair(predictions, home / "locks", job="veg")
    assert [(r.problem, r.records, r.kept_as) for r in report.shards] == \
        [("foreign", 10, f".{copied.name}.foreign")]
    assert verify(predictions).ok
    with Predictions.at(predictions, "veg") as p:
        assert p.get("r01") is None and p.get("leek")["output"] == "drupe"


# -- the latest version, by run order, through rebuilds and losses -----------------------------


def destroy_index(predictions: Path) -> None:
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (predictions / name).unlink(missing_ok=True)


def test_a_rebuild_without_the_shard_holding_an_inputs_latest_leaves_it_missing_not_rolled_back(
        shards: list[Path], predictions: Path, home: Path) -> None:
    (newer,) = write(predictions, [record("r05", version=2, output="drupe 5 v2")], run_id="f" * 32)
    destroy_index(predictions)
    flip_in_column(predictions / "fruits" / newer, "output")

    cli = almanac(home, "cache", "repair", "--json")
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert [(r["shard"], r["problem"], r["inputs"]) for r in report["shards"]] == \
        [(newer, "damaged-unindexed", 1)]
    assert verify(predictions).ok
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r05") is None  # its latest was lost: missing, not v1 again
        assert [r["output"] for r in p.versions("r05")] == ["drupe 5"]
        assert p.get("r04")["output"] == "drupe 4" and p.count() == 39


def test_a_shard_indexed_late_never_takes_the_latest_from_one_written_after_it(
        shards: list[Path], predictions: Path) -> None:
    write(predictions, [record("r05", version=2, output="drupe 5 v2")], run_id="f" * 32)
    unindex_shard(predictions, shards[0].name)  # the first run's shard, indexed again last
    store = PredictionStore(predictions)
    try:
        assert store.recover("fruits")["indexed"] == 1
    finally:
        store.close()
    assert verify(predictions).ok
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r05")["output"] == "drupe 5 v2" and p.get("r04")["output"] == "drupe 4"
        assert [r["output"] for r in p.versions("r05")] == ["drupe 5", "drupe 5 v2"]


def test_verify_finds_an_input_rolled_back_to_a_version_older_than_a_lost_one(
        shards: list[Path], predictions: Path, home: Path) -> None:
    (newer,) = write(predictions, [record("r05", version=2, output="drupe 5 v2")], run_id="f" * 32)
    destroy_index(predictions)
    path = predictions / "fruits" / newer
    flip_in_column(path, "output")
    kept = path.with_name(f".{newer}.damaged")
    path.rename(kept)  # set aside, then the index rebuilt as if it had never been
    store = PredictionStore(predictions)
    try:
        store.recover("fruits")
        store.recover("veg")
    finally:
        store.close()
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r05")["output"] == "drupe 5"  # rolled back

    found = verify(predictions)
    assert [(f.shard, f.kind) for f in found.problems] == [(kept.name, "rolled-back")]
    assert "'r05'" in found.problems[0].detail
    assert repair(predictions, home / "locks").rolled_back == 1
    assert verify(predictions).ok
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r05") is None and p.get("r04")["output"] == "drupe 4"
