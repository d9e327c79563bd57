"""Damage meets the real engine: after a flipped byte, a truncation or a deleted shard,
`almanac cache repair` (or the run's own recovery) makes the next run plan exactly the
lost rows as missing and generate each once, with the answers they had; a copy whose
source is damaged is generated instead, never copying the damage into a fresh shard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch.query import Predictions
from batch.run.runner import Runner
from batch.run.spec.job import load_spec
from tests.cache_support import index_table
from tests.damage import flip_in_column, truncate
from tests.engine_support import almanac, write_job

pytestmark = pytest.mark.engine
ROWS = [{"id": f"w{i:02d}", "word": f"plum {i}"} for i in range(30)]


def _shards(home: Path, job: str) -> list[Path]:
    return sorted((home / "predictions" / job).glob("*.parquet"))


def _dry_plan(home: Path, job_file: Path) -> dict[str, int]:
    planned = almanac(home, "run", str(job_file), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    return json.loads(planned.stdout)["plan"]


def _answers(home: Path, job: str) -> dict[str, str]:
    with Predictions.at(home / "predictions", job) as p:
        return {i: r["output"] for i, r in p.get_many([r["id"] for r in ROWS]).items()}


def test_after_repair_a_run_regenerates_exactly_the_lost_rows_once(
        runner: Runner, home: Path, tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "job", "words", ROWS, shard_rows=10)
    first = runner.run(load_spec(job_file))
    assert first.status == "ok" and first.generated == 30
    answers = _answers(home, "words")
    shards = _shards(home, "words")
    flip_in_column(shards[1], "output")  # same size: readers refuse it, stat shows a write
    shards[2].unlink()

    fixed = almanac(home, "cache", "repair", "words", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["inputs"] == 20
    plan = _dry_plan(home, job_file)
    assert (plan["cached"], plan["missing"]) == (10, 20)

    again = runner.run(load_spec(job_file))
    assert (again.cached, again.generated, again.copied) == (10, 20, 0)
    assert _answers(home, "words") == answers
    latest = [r[1] for r in index_table(home / "predictions", "latest") if r[0] == "words"]
    assert sorted(latest) == sorted(r["id"] for r in ROWS)  # each input once
    assert almanac(home, "cache", "verify", "words").returncode == 0
    assert (home / "predictions" / "words" / f".{shards[1].name}.damaged").exists()


def test_a_run_notices_lost_and_rewritten_shards_itself(
        runner: Runner, home: Path, tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "job", "selfheal", ROWS, shard_rows=10)
    assert runner.run(load_spec(job_file)).generated == 30
    answers = _answers(home, "selfheal")
    shards = _shards(home, "selfheal")
    truncate(shards[0])
    flip_in_column(shards[2], "output")

    assert _dry_plan(home, job_file)["missing"] == 20  # what the run itself will do
    again = runner.run(load_spec(job_file))
    assert (again.cached, again.generated) == (10, 20)
    assert _answers(home, "selfheal") == answers
    assert almanac(home, "cache", "verify", "selfheal").returncode == 0


def test_a_copy_from_a_damaged_source_is_generated_instead(
        runner: Runner, home: Path, tmp_path: Path) -> None:
    source = write_job(tmp_path / "a", "source", ROWS[:10])
    copier = write_job(tmp_path / "b", "copier", ROWS[:10])
    assert runner.run(load_spec(source)).generated == 10
    answers = _answers(home, "source")
    assert _dry_plan(home, copier)["copy"] == 10  # intact, it would be copied

    (shard,) = _shards(home, "source")
    flip_in_column(shard, "output")
    plan = _dry_plan(home, copier)
    assert (plan["copy"], plan["missing"]) == (0, 10)
    copied = runner.run(load_spec(copier))
    assert (copied.copied, copied.generated) == (0, 10)
    assert _answers(home, "copier") == answers
    assert almanac(home, "cache", "verify", "copier").returncode == 0
    assert almanac(home, "cache", "verify", "source").returncode == 1  # still damaged there
