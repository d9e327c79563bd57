"""`python -m bench.train --smoke`: both sides train the same adapter in this process and
report every figure (correctness only; timings are never asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import train as bench_train
from tests.bench_support import bench_main


def test_train_benchmark_smoke_run_trains_both_sides_on_the_same_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = bench_main(bench_train.main, ["--smoke"], tmp_path / "train.json", capsys)
    t = r["train"]
    assert (t["rows"], t["steps"], t["reps"]) == (40, 2, 1)
    for side in ("direct", "almanac"):
        assert t[side]["steps_s"] > 0 and t[side]["whole_s"] >= t[side]["steps_s"]
        assert t["examples_per_s"][side] > 0
    # The same rows, model, settings and seed: the same losses on both sides.
    direct, almanac = t["direct"]["runs"][0], t["almanac"]["runs"][0]
    assert direct["train_loss"] == pytest.approx(almanac["train_loss"], rel=1e-4)
    assert direct["eval_loss"] == pytest.approx(almanac["eval_loss"], rel=1e-4)
    assert t["ratio_steps"] > 0 and t["ratio_whole"] > 0 and "processes" not in t
    assert set(almanac["timings"]) >= {"read", "resolve", "load", "setup", "steps", "register"}
    assert r["machine"]["versions"]["trl"] and r["load_before"] is not None
