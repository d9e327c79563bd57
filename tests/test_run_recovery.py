"""What a crash leaves is put right by the next run; a dry run writes nothing and plans
what the real run then does; several jobs with --json print a list. Jobs here plan no
request for the engine (their rows fail to render), so no engine starts: the real
command line runs in its own process, on a real catalog and cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.engine_support import TINY_MODEL, almanac, write_job
from tests.test_job_spec import make_local_model

# No row has `missing`: every row fails to render, a failure recorded without the engine.
BROKEN = "Say: {{ missing }}"


def _home_with_model(home: Path, tmp_path: Path) -> None:
    model = make_local_model(tmp_path / "model")
    added = almanac(home, "models", "add", "--path", str(model), "--name", TINY_MODEL)
    assert added.returncode == 0, added.stderr


def _job(tmp_path: Path, name: str = "leftovers", n: int = 30) -> Path:
    rows = [{"id": f"r{i}", "word": f"w{i}"} for i in range(n)]
    return write_job(tmp_path / "jobs", name, rows, template=BROKEN, shard_rows=10)


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file with its size and time, but SQLite's shared-memory and WAL files, which
    any reader of a WAL database may create beside it (they hold no data of their own)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_the_next_run_puts_right_what_a_crash_left(home: Path, tmp_path: Path) -> None:
    """A temporary shard, a shard that landed but was never indexed, and a run record
    still `running`: the next run removes, indexes and closes them, and plans none of
    the landed rows again."""
    from batch.cache import shards
    from catalog.db import open_catalog
    from catalog.runs import list_runs, start_run

    _home_with_model(home, tmp_path)
    job = _job(tmp_path)
    first = almanac(home, "run", str(job), "--json")
    assert first.returncode == 3, first.stderr  # every row failed, as written
    directory = home / "predictions" / "leftovers"
    landed = sorted(directory.glob("*.parquet"))
    assert len(landed) == 3

    # The same rows as a second home's crash left them: files on disk, no index.
    other = tmp_path / "other-home"
    _home_with_model(other, tmp_path / "m2")
    (other / "predictions" / "leftovers").mkdir(parents=True)
    for shard in landed:
        shutil.copy2(shard, other / "predictions" / "leftovers" / shard.name)
    temporary = other / "predictions" / "leftovers" / f".{landed[0].name}.tmp"
    temporary.write_bytes(b"half a shard")
    catalog = open_catalog(other / "catalog.db")
    with catalog.sessions.begin() as s:
        start_run(s, "dead" * 8, "leftovers", TINY_MODEL, None)  # killed before its end
    catalog.close()

    rerun = almanac(other, "run", str(job), "--json")
    assert rerun.returncode == 3, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["plan"]["failed_before"] == 30 and summary["plan"]["invalid"] == 0
    assert "recovered after an interrupted run" in rerun.stderr
    assert not temporary.exists()
    assert shards.temporaries(other / "predictions" / "leftovers") == []
    catalog = open_catalog(other / "catalog.db", readonly=True)
    with catalog.sessions() as s:
        statuses = {r.id: r.status for r in list_runs(s, "leftovers")}
    catalog.close()
    assert statuses["dead" * 8] == "interrupted"
    assert "running" not in statuses.values()
    assert almanac(other, "cache", "verify").returncode == 0


def test_a_dry_run_writes_nothing_and_plans_what_the_real_run_does(home: Path,
                                                                   tmp_path: Path) -> None:
    _home_with_model(home, tmp_path)
    job = _job(tmp_path)
    assert almanac(home, "run", str(job)).returncode == 3
    # Another home holds those shards as a crash left them: landed, never indexed.
    other = tmp_path / "other-home"
    _home_with_model(other, tmp_path / "m2")
    target = other / "predictions" / "leftovers"
    target.mkdir(parents=True)
    for shard in (home / "predictions" / "leftovers").glob("*.parquet"):
        shutil.copy2(shard, target / shard.name)
    before = _files(other)

    dry = almanac(other, "run", str(job), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert _files(other) == before  # no index created, no file touched
    assert not (other / "predictions" / "index.db").exists()

    real = almanac(other, "run", str(job), "--json")
    planned, done = json.loads(dry.stdout), json.loads(real.stdout)
    assert planned["status"] == "planned"
    assert planned["plan"] == done["plan"]
    assert planned["plan"]["failed_before"] == 30  # the crash's rows, as the real run saw them


def test_a_dry_run_on_a_home_without_a_catalog_creates_none(home: Path, tmp_path: Path) -> None:
    job = _job(tmp_path)
    dry = almanac(home, "run", str(job), "--dry-run")
    assert dry.returncode == 1 and "almanac init" in dry.stderr
    assert "Traceback" not in dry.stderr
    assert not home.exists()


def test_several_jobs_with_json_print_a_list_even_when_one_cannot_run(home: Path,
                                                                      tmp_path: Path) -> None:
    from batch.cache.lock import JobLock

    _home_with_model(home, tmp_path)
    first, second = _job(tmp_path, "first"), _job(tmp_path, "second")
    with JobLock(home / "locks", "second"):  # another run holds it
        both = almanac(home, "run", str(first), str(second), "--json")
    assert both.returncode == 75, both.stderr
    listed = json.loads(both.stdout)
    assert isinstance(listed, list) and [r["job"] for r in listed] == ["first", "second"]
    assert listed[0]["status"] == "failed_rows" and listed[1]["status"] == "locked"
    assert "locked" in listed[1]["error"]

    one = almanac(home, "run", str(first), "--json")
    assert isinstance(json.loads(one.stdout), dict)  # one job: its summary alone
    dry = almanac(home, "run", str(first), str(second), "--dry-run", "--json")
    assert [r["status"] for r in json.loads(dry.stdout)] == ["planned", "planned"]


def test_a_killed_runs_record_is_closed_with_the_counts_of_what_it_wrote(home: Path,
                                                                         tmp_path: Path) -> None:
    """A run killed (kill -9) after writing 48 rows, its last shard landed but not
    indexed: the next run closes its record as interrupted with what landed."""
    from catalog.db import open_catalog
    from catalog.runs import list_runs, start_run
    from tests.cache_support import record, unindex_shard, write

    _home_with_model(home, tmp_path)
    job = _job(tmp_path)
    killed = "dead" * 8
    catalog = open_catalog(home / "catalog.db")
    with catalog.sessions.begin() as s:
        start_run(s, killed, "leftovers", TINY_MODEL, None)
    catalog.close()
    predictions = home / "predictions"
    write(predictions, [record(f"x{i}", job="elsewhere") for i in range(5)], job="elsewhere",
          run_id="e" * 32)
    wrote = [record(f"r{i}", job="leftovers", output=f"w{i}", run_id=killed) for i in range(40)]
    wrote += [record(f"x{i}", job="leftovers", run_id=killed) for i in range(5)]  # copies
    wrote += [record(f"f{i}", job="leftovers", error="too long", run_id=killed) for i in range(3)]
    names = write(predictions, wrote, job="leftovers", shard_rows=10, run_id=killed)
    unindex_shard(predictions, names[-1])

    rerun = almanac(home, "run", str(job), "--json")
    assert rerun.returncode == 3, rerun.stderr
    catalog = open_catalog(home / "catalog.db", readonly=True)
    with catalog.sessions() as s:
        (closed,) = [r for r in list_runs(s, "leftovers") if r.id == killed]
    catalog.close()
    assert closed.status == "interrupted"
    assert (closed.generated, closed.copied, closed.failed) == (40, 5, 3)
    assert (closed.prompt_tokens, closed.output_tokens) == \
        (sum(3 + len(f"r{i}") for i in range(40)), 40)
