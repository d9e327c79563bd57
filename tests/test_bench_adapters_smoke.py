"""The adapters benchmark's workload (bench/adapters.py) without the engine: its jobs are
valid, name one candidate per adapter over the same prompts, and its table reads."""

from __future__ import annotations

import json
from pathlib import Path

from batch.run.spec.job import load_spec
from bench import adapters as bench_adapters
from bench.engine_workload import prompt


def test_the_jobs_give_each_adapter_the_same_prompts(tmp_path: Path) -> None:
    lora = [tmp_path / "adapter-0", tmp_path / "adapter-1"]
    for path in lora:
        path.mkdir()
    sampling = {"max_tokens": 8, "temperature": 0.0}
    together = load_spec(bench_adapters.write_job(tmp_path, "together", lora, 0, 5, sampling))
    assert [(c.label, c.adapter) for c in together.candidates] == \
        [(p.name, str(p)) for p in lora]
    assert {c.model for c in together.candidates} == {bench_adapters.MODEL_NAME}
    rows = [json.loads(line) for line in (tmp_path / "together.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == [prompt(i) for i in range(5)]
    one = load_spec(bench_adapters.write_job(tmp_path, "one", lora[:1], 0, 10, sampling))
    assert len(one.candidates) == 1 and one.sampling.max_tokens == 8


def test_the_table_states_the_figures_and_the_load() -> None:
    run = {"total_s": 10.0, "engine_starts": 1, "output_tokens_per_s": 900.0}
    figures = {"adapters": 4, "prompts": 1000, "load_average": [0.3, 0.4, 0.5],
               "one_job": run, "separate_runs": [run] * 4, "separate_total_s": 40.0,
               "one_adapter": {**run, "output_tokens_per_s": 1000.0}, "speedup": 4.0,
               "throughput_ratio": 0.9, "outputs_equal_share": 1.0}
    text = bench_adapters.table(figures)
    assert "load [0.3, 0.4, 0.5]" in text and "speedup 4.0x (target 3.0x)" in text
    assert "4 runs" in text and "mixed/single throughput 0.9" in text


def test_the_lora_grid_compares_each_setting_with_the_base_at_its_batch() -> None:
    from bench.adapters_grid import ratios, table

    def setting(tokens_per_s: float, max_loras: int | None, max_num_seqs: int) -> dict:
        return {"output_tokens_per_s": tokens_per_s, "max_loras": max_loras,
                "max_num_seqs": max_num_seqs, "engine_steps": 33, "load_start": [1.0, 1.0, 1.0]}

    out = {"base": setting(1000.0, None, 256), "lora": setting(800.0, 4, 256),
           "base 64": setting(500.0, None, 64), "lora 64": setting(450.0, 4, 64)}
    got = ratios(out)
    assert got == {"base": 1.0, "lora": 0.8, "base 64": 1.0, "lora 64": 0.9}
    lines = table({"prompts": 100, "rank": 8, "settings": out, "ratios": got})
    assert len(lines) == 5 and "x0.80" in lines[2] and "load [1.0, 1.0, 1.0]" in lines[2]
