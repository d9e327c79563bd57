"""bench.engine at smoke size: both sides run on the real engine, answer the same
prompts, and report every figure. Correctness only; timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch.run.executors.engine import EnginePool
from batch.run.executors.target import EngineTarget
from bench import engine as bench_engine
from bench.engine_figures import breakdown, pair_figures
from tests.bench_support import bench_process
from tests.engine_support import ENGINE_OPTIONS, LORA_RANK, MAX_LORAS


def test_prompts_are_distinct_and_job_renders_them_verbatim(tmp_path: Path) -> None:
    from batch.run.spec.job import load_spec
    from batch.run.spec.prompts import PromptRenderer

    assert len({bench_engine.prompt(i) for i in range(20_000)}) == 20_000
    (tmp_path / "job").mkdir()
    bench_engine.write_inputs(tmp_path / "job" / "prompts.jsonl", 0, 3)
    spec = load_spec(bench_engine.write_job(tmp_path / "job", bench_engine.TINY_ENGINE,
                                            {"max_tokens": 32, "temperature": 0.0}))
    lines = (tmp_path / "job" / "prompts.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    renderer = PromptRenderer(spec.prompt)
    assert [renderer.render(r) for r in rows] == [bench_engine.prompt(i) for i in range(3)]
    assert spec.engine.as_dict() == bench_engine.TINY_ENGINE


@pytest.mark.engine
def test_raw_side_builds_llm_exactly_as_the_engine_does(engine_pool: EnginePool,
                                                        tiny_model: Path) -> None:
    """The raw side's `vllm.LLM(...)` arguments are the ones the session's real engine
    was started with (less LoRA, which the raw side never asks for), and vLLM took them."""
    from vllm.platforms import current_platform

    engine = engine_pool.get(EngineTarget.make(str(tiny_model), None, ENGINE_OPTIONS, LORA_RANK))
    raw = bench_engine.llm_kwargs(str(tiny_model), ENGINE_OPTIONS, on_cpu=current_platform.is_cpu())
    assert engine.llm_kwargs == {**raw, "enable_lora": True, "max_lora_rank": 8,
                                 "max_loras": MAX_LORAS + 1}  # one slot kept empty
    assert raw["seed"] == 0 and raw["model"] == str(tiny_model)
    assert engine.llm is not None
    config = engine.llm.llm_engine.vllm_config
    assert config.model_config.model == str(tiny_model)
    assert config.model_config.max_model_len == raw["max_model_len"] == engine.max_model_len
    assert config.model_config.seed == raw["seed"]
    assert config.scheduler_config.max_num_seqs == raw["max_num_seqs"]
    if current_platform.is_cpu():
        assert config.cache_config.kv_cache_memory_bytes == raw["kv_cache_memory_bytes"]
    # A job that sets the memory itself gets no default.
    own = bench_engine.llm_kwargs(str(tiny_model),
                                  {**ENGINE_OPTIONS, "gpu_memory_utilization": 0.5}, on_cpu=True)
    assert "kv_cache_memory_bytes" not in own and own["gpu_memory_utilization"] == 0.5


@pytest.mark.engine
def test_engine_benchmark_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    r, _ = bench_process("bench.engine", ["--smoke", "--prompts", "40", "--max-tokens", "8"], out)
    assert not (tmp_path / "engine.partial.json").exists()  # removed once complete
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
    # Where the time goes: the phases the almanac run measured, the raw side's parts.
    phases = r["breakdown"]["almanac"]["phases"]
    assert phases["engine_step_s"] > 0 and phases["tokenize_s"] > 0 and phases["generate_s"] > 0
    assert phases["engine_steps"] > 0 and phases["write_s"] > 0 and phases["plan_s"] > 0
    assert r["breakdown"]["raw"]["engine_step_s"] > 0
    assert r["machine"]["cores"] and "load_average" in r
    # Without instrumented raw runs (--breakdown-reps 0) the raw parts are left out;
    # one side alone gives that side's figures and no ratio.
    plain_raw = {k: v for k, v in raw.items() if k != "parts"}
    assert set(breakdown([plain_raw, alm])) == {"almanac"}
    alone = pair_figures(n, [alm])
    assert "ratio" not in alone and alone["almanac_s"] == alm["time_s"]


def test_a_benchmark_stopped_before_any_pair_still_reports(tmp_path: Path) -> None:
    """No runs at all (`--reps 0 --breakdown-reps 0`): every figure that needs runs is
    left out, and nothing fails for want of them. No engine starts."""
    r, _ = bench_process("bench.engine", ["--reps", "0", "--breakdown-reps", "0", "--scaling", "",
                                          "--no-multiprocessing"], tmp_path / "engine.json")
    assert r["overhead"]["runs"] == [] and "ratio" not in r["overhead"]
    assert r["cached_rerun"] is None and r["incremental"] is None and r["breakdown"] == {}
    assert r["machine"]["cores"]
