"""bench.discovery at smoke size: the stand-in serves, discovery imports every model and
a second pass refreshes them all. Correctness only; timings are never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import discovery
from tests.bench_support import bench_main


def test_discovery_benchmark_smoke_run_imports_then_refreshes_every_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_main(discovery.main, ["--smoke", "--models", "300"], tmp_path / "discovery.json", capsys)
    assert r["first"]["added"] == r["served"] == 300 and r["first"]["refused"] == 0
    assert r["again"]["unchanged"] == 300 and r["again"]["added"] == 0
    assert r["first"]["per_s"] > 0 and r["machine"]["cores"]
