"""Many LoRA adapters in one engine: `python -m bench.adapters [--prompts N] [--smoke]`.

Benchmark 9 of docs/BENCHMARKS.md. Three ways to get answers from LoRA adapters of
one base model, each `almanac run --json` in a process of its own, on a fresh home:

- one job: four adapters as four [[candidates]] over the same N prompts (4·N
  requests), one engine start, every adapter's requests interleaved in one stream;
- four runs: one job per adapter over the same N prompts, one after the other,
  each starting its engine (what running them one by one costs);
- one adapter over 4·N distinct prompts: the single-adapter throughput the mixed
  stream is held to.

Times are each run's own `total_s` (engine start included; not the interpreter's
start, which both ways pay alike). Figures: the one-job speedup over four runs
(target ≥ 3×) and the mixed stream's output tokens/s over the single adapter's
(target ≥ 0.7×). It also checks that the one job's answers equal the four runs'
answers adapter by adapter. Prints a table on stderr, the figures as JSON on stdout,
and writes them to bench/results/adapters.json (`--smoke`: two adapters, a few
prompts, answers checked, nothing recorded unless `--output` says where).

`--grid` adds output tokens/s with and without LoRA at equal batch and with
`max_num_seqs` / `max_loras` varied (bench.adapters_grid); `--grid-only` runs that alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from bench.adapters_grid import SMOKE_SETTINGS, grid
from bench.adapters_grid import table as grid_table
from bench.engine_sides import run_logged, side_environment
from bench.engine_workload import TINY_ENGINE, prepare_model, prompt
from bench.machine import (
    add_output_options,
    load_average,
    machine_description,
    report,
    wait_for_quiet,
)

RESULTS = Path(__file__).parent / "results" / "adapters.json"
MODEL_NAME = "bench-base"
TARGETS = {"speedup": 3.0, "throughput_ratio": 0.7}


def make_adapters(model: Path, work: Path, count: int, rank: int) -> list[Path]:
    from tests.builders import make_lora_adapter

    return [make_lora_adapter(model, work / f"adapter-{i}", rank=rank, seed=100 + i,
                              scale=2.0).resolve() for i in range(count)]


def write_job(directory: Path, name: str, adapters: list[Path], start: int, stop: int,
              sampling: dict[str, Any]) -> Path:
    """A job over prompts [start, stop) with one candidate per adapter."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(start, stop):
            fh.write(json.dumps({"id": f"p{i:07d}", "text": prompt(i)}) + "\n")
    job = {"name": name,
           "candidates": [{"model": MODEL_NAME, "adapter": str(a), "label": a.name}
                          for a in adapters],
           "input": {"path": f"{name}.jsonl"}, "prompt": {"template": "{{ text }}"},
           "sampling": sampling, "engine": TINY_ENGINE, "output": {"shard_rows": 10_000}}
    path = directory / f"{name}.toml"
    path.write_text(tomli_w.dumps(job), encoding="utf-8")
    return path


def fresh_home(work: Path, name: str, model: Path, job: Path) -> Path:
    """A home with the base registered and every weight fingerprinted (a dry run: the
    one-time cost of a new home, not a run's)."""
    home = work / name
    shutil.rmtree(home, ignore_errors=True)
    env = side_environment(False)
    log = work / f"{name}.log"
    run_logged([sys.executable, "-m", "almanac", "--home", str(home), "models", "add", "--path",
                str(model), "--name", MODEL_NAME], log, env, 600)
    run_logged([sys.executable, "-m", "almanac", "--home", str(home), "run", str(job),
                "--dry-run"], log, env, 600)
    return home


def run(home: Path, job: Path) -> dict[str, Any]:
    load = load_average()
    began = time.perf_counter()
    proc = run_logged([sys.executable, "-m", "almanac", "--home", str(home), "run", str(job),
                       "--json"], home.parent / f"{home.name}.log", side_environment(False), 7200)
    wall = time.perf_counter() - began
    s = json.loads(proc.stdout)
    gen = s["generation_s"] or 0.0
    return {"job": s["job"], "status": s["status"], "generated": s["generated"],
            "failed": s["failed"], "engine_starts": s["engine_starts"],
            "engine_start_s": round(s["engine_start_s"] or 0.0, 3),
            "generation_s": round(gen, 3), "total_s": round(s["total_s"], 3),
            "wall_s": round(wall, 3), "output_tokens": s["output_tokens"],
            "output_tokens_per_s": round(s["output_tokens"] / gen, 1) if gen else None,
            "engine_steps": s["phases"]["engine_steps"], "load_start": load,
            "load_end": load_average()}


def outputs(home: Path, job: str) -> dict[tuple[str, str], str | None]:
    """{(candidate, input id): output} of a job, read with plain pyarrow."""
    import pyarrow.dataset as ds

    table = ds.dataset(home / "predictions" / job, format="parquet").to_table(
        columns=["candidate", "input_id", "output"])
    return {(r["candidate"], r["input_id"]): r["output"] for r in table.to_pylist()}


