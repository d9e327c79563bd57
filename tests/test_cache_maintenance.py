"""`almanac cache verify` finds damage; `almanac cache gc` removes only what no lookup needs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch.cache.gc import gc
from batch.cache.lock import JobLock, JobLockedError
from batch.cache.verify import VerifyReport, verify
from batch.query import Predictions
from tests.cache_support import index_table, record, relabel_row, unindex_shard, write
from tests.engine_support import almanac


@pytest.fixture
def predictions(home: Path) -> Path:
    return home / "predictions"


def _kinds(report: VerifyReport) -> list[str]:
    return sorted(f.kind for f in report.problems)


# -- verify --------------------------------------------------------------------------------------


def test_a_healthy_cache_verifies_clean(predictions: Path, home: Path) -> None:
    write(predictions, [record(f"r{i}") for i in range(30)], shard_rows=10)
    write(predictions, [record("r1", version=2)], run_id="f" * 32)
    write(predictions, [record("q", job="veg")], job="veg")

    report = verify(predictions)
    assert report.ok and report.jobs == ["fruits", "veg"]
    assert (report.shards, report.rows) == (5, 32)

    cli = almanac(home, "cache", "verify", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["ok"] is True
    assert almanac(home, "cache", "verify", "fruits").returncode == 0


def test_verify_reports_each_kind_of_damage_and_exits_1(predictions: Path, home: Path) -> None:
    shards = write(predictions, [record(f"r{i}") for i in range(40)], shard_rows=10)
    directory = predictions / "fruits"
    # A flipped byte in the middle: the size holds, the checksum does not.
    data = bytearray((directory / shards[0]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / shards[0]).write_bytes(bytes(data))
    (directory / shards[1]).write_bytes(b"PAR1 truncated")  # unreadable, wrong size
    (directory / shards[2]).unlink()
    # Row 3 said to hold r30, which row 0 holds: a mismatch, and two latest records of r30.
    relabel_row(predictions, shards[3], 3, "r30")
    (directory / "part-stray.parquet").write_bytes((directory / shards[3]).read_bytes())
    (directory / ".part-inflight.parquet.tmp").write_bytes(b"")

    report = verify(predictions)
    kinds = _kinds(report)
    assert "checksum" in kinds and "missing" in kinds and "unindexed" in kinds
    assert "size" in kinds and "unreadable" in kinds
    assert "index-mismatch" in kinds and "latest-mismatch" in kinds
    mismatch = next(f for f in report.problems if f.kind == "index-mismatch")
    assert mismatch.shard == shards[3] and "row 3" in mismatch.detail
    assert [n.kind for n in report.notes] == ["temporary"]  # not damage

    cli = almanac(home, "cache", "verify")
    assert cli.returncode == 1
    assert "missing" in cli.stdout and "problems" in cli.stderr and "Traceback" not in cli.stderr
    assert almanac(home, "cache", "verify", "nojob").returncode == 1


# -- gc ------------------------------------------------------------------------------------------


def test_gc_removes_superseded_shards_and_keeps_every_latest_row(predictions: Path, home: Path) -> None:
    first = write(predictions, [record(f"r{i}") for i in range(20)], shard_rows=10)
    # A later run re-answers r0..r9 (the whole first shard) and only r10 of the second.
    write(predictions, [record(f"r{i}", version=2, output="v2") for i in range(11)], run_id="f" * 32)
    before = {f"r{i}": r for i, r in ((i, Predictions.at(predictions, "fruits").get(f"r{i}"))
                                      for i in range(20))}

    dry = almanac(home, "cache", "gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert [c["shard"] for c in json.loads(dry.stdout)["jobs"][0]["collected"]] == [first[0]]
    assert (predictions / "fruits" / first[0]).exists()  # a dry run changes nothing

    report = gc(predictions, home / "locks")
    assert [c.shard for j in report.jobs for c in j.collected] == [first[0]]
    assert report.bytes_freed > 0
    assert not (predictions / "fruits" / first[0]).exists()
    assert not list((predictions / "fruits").glob(".*"))  # no .gc leftovers
    assert not [r for r in index_table(predictions, "records") if r[4] == first[0]]
    with Predictions.at(predictions, "fruits") as p:
        assert {k: p.get(k) for k in before} == before
        assert len(p.versions("r10")) == 2  # its old version lives in a kept shard
    assert verify(predictions).ok


def test_gc_keep_versions_only_removes_what_nothing_references(predictions: Path, home: Path) -> None:
    write(predictions, [record(f"r{i}") for i in range(10)])
    write(predictions, [record(f"r{i}", version=2) for i in range(10)], run_id="f" * 32)
    kept = gc(predictions, home / "locks", keep_versions=True)
    assert kept.shards_removed == 0
    with Predictions.at(predictions, "fruits") as p:
        assert len(p.versions("r3")) == 2


def test_gc_removes_crash_temporaries_and_indexes_shards_that_landed(predictions: Path, home: Path) -> None:
    shards = write(predictions, [record(f"r{i}") for i in range(10)], shard_rows=5)
    directory = predictions / "fruits"
    # A crash between rename and index commit: the file landed, the index never heard.
    unindex_shard(predictions, shards[1])
    (directory / ".part-x.parquet.tmp").write_bytes(b"half a shard")
    assert _kinds(verify(predictions)) == ["unindexed"]

    report = gc(predictions, home / "locks")
    (job,) = report.jobs
    assert (job.removed_tmp, job.indexed, job.collected) == (1, 1, [])
    assert verify(predictions).ok and not verify(predictions).notes
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r7")["output"] == "drupe"


def test_gc_changes_nothing_while_any_job_runs(predictions: Path, home: Path) -> None:
    write(predictions, [record("a")])
    write(predictions, [record("a", version=2)], run_id="f" * 32)
    write(predictions, [record("x", job="veg")], job="veg")
    files = sorted(p.name for p in (predictions / "fruits").iterdir())

    # Another job's run could be copying a record out of a fruits shard right now.
    with JobLock(home / "locks", "veg"):
        with pytest.raises(JobLockedError):
            gc(predictions, home / "locks", job="fruits")
        cli = almanac(home, "cache", "gc")
        assert cli.returncode == 75 and "locked" in cli.stderr
    assert sorted(p.name for p in (predictions / "fruits").iterdir()) == files
    assert gc(predictions, home / "locks", job="fruits").shards_removed == 1


def test_gc_finishes_or_undoes_an_interrupted_collection(predictions: Path, home: Path) -> None:
    (kept,) = write(predictions, [record("a")])
    (old,) = write(predictions, [record("b")], run_id="e" * 32)
    write(predictions, [record("b", version=2)], run_id="f" * 32)
    directory = predictions / "fruits"
    # Died before its commit: the index still lists `kept`, whose file was renamed.
    os.rename(directory / kept, directory / f".{kept}.gc")
    # Died after its commit: `old`'s rows are gone, its file not yet unlinked.
    unindex_shard(predictions, old)
    size = (directory / old).stat().st_size
    os.rename(directory / old, directory / f".{old}.gc")
    assert "missing" in _kinds(verify(predictions))

    report = gc(predictions, home / "locks")
    assert report.jobs[0].repaired == 2
    # Finishing the collection removed a shard, and says so.
    assert [(c.shard, c.rows, c.bytes) for c in report.jobs[0].collected] == [(old, 1, size)]
    assert (report.shards_removed, report.bytes_freed) == (1, size)
    assert (directory / kept).exists() and not list(directory.glob(".*"))
    assert verify(predictions).ok
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("a") is not None and p.get("b")["key"] == record("b", version=2)["key"]


def test_a_reader_with_a_shard_open_keeps_reading_through_gc(predictions: Path, home: Path) -> None:
    write(predictions, [record("a"), record("b")])
    with Predictions.at(predictions, "fruits") as p:
        assert p.versions("a")  # opens the first shard
        write(predictions, [record("a", version=2), record("b", version=2)], run_id="f" * 32)
        assert gc(predictions, home / "locks").shards_removed == 1
        assert p.get("a")["key"] == record("a", version=2)["key"]
        assert [r["key"] for r in p.versions("a")] == [record("a", version=2)["key"]]


def test_gc_on_an_empty_home_and_an_unknown_job(predictions: Path, home: Path) -> None:
    assert gc(predictions, home / "locks").jobs == []
    assert almanac(home, "cache", "gc", "nojob").returncode == 1


# -- stopped by a signal ---------------------------------------------------------------------


def _holds_a_flock(pid: int) -> bool:
    """Whether process `pid` holds an flock (a job's lock: it is past taking them)."""
    return any(line.split()[1] == "FLOCK" and line.split()[4] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines())


@pytest.mark.parametrize(("command", "sig"), [("gc", signal.SIGINT), ("repair", signal.SIGTERM)])
def test_a_signal_stops_gc_and_repair_at_once_exit_130_or_143_and_changes_nothing(
        command: str, sig: signal.Signals, predictions: Path, home: Path, tmp_path: Path) -> None:
    write(predictions, [record("a")])  # superseded: gc collects it
    (landed,) = write(predictions, [record("a", version=2)], run_id="f" * 32)
    unindex_shard(predictions, landed)  # both commands index it first
    directory = predictions / "fruits"
    before = sorted(p.name for p in directory.iterdir()), index_table(predictions, "records")
    # A write transaction held on the index: the command, once past its locks, waits for
    # it before it can change anything; the signal arrives while it waits.
    held = sqlite3.connect(predictions / "index.db", isolation_level=None)
    held.execute("BEGIN IMMEDIATE")
    err = tmp_path / "err"
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "almanac", "cache", command],
                                env={**os.environ, "ALMANAC_HOME": str(home)},
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        while not _holds_a_flock(proc.pid):
            assert proc.poll() is None, err.read_text()
            time.sleep(0.02)
        proc.send_signal(sig)
    finally:
        held.execute("ROLLBACK")
        held.close()
    assert proc.wait(timeout=120) == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
    lines = err.read_text().strip().splitlines()
    assert len(lines) == 1 and f"cache {command} stopped by {sig.name}" in lines[0], lines
    assert (sorted(p.name for p in directory.iterdir()), index_table(predictions, "records")) \
        == before
    assert [f.kind for f in verify(predictions).problems] == ["unindexed"]
    report = gc(predictions, home / "locks")  # and then it runs through
    assert (report.jobs[0].indexed, report.shards_removed) == (1, 1)
