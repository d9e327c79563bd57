"""`python -m bench.tui --smoke` runs end to end and agrees with catalog.search
(no timing assertions: the benchmark's figures depend on the machine)."""

from __future__ import annotations

from pathlib import Path

from tests.bench_support import bench_process


def test_bench_tui_smoke_checks_every_redraw(tmp_path: Path) -> None:
    out = tmp_path / "tui.json"
    results, table = bench_process("bench.tui", ["--smoke", "--rounds", "1"], out)
    assert results["models"] == 2_000
    # The first page, then every facet and search change and every word typed, checked
    # against catalog.search.
    assert results["checked"] == 1 + results["facet"]["n"] + results["search"]["n"] \
        + results["typing"]["n"]
    assert results["facet"]["n"] == 10 and results["search"]["n"] == 6
    assert results["typing"]["n"] == 2 == results["typing_complete"]["n"]
    assert {"cores", "memory_bytes", "cpu_model"} <= set(results["machine"])
    assert "first page" in table
