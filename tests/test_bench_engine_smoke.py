"""bench.engine at smoke size: both sides run, answer the same prompts, and report
every figure. Correctness only; timings are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import engine as bench_engine

ROOT = Path(__file__).resolve().parent.parent


def test_prompts_are_distinct_and_job_renders_them_verbatim(tmp_path: Path) -> None:
    from batch.run.prompts import PromptRenderer
    from batch.run.spec import load_spec

    assert len({bench_engine.prompt(i) for i in range(20_000)}) == 20_000
    (tmp_path / "job").mkdir()
    bench_engine.write_inputs(tmp_path / "job" / "prompts.jsonl", 0, 3)
    spec = load_spec(bench_engine.write_job(tmp_path / "job", bench_engine.TINY_ENGINE,
                                            {"max_tokens": 32, "temperature": 0.0}))
    rows = [json.loads(line) for line in (tmp_path / "job" / "prompts.jsonl").read_text().splitlines()]
    renderer = PromptRenderer(spec.prompt)
    assert [renderer.render(r) for r in rows] == [bench_engine.prompt(i) for i in range(3)]
    assert spec.engine == bench_engine.TINY_ENGINE


def test_raw_side_builds_llm_exactly_as_the_engine_does(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    """The raw side's `vllm.LLM(...)` arguments are the ones Engine.start passes."""
    import vllm
    from vllm.platforms import current_platform

    from batch.run.engine import Engine, EngineTarget

    seen: dict[str, Any] = {}

    class FakeLLM:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)
            self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=256))

    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    for options in (bench_engine.TINY_ENGINE, {**bench_engine.TINY_ENGINE, "gpu_memory_utilization": 0.5}):
        seen.clear()
        Engine.start(EngineTarget.make(str(tmp_path), None, options))
        assert seen == bench_engine.llm_kwargs(str(tmp_path), options,
                                               on_cpu=current_platform.is_cpu())


@pytest.mark.engine
def test_engine_benchmark_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    proc = subprocess.run([sys.executable, "-m", "bench.engine", "--smoke", "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert json.loads(proc.stdout) == r
    n = r["overhead"]["prompts"]
    assert r["smoke"] and n <= 200
    raw, alm = r["overhead"]["runs"]
    assert (raw["side"], alm["side"]) == ("raw", "almanac")
    assert raw["prompts"] == n and alm["generated"] == n and alm["engine_started"]
    # Both sides answered the same prompts, with the same greedy tokens.
    assert alm["check"]["rows"] == n
    assert alm["check"]["raw_output_tokens"] == raw["output_tokens"] == alm["output_tokens"]
    assert alm["check"]["outputs_equal"] == n
    assert r["llm_kwargs"]["seed"] == 0 and r["llm_kwargs"]["model"] == r["model"]["path"]
    assert r["overhead"]["ratio"] > 0 and r["overhead"]["engine_start_s"]["raw"] > 0
    # 2. cached: the engine never started; 3. only the appended rows were generated.
    cached = r["cached_rerun"]
    assert not cached["engine_started"] and cached["cached"] == n and cached["generated"] == 0
    inc = r["incremental"]
    assert inc["generated"] == inc["new_rows"] == round(n * 0.05) and inc["cached"] == n
    # Where the time goes: the instrumented pair's parts.
    parts = r["breakdown"]["almanac"]["generation"]
    assert parts["engine_step_s"] > 0 and parts["tokenize_s"] > 0
    assert r["breakdown"]["raw"]["engine_step_s"] > 0
    assert r["machine"]["cores"] and "load_average" in r
