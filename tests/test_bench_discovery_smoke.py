"""bench.discovery at smoke size: the stand-in serves, discovery imports every model and
a second pass refreshes them all. Correctness only; timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import discovery


def test_discovery_benchmark_smoke_run_imports_then_refreshes_every_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "discovery.json"
    assert discovery.main(["--smoke", "--models", "300", "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == r
    assert r["first"]["added"] == r["served"] == 300 and r["first"]["refused"] == 0
    assert r["again"]["unchanged"] == 300 and r["again"]["added"] == 0
    assert r["first"]["per_s"] > 0 and r["machine"]["cores"]
