"""`python -m bench.tui --smoke` runs end to end and agrees with catalog.search
(no timing assertions: the benchmark's figures depend on the machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_tui_smoke_checks_every_redraw(tmp_path: Path) -> None:
    out = tmp_path / "tui.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.tui", "--smoke", "--rounds", "1", "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results == json.loads(out.read_text())
    assert results["models"] == 2_000
    # The first page, then every facet and search change and every word typed, checked
    # against catalog.search.
    assert results["checked"] == 1 + results["facet"]["n"] + results["search"]["n"] \
        + results["typing"]["n"]
    assert results["facet"]["n"] == 10 and results["search"]["n"] == 6
    assert results["typing"]["n"] == 2 == results["typing_complete"]["n"]
    assert {"cores", "memory_bytes", "cpu_model"} <= set(results["machine"])
    assert "first page" in proc.stderr
