"""LoRA on the CPU: output tokens/s with and without LoRA at equal batch, and with
`max_num_seqs` and `max_loras` varied (`python -m bench.adapters --grid`).

Each setting is vLLM alone in a process of its own (the engine benchmark's raw side:
`vllm.LLM` with the keyword arguments Almanac gives it, plus the setting's), over the
same prompts with the same greedy sampling; the requests go in with `LLM.enqueue` and
come back through `step()`, so the engine's steps are counted: equal steps for equal
prompts mean equal batches. The settings:

- the base without LoRA, and an engine with LoRA enabled answering the base (what
  enabling LoRA costs by itself);
- one adapter for every request (the cost of applying an adapter);
- four adapters interleaved with room for all four (`max_loras = 4`), and with room for
  two (`max_loras = 2`: batches wait for an adapter's slot);
- the base and four adapters again at a smaller batch (`max_num_seqs = 64`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.engine_sides import run_logged, side_environment
from bench.engine_workload import TINY_ENGINE, prompt
from bench.machine import load_average

# name: (adapters the requests use, max_loras (None: LoRA off), max_num_seqs)
SETTINGS: dict[str, tuple[int, int | None, int]] = {
    "base, LoRA off": (0, None, 256),
    "base, LoRA on": (0, 1, 256),
    "1 adapter": (1, 1, 256),
    "4 adapters, max_loras 4": (4, 4, 256),
    "4 adapters, max_loras 2": (4, 2, 256),
    "base, LoRA off, max_num_seqs 64": (0, None, 64),
    "4 adapters, max_loras 4, max_num_seqs 64": (4, 4, 64),
}
SMOKE_SETTINGS = ("base, LoRA off", "4 adapters, max_loras 2")


def grid(work: Path, model: Path, adapters: list[Path], n: int, rank: int,
         sampling: dict[str, Any], names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every setting in turn; its figures, and how many answers each setting's adapters
    changed from the base's (the adapters are really applied)."""
    names = names or tuple(SETTINGS)
    prompts = work / "grid-prompts.json"
    prompts.write_text(json.dumps([prompt(i) for i in range(n)]), encoding="utf-8")
    out: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    for name in names:
        used, max_loras, max_num_seqs = SETTINGS[name]
        if used > len(adapters):
            continue
        print(f"adapters grid: {name}, {n} prompts", file=sys.stderr, flush=True)
        spec = {"model": str(model), "prompts": str(prompts), "sampling": sampling,
                "engine": {**TINY_ENGINE, "max_num_seqs": max_num_seqs},
                "adapters": [str(a) for a in adapters[:used]], "max_loras": max_loras,
                "rank": rank, "result": str(work / "grid-result.json")}
        spec_path = work / "grid-spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        load = load_average()
        began = time.perf_counter()
        run_logged([sys.executable, "-m", "bench.adapters_grid", str(spec_path)],
                   work / "grid.log", side_environment(False), 3600)
        result = json.loads(Path(spec["result"]).read_text(encoding="utf-8"))
        texts[name] = result.pop("texts")
        result.update(adapters=used, max_loras=max_loras, max_num_seqs=max_num_seqs,
                      wall_s=round(time.perf_counter() - began, 2), load_start=load,
                      load_end=load_average())
        out[name] = result
    base = texts.get(names[0])
    for name, got in texts.items():
        if base is not None:
            out[name]["answers_unlike_the_base"] = sum(a != b for a, b in zip(got, base,
                                                                             strict=True))
    return {"prompts": n, "rank": rank, "settings": out, "ratios": ratios(out)}


def ratios(out: dict[str, Any]) -> dict[str, float]:
    """Output tokens/s of each setting over the base's without LoRA at the same batch."""
    by_batch = {s["max_num_seqs"]: s["output_tokens_per_s"] for s in out.values()
                if s["max_loras"] is None}
    return {name: round(s["output_tokens_per_s"] / by_batch[s["max_num_seqs"]], 3)
            for name, s in out.items() if s["max_num_seqs"] in by_batch}


def worker(spec_path: Path) -> int:
    """One setting: start vLLM, send every prompt (adapters taken in turn), step until
    done; write the figures and the answers."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    prompts = json.loads(Path(spec["prompts"]).read_text(encoding="utf-8"))
    began = time.perf_counter()
    from vllm import LLM, RequestOutput, SamplingParams
    from vllm.lora.request import LoRARequest
    from vllm.platforms import current_platform

    from bench.engine_workload import llm_kwargs

    kwargs = llm_kwargs(spec["model"], spec["engine"], on_cpu=current_platform.is_cpu())
    if spec["max_loras"] is not None:
        kwargs.update(enable_lora=True, max_loras=spec["max_loras"],
                      max_lora_rank=max(8, spec["rank"]))
    llm = LLM(**kwargs)
    started = time.perf_counter()
    loras = [LoRARequest(f"adapter-{i}", i + 1, path) for i, path in enumerate(spec["adapters"])]
    requests = [loras[i % len(loras)] if loras else None for i in range(len(prompts))]
    params = SamplingParams(**spec["sampling"])
    mark = time.perf_counter()
    llm.enqueue(prompts, params, lora_request=requests if loras else None, use_tqdm=False)
    finished: dict[int, RequestOutput] = {}
    steps = 0
    while llm.llm_engine.has_unfinished_requests():
        steps += 1
        for o in llm.llm_engine.step():
            if isinstance(o, RequestOutput) and o.finished:
                finished[int(o.request_id)] = o
    generate_s = time.perf_counter() - mark
    outputs = [finished[i] for i in sorted(finished)]
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    result = {"start_s": round(started - began, 2), "generate_s": round(generate_s, 3),
              "output_tokens": tokens, "engine_steps": steps,
              "output_tokens_per_s": round(tokens / generate_s, 1),
              "tokens_per_step": round(tokens / steps, 1),
              "texts": [o.outputs[0].text for o in outputs]}
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
    llm.llm_engine.engine_core.shutdown()
    return 0


def table(g: dict[str, Any]) -> list[str]:
    lines = [f"  LoRA on the CPU, {g['prompts']} prompts, rank {g['rank']} "
             "(output tokens/s; ratio to the base without LoRA at the same max_num_seqs):"]
    for name, s in g["settings"].items():
        lines.append(f"    {name:42} {s['output_tokens_per_s']:8.0f} tok/s  "
                     f"x{g['ratios'].get(name, float('nan')):.2f}  {s['engine_steps']} steps, "
                     f"{s.get('answers_unlike_the_base', 0)} answers unlike the base "
                     f"(load {s['load_start']})")
    return lines


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1])))
