"""Writing when the disk cannot take it: a full filesystem (a real tmpfs mounted by the
test, where the machine allows) or a read-only index stops `almanac run` with one clear
line and exit 1, nothing half-written stays or is indexed, and the next run resumes:
every input recorded exactly once. The jobs' rows fail at planning (their template
names a field they lack), so runs write shards without the engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cache_support import index_table
from tests.damage import can_mount, grow, read_only, small_filesystem
from tests.engine_support import TINY_MODEL, almanac, write_job

ROWS = 600


@pytest.fixture
def job(home: Path, tiny_model: Path, tmp_path: Path) -> Path:
    """A job of ROWS rows, every one failing its template, 50 rows a shard; the tiny
    model registered in the home's catalog."""
    from catalog.db import Catalog
    from catalog.localmodels import entry_from_directory
    from catalog.models import upsert_model

    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, entry_from_directory(tiny_model, name=TINY_MODEL))
    catalog.close()
    rows = [{"id": f"row-{i:05d}", "text": f"a row without the template's field, number {i}"}
            for i in range(ROWS)]
    return write_job(tmp_path / "job", "full", rows, template="Say: {{ word }}", shard_rows=50)


def _recorded(predictions: Path) -> tuple[list[str], list[str]]:
    """The input ids of every record, and of every latest record, of the job."""
    records = [r[1] for r in index_table(predictions, "records") if r[0] == "full"]
    latest = [r[1] for r in index_table(predictions, "latest") if r[0] == "full"]
    return records, latest


def _no_leftovers(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root where mounts "
                                            "are allowed; tests.damage.small_filesystem")
def test_a_full_disk_stops_the_run_in_one_line_and_the_next_run_resumes(
        job: Path, home: Path) -> None:
    predictions = home / "predictions"
    with small_filesystem(predictions / "full", "24k") as directory:
        stopped = almanac(home, "run", str(job), "--json")
        assert stopped.returncode == 1, stopped.stderr
        assert "Traceback" not in stopped.stderr
        assert "no space left" in stopped.stderr.strip().splitlines()[-1]
        _no_leftovers(directory)
        records, latest = _recorded(predictions)
        assert 0 < len(records) < ROWS and sorted(records) == sorted(set(records)) == latest
        assert almanac(home, "cache", "verify", "full").returncode == 0  # all indexed is whole

        grow(directory, "4m")
        resumed = almanac(home, "run", str(job), "--json")
        assert resumed.returncode == 3, resumed.stderr  # finished, with failed rows
        plan = json.loads(resumed.stdout)["plan"]
        assert plan["failed_before"] == len(records) and plan["invalid"] == ROWS - len(records)
        records, latest = _recorded(predictions)
        assert sorted(records) == latest == [f"row-{i:05d}" for i in range(ROWS)]
        _no_leftovers(directory)
        assert almanac(home, "cache", "verify").returncode == 0


def test_a_read_only_index_stops_a_run_in_one_line_and_readers_still_read(
        job: Path, home: Path) -> None:
    predictions = home / "predictions"
    first = almanac(home, "run", str(job), "--json", "--limit", "100")
    assert first.returncode == 3, first.stderr
    more = write_job(job.parent, "full", [{"id": f"more-{i}"} for i in range(10)],
                     input_name="more.jsonl", template="Say: {{ word }}")
    with read_only(predictions / "index.db"):
        stopped = almanac(home, "run", str(more))
        assert stopped.returncode == 1, stopped.stderr
        last = stopped.stderr.strip().splitlines()[-1]
        assert "index.db" in last and "read-only" in last and "Traceback" not in stopped.stderr
        listed = almanac(home, "query", "full", "--failed", "--json", "--limit", "500")
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 100
    resumed = almanac(home, "run", str(more), "--json")
    assert resumed.returncode == 3, resumed.stderr
    _no_leftovers(predictions / "full")
    assert almanac(home, "cache", "verify").returncode == 0