def measure(work: Path, model: Path, adapters: list[Path], n: int,
            sampling: dict[str, Any]) -> dict[str, Any]:
    k = len(adapters)
    together = write_job(work / "jobs", "together", adapters, 0, n, sampling)
    singles = [write_job(work / "jobs", f"single-{i}", [a], 0, n, sampling)
               for i, a in enumerate(adapters)]
    one = write_job(work / "jobs", "one-adapter", adapters[:1], 0, k * n, sampling)
    homes = {"together": fresh_home(work, "home-together", model, together),
             "one": fresh_home(work, "home-one", model, one)}
    homes.update({f"single-{i}": fresh_home(work, f"home-single-{i}", model, job)
                  for i, job in enumerate(singles)})
    print(f"adapters: one job, {k} adapters x {n} prompts", file=sys.stderr, flush=True)
    mixed = run(homes["together"], together)
    print(f"adapters: {k} runs of one adapter x {n} prompts", file=sys.stderr, flush=True)
    separate = [run(homes[f"single-{i}"], job) for i, job in enumerate(singles)]
    print(f"adapters: one adapter x {k * n} prompts", file=sys.stderr, flush=True)
    alone = run(homes["one"], one)
    joined = outputs(homes["together"], "together")
    each: dict[tuple[str, str], str | None] = {}
    for i in range(k):
        each.update(outputs(homes[f"single-{i}"], f"single-{i}"))
    if len(joined) != k * n or mixed["failed"] or any(r["failed"] for r in separate):
        raise AssertionError(f"expected {k * n} answers without failures, got {len(joined)}")
    equal = sum(joined[key] == each.get(key) for key in joined)
    four_s = sum(r["total_s"] for r in separate)
    figures = {
        "speedup": round(four_s / mixed["total_s"], 2),
        "speedup_without_engine_starts": round(
            sum(r["total_s"] - r["engine_start_s"] for r in separate)
            / (mixed["total_s"] - mixed["engine_start_s"]), 2),
        "throughput_ratio": round(mixed["output_tokens_per_s"] / alone["output_tokens_per_s"], 3),
        "outputs_equal": equal, "outputs_equal_share": round(equal / len(joined), 4),
    }
    figures["targets_met"] = {name: figures[name] >= goal for name, goal in TARGETS.items()}
    return {"adapters": k, "prompts": n, "one_job": mixed, "separate_runs": separate,
            "separate_total_s": round(four_s, 3), "one_adapter": alone, **figures}


def table(r: dict[str, Any]) -> str:
    if "one_job" not in r:
        return "\n".join(grid_table(r["grid"]))
    m, alone = r["one_job"], r["one_adapter"]
    lines = [f"{r['adapters']} LoRA adapters x {r['prompts']} prompts on a tiny base "
             f"(load {r['load_average']})",
             f"  one job:      {m['total_s']:8.1f} s  ({m['engine_starts']} engine start, "
             f"{m['output_tokens_per_s']} output tokens/s)",
             f"  {len(r['separate_runs'])} runs:       {r['separate_total_s']:8.1f} s  "
             f"({sum(s['engine_starts'] for s in r['separate_runs'])} engine starts)",
             f"  one adapter x {r['adapters'] * r['prompts']}: {alone['total_s']:.1f} s "
             f"({alone['output_tokens_per_s']} output tokens/s)",
             f"  speedup {r['speedup']}x (target {TARGETS['speedup']}x); mixed/single "
             f"throughput {r['throughput_ratio']} (target {TARGETS['throughput_ratio']}); "
             f"outputs equal {r['outputs_equal_share']:.0%}"]
    if "grid" in r:
        lines += grid_table(r["grid"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.adapters",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=1000, help="prompts per adapter")
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--grid", action="store_true",
                        help="also tokens/s with and without LoRA, max_num_seqs and max_loras "
                             "varied (one engine start per setting)")
    parser.add_argument("--grid-only", action="store_true", help="the grid alone")
    parser.add_argument("--grid-prompts", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true",
                        help="two adapters, 12 prompts: answers checked, nothing recorded")
    add_output_options(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompts, args.adapters = min(args.prompts, 12), min(args.adapters, 2)
        args.grid_prompts = min(args.grid_prompts, 12)
    output = args.output if args.output or args.smoke else RESULTS
    sampling = {"max_tokens": args.max_tokens, "temperature": 0.0, "seed": 0}
    work = Path(tempfile.mkdtemp(prefix="almanac-bench-adapters-"))
    try:
        model, what = prepare_model(None, work)
        adapters = make_adapters(model, work, args.adapters, args.rank)
        quiet = wait_for_quiet(args.quiet_below) if args.quiet_below else None
        results = {"benchmark": "adapters", "smoke": args.smoke,
                   "date": datetime.now(UTC).isoformat(timespec="seconds"),
                   "machine": machine_description(), "model": what, "rank": args.rank,
                   "sampling": sampling, "quiet": quiet, "load_average": load_average()}
        if not args.grid_only:
            results.update(measure(work, model, adapters, args.prompts, sampling))
        if args.grid or args.grid_only:
            results["grid"] = grid(work, model, adapters, args.grid_prompts, args.rank, sampling,
                                   SMOKE_SETTINGS if args.smoke else None)
            results["grid"].update(date=results["date"], load_average=results["load_average"],
                                   load_average_end=load_average())
        if args.grid_only and output is not None and output.exists() and not args.smoke:
            # The grid alone joins the figures recorded before, which keep their date.
            results = {**json.loads(output.read_text(encoding="utf-8")),
                       "grid": results["grid"]}
        results.setdefault("load_average_end", load_average())
        report(results, table(results), output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
