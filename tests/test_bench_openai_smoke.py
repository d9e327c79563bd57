"""`python -m bench.openai --smoke --no-generate`: the benchmark fills a cache keyed as a
run keys it, and the official `openai` client gets every answer it times right, alone
and eight at once. Correctness only; timings on a shared test machine prove nothing
(the generated side needs an engine of its own: it runs in the full benchmark)."""

from __future__ import annotations

from pathlib import Path

from bench.openai import ratios
from tests.bench_support import bench_process


def test_openai_benchmark_smoke_run_checks_its_answers(tmp_path: Path) -> None:
    out = tmp_path / "openai.json"
    figures, table = bench_process("bench.openai", ["--smoke", "--no-generate"], out)
    assert figures["smoke"] is True and figures["rows"] == 2000
    assert figures["identity"].startswith("local:sha256:")
    cached = figures["cached"]
    assert cached["single"]["n"] == 50
    assert cached["concurrent"]["clients"] == 8 and cached["concurrent"]["requests"] == 160
    assert cached["load_before"] and "generated" not in figures
    assert "cached, 8 clients at once" in table  # the table on stderr, figures on stdout


def test_ratios_compare_like_with_like_from_counts_not_rounded_rates() -> None:
    cached = {"single": {"p50_ms": 2.0},
              "concurrent": {"requests": 8000, "wall_s": 8.0, "requests_per_s": 1000.0}}
    # 32 requests in 24.742 s is 1.2933/s, shown as 1.3: the ratio is 773.2, not 769.2.
    generated = {"single": {"p50_ms": 150.0},
                 "concurrent": {"requests": 32, "wall_s": 24.742, "requests_per_s": 1.3},
                 "batch": {"prompts": 256, "wall_s": 0.64, "requests_per_s": 400.0}}
    assert ratios(cached, generated) == {"latency_p50": 75.0, "throughput_8": 773.2,
                                         "throughput_vs_batch": 2.5}


def test_shaped_models_have_the_size_of_the_models_they_stand_for() -> None:
    """Counted on the meta device, no weights made: Qwen2.5-0.5B has 494M parameters,
    TinyLlama-1.1B 1,100M (the sizes their model cards give)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.shaped_model import SHAPES

    def millions(shape: str) -> int:
        with torch.device("meta"):
            model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape]))
        return round(sum(p.numel() for p in model.parameters()) / 1e6)

    assert millions("qwen2.5-0.5b") == 494
    assert millions("tinyllama-1.1b") == 1100
