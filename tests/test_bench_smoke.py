"""`python -m bench.lookups --smoke`: the benchmark runs end to end and every answer it
times is right. A correctness check only: timings on a shared test machine prove nothing."""

from __future__ import annotations

from pathlib import Path

from tests.bench_support import bench_process


def test_lookup_benchmark_smoke_run_checks_its_answers(tmp_path: Path) -> None:
    out = tmp_path / "lookups.json"
    figures, table = bench_process("bench.lookups", ["--smoke"], out)
    assert figures["checked"] is True and figures["rows"] == 2000
    assert figures["api"]["single"]["n"] > 0 and figures["api"]["get_many"]["ids"] == 2000
    assert figures["http"]["single"]["n"] > 0 and figures["pyarrow_filter"]["n"] > 0
    assert figures["machine"]["cores"] and figures["machine"]["versions"]["pyarrow"]
    assert "python get(id)" in table  # the table goes to stderr, the figures to stdout
