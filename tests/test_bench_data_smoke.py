"""`python -m bench.data --smoke`: curate (beside DuckDB), near deduplication and chain
planning end to end at small sizes, their counts checked (timings are never asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import data as bench_data
from tests.bench_support import bench_main


def test_data_benchmark_smoke_run_curates_and_plans_only_the_new_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_main(bench_data.main, ["--smoke"], tmp_path / "data.json", capsys)
    run = r["curate"]["runs"][0]
    counts = dict(run["counts"])
    assert counts["latest predictions"] == 3000 and counts["succeeded"] == 2970  # 1% failed
    assert 0 < counts["--dedupe exact"] < counts["--where score >= 0.5"] < 2970
    assert sum(run["split_rows"].values()) == counts["--dedupe exact"]
    assert set(run["steps"]) >= {"read", "filter", "messages", "dedupe", "write"}
    # DuckDB's side wrote the same rows curate kept; near dedupe keeps no more than exact.
    assert {d["rows"] for d in r["duckdb"]["runs"]} == {counts["--dedupe exact"]}
    assert r["curate"]["vs_duckdb"] > 0
    assert r["near"]["rows"] == 2970 and 0 < r["near"]["kept"] <= r["near"]["exact_kept"]
    planted = r["near"]["planted"]  # a fifth replaced by near copies: some of them go
    assert planted["rows"] == 2970 and 0 < planted["kept"] < planted["exact_kept"]
    chain = r["chain"]
    plan = chain["runs"][0]["plan"]
    assert (plan["inputs"], plan["cached"], plan["missing"]) == (2000, 1980, 20)
    assert chain["without_memo"]["plan"] == plan  # the memo changes the time, not the plan
    assert r["machine"]["cores"] and r["load_before"] is not None
