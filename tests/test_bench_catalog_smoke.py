"""bench.catalog at smoke size, and `python -m bench` choosing what to run.
Correctness only; timings are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import catalog as bench_catalog
from tests.bench_support import ROOT, bench_main


def test_catalog_benchmark_smoke_run_checks_answers_and_reports_every_query(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_main(bench_catalog.main, ["--smoke"], tmp_path / "catalog.json", capsys)
    assert r["smoke"] and r["models"] == 2000
    assert set(r["queries"]) == set(bench_catalog.queries())
    for q in r["queries"].values():
        assert q["n"] == r["runs"] and 0 < q["p50_ms"] <= q["p99_ms"]
    assert set(r["targets"]) == set(bench_catalog.TARGETED)
    assert all(0 < c["models"] <= 50 for c in r["cli"])
    assert r["machine"]["cores"] and r["load_average"]["start"] is not None


def test_bench_runs_only_the_named_benchmark_and_records_nothing_when_smoke() -> None:
    results = ROOT / "bench" / "results" / "catalog.json"
    before = results.stat().st_mtime_ns if results.exists() else None
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", "catalog", "--smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bench: catalog: ok" in proc.stderr
    assert "bench: engine" not in proc.stderr and "bench: lookups" not in proc.stderr
    assert (results.stat().st_mtime_ns if results.exists() else None) == before


def test_bench_skips_benchmarks_whose_module_is_missing() -> None:
    from bench.__main__ import available

    assert available("catalog") and available("engine")
    assert not available("no_such_benchmark")
