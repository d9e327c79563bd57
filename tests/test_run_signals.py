"""SIGTERM and SIGINT sent to a real `almanac run` mid-job: what was finished is written
and indexed, the run is recorded as interrupted, the exit code is 143 / 130, the lock
is released; a rerun then generates each input exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch.run.runner import Runner
from tests.engine_support import almanac, write_job
from tests.test_batch_engine import MAX_NUM_SEQS, read_job, words

pytestmark = pytest.mark.engine


def _start(home: Path, job: Path, out: Path, err: Path) -> subprocess.Popen[bytes]:
    """A background `almanac run --json`, its stdout and stderr in files (a pipe would be
    held open by anything it leaves behind)."""
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    with out.open("w") as stdout, err.open("w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "almanac", "run", str(job), "--json"],
                                env=env, stdout=stdout, stderr=stderr)


def _indexed_rows(home: Path, job: str) -> int:
    from batch.query import CacheReader

    with CacheReader(home / "predictions") as reader:
        return reader.job(job).count() if reader.has_job(job) else 0


def _stop_mid_job(home: Path, job: Path, tmp_path: Path, sig: signal.Signals) -> dict:
    out, err = tmp_path / f"{sig.name}.out", tmp_path / f"{sig.name}.err"
    shards = home / "predictions" / "stops"
    before = set(shards.glob("*.parquet")) if shards.exists() else set()
    proc = _start(home, job, out, err)
    try:
        # Mid-job: once this run's first shard has landed.
        while not (shards.exists() and set(shards.glob("*.parquet")) - before):
            assert proc.poll() is None, err.read_text()
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[sig], err.read_text()
    assert "Traceback" not in err.read_text()
    assert f"stopped by {sig.name}" in err.read_text()
    return json.loads(out.read_text())


def test_sigterm_and_sigint_mid_run_keep_what_was_finished_and_a_rerun_completes_once(
    runner: Runner, home: Path, tmp_path: Path
) -> None:
    from batch.cache import shards as shard_files
    from batch.cache.lock import JobLock
    from batch.run.spec.job import load_spec
    from catalog.runs import list_runs

    # The engine takes MAX_NUM_SEQS rows at a time and each stop comes once the first of
    # them land: after both, at least four rounds of 16 tokens are left (a wide margin).
    n = 7 * MAX_NUM_SEQS
    job = write_job(tmp_path, "stops", words(n), shard_rows=25, sampling={"max_tokens": 16})
    finished = 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        summary = _stop_mid_job(home, job, tmp_path, sig)
        assert summary["status"] == "interrupted" and summary["error"] == f"stopped by {sig.name}"
        assert 0 < summary["generated"] < n - finished, "the run ended before the signal"
        assert summary["cached"] == finished
        finished += summary["generated"]
        # Everything it reported finished is in the index: nothing left for recovery.
        assert _indexed_rows(home, "stops") == finished
        directory = home / "predictions" / "stops"
        assert shard_files.temporaries(directory) == []
        with JobLock(home / "locks", "stops"):  # released: this takes it at once
            pass
    assert almanac(home, "cache", "verify", "stops").returncode == 0

    with runner.catalog.sessions() as s:
        recorded = list_runs(s, "stops")
    assert [r.status for r in recorded] == ["interrupted", "interrupted"]
    assert sum(r.generated for r in recorded) == finished

    rerun = runner.run(load_spec(job))
    assert rerun.status == "ok"
    assert (rerun.cached, rerun.generated) == (finished, n - finished)
    ids = [r["input_id"] for r in read_job(home, "stops")]
    assert len(ids) == len(set(ids)) == n  # every input exactly once
