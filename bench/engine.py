"""What Almanac adds to the engine it drives: `python -m bench.engine [--prompts N] [--smoke]`.

Benchmarks 1, 2, 3 and 6 of docs/BENCHMARKS.md, each side in a process of its own
(bench.engine_sides): raw vLLM timing `LLM.generate` alone, and `almanac run --json`
on a fresh home, whose time is the run's `total_s - engine_start_s` and whose phases
(plan, copy, tokenize, generate, write, ...) the run measures and reports itself.

The prompts are distinct (no two equal, so nothing is deduplicated) and the job's
template is `{{ text }}`, so both sides send vLLM the same strings with the same
sampling parameters. The benchmark checks that both answered every prompt, that
Almanac's `prompt` column holds those strings, and how many outputs agree.

Measured, in order: the overhead at N prompts (raw and almanac alternately,
`--reps` times each, best of each side compared), and after each almanac run, on
its home, a cached rerun of the same job and an incremental run with 5% new rows
appended; `--breakdown-reps` pairs whose raw side times the parts of `generate`;
the overhead at the `--scaling` sizes; and `--breakdown-reps` pairs with
VLLM_ENABLE_V1_MULTIPROCESSING=1. Prints a table on stderr and the figures as JSON
on stdout, and writes them to bench/results/engine.json (`--smoke`: a small run
that checks every answer and records nothing unless `--output` says where).

Every run is kept as it lands (in `<output>.partial.json` while the benchmark
runs); if one fails, the figures of the runs before it are still computed,
printed and kept there, with the error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.engine_figures import (
    Run,
    best_with_runs,
    breakdown,
    cached_figures,
    incremental_figures,
    pair_figures,
    table,
)
from bench.engine_sides import almanac_side, check_outputs, new_home, raw_side
from bench.engine_workload import (
    TINY_ENGINE,
    engine_options,
    llm_kwargs,
    prepare_model,
    prompt,
    write_inputs,
    write_job,
)
from bench.machine import (
    add_output_options,
    load_average,
    machine_description,
    report,
    wait_for_quiet,
)

__all__ = ["TINY_ENGINE", "llm_kwargs", "machine_description", "main", "prompt",
           "write_inputs", "write_job"]

RESULTS = Path(__file__).parent / "results" / "engine.json"
SCALING_BIG_RUN = 10_000  # scaling sizes above this get one pair, not --reps
INCREMENT = 0.05  # share of new rows in the incremental run


class Bench:
    """Runs the sides and keeps every run as it lands, tagged with what it measured;
    with a checkpoint file, that file is rewritten after each run."""

    def __init__(self, work: Path, model: Path, engine: dict[str, Any], sampling: dict[str, Any],
                 header: dict[str, Any], checkpoint: Path | None) -> None:
        self.work, self.model, self.engine, self.sampling = work, model, engine, sampling
        self.header, self.checkpoint = header, checkpoint
        self.runs: list[Run] = []
        self.homes = 0

    def keep(self, run: Run, measure: str) -> Run:
        run["measure"] = measure
        self.runs.append(run)
        if self.checkpoint is not None:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            partial = {**self.header, "complete": False, "runs": self.runs}
            self.checkpoint.write_text(json.dumps(partial, indent=2) + "\n", encoding="utf-8")
        return run

    def measured(self, measure: str) -> list[Run]:
        return [r for r in self.runs if r["measure"] == measure]

    def workload(self, n: int) -> tuple[Path, Path, Path]:
        """A directory with the job, its n input rows, and the same prompts for the raw side."""
        d = self.work / f"n{n}"
        if not d.exists():
            d.mkdir()
            write_inputs(d / "prompts.jsonl", 0, n)
            write_job(d, self.engine, self.sampling)
            with (d / "texts.jsonl").open("w", encoding="utf-8") as fh:
                for i in range(n):
                    fh.write(json.dumps(prompt(i)) + "\n")
        return d, d / "job.toml", d / "texts.jsonl"

    def raw(self, n: int, measure: str, *, instrument: bool = False,
            multiprocessing: bool = False) -> Run:
        d, _, texts = self.workload(n)
        print(f"raw vLLM, {n:,} prompts{' (instrumented)' if instrument else ''}…",
              file=sys.stderr, flush=True)
        out = raw_side(d, self.model, self.engine, self.sampling, texts,
                       instrument=instrument, multiprocessing=multiprocessing)
        if out["prompts"] != n:
            raise AssertionError(f"raw side answered {out['prompts']} of {n} prompts")
        return self.keep(out, measure)

    def almanac(self, n: int, measure: str, *, multiprocessing: bool = False) -> tuple[Run, Path]:
        d, job, _ = self.workload(n)
        self.homes += 1
        home = new_home(self.work, f"home{self.homes}", self.model, job, multiprocessing)
        print(f"almanac run, {n:,} prompts…", file=sys.stderr, flush=True)
        out = almanac_side(home, job, multiprocessing=multiprocessing)
        if out["generated"] != n or out["failed"]:
            raise AssertionError(f"almanac generated {out['generated']} and failed "
                                 f"{out['failed']} of {n} rows")
        if (d / "raw-outputs.jsonl").exists():
            out["check"] = check_outputs(home, d / "raw-outputs.jsonl", n)
        return self.keep(out, measure), home

    def pair(self, n: int, reps: int, measure: str, *,
             then: Callable[[Path, Run], None] | None = None, instrument: bool = False,
             multiprocessing: bool = False) -> None:
        """raw and almanac alternately (raw first, then almanac first, ...);
        `then(home, run)` runs after each almanac run, on its home."""
        for rep in range(reps):
            for side in ("raw", "almanac") if rep % 2 == 0 else ("almanac", "raw"):
                if side == "raw":
                    self.raw(n, measure, instrument=instrument, multiprocessing=multiprocessing)
                    continue
                run, home = self.almanac(n, measure, multiprocessing=multiprocessing)
                if then is not None:
                    then(home, run)

    def cached(self, home: Path, first: Run, n: int) -> None:
        _, job, _ = self.workload(n)
        print("almanac run again (everything cached)…", file=sys.stderr, flush=True)
        out = almanac_side(home, job)
        if out["engine_started"] or out["generated"] or out["cached"] != n:
            raise AssertionError(f"the cached rerun was not served from the cache: {out}")
        self.keep(cached_figures(out, first), "cached")

    def incremental(self, home: Path, full: Run, n: int) -> None:
        """5% new rows appended to the same input file, run again in the same home."""
        d, _, _ = self.workload(n)
        extra = max(1, round(n * INCREMENT))
        inc = self.work / f"n{n}-incremental"
        if inc.exists():
            shutil.rmtree(inc)
        shutil.copytree(d, inc)
        write_inputs(inc / "prompts.jsonl", n, n + extra, append=True)
        print(f"almanac run with {extra:,} new rows appended…", file=sys.stderr, flush=True)
        out = almanac_side(home, inc / "job.toml")
        if out["generated"] != extra or out["cached"] != n or out["failed"]:
            raise AssertionError(f"the incremental run did not generate just the new rows: {out}")
        self.keep(incremental_figures(out, full, extra, INCREMENT), "incremental")


def measure(bench: Bench, args: argparse.Namespace, sizes: list[int]) -> None:
    n = args.prompts

    # 1. overhead at N; after each almanac run, on its home: 2. the same job again,
    # 3. the job with 5% new rows appended
    def then(home: Path, first: Run) -> None:
        bench.cached(home, first, n)
        bench.incremental(home, first, n)

    bench.pair(n, args.reps, "overhead", then=then, instrument=args.smoke)
    if not args.smoke:  # a smoke run's only pair is already instrumented
        bench.pair(n, args.breakdown_reps, "breakdown", instrument=True)
    # 6. scaling: the sizes of at most SCALING_BIG_RUN prompts get --reps pairs, bigger ones one
    for size in sizes:
        if size != n:
            bench.pair(size, args.reps if size <= SCALING_BIG_RUN else 1, f"scaling:{size}")
    if not args.no_multiprocessing:
        bench.pair(n, args.breakdown_reps, "multiprocessing", multiprocessing=True)


def figures(bench: Bench, n: int, sizes: list[int]) -> dict[str, Any]:
    """Every figure the runs so far allow."""
    overhead = pair_figures(n, bench.measured("overhead"))
    out: dict[str, Any] = {
        "llm_kwargs": next((r["llm_kwargs"] for r in bench.runs if r["side"] == "raw"), None),
        "overhead": overhead,
        "cached_rerun": best_with_runs(bench.measured("cached"), "share_of_generation"),
        "incremental": best_with_runs(bench.measured("incremental"), "vs_expected"),
    }
    instrumented = bench.measured("breakdown")
    out["breakdown"] = breakdown(instrumented or overhead["runs"])
    if instrumented:
        out["breakdown"]["runs"] = instrumented
    keep = ("prompts", "raw_generate_s", "almanac_s", "ratio", "ratios_by_rep",
            "mean_output_tokens")
    out["scaling"] = []
    for size in sizes:
        pair = overhead if size == n else pair_figures(size, bench.measured(f"scaling:{size}"))
        out["scaling"].append({k: pair[k] for k in keep if k in pair}
                              | {"runs": [] if pair is overhead else pair["runs"]})
    if runs := bench.measured("multiprocessing"):
        out["multiprocessing"] = pair_figures(n, runs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3, help="raw/almanac pairs at --prompts")
    parser.add_argument("--breakdown-reps", type=int, default=2,
                        help="instrumented pairs, and pairs with VLLM_ENABLE_V1_MULTIPROCESSING=1")
    parser.add_argument("--scaling", default="500,5000,50000",
                        help="comma-separated prompt counts for the scaling figures ('' for none)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model", help="a catalog ref, Hub repo id or directory "
                                        "(default: a tiny generated model)")
    parser.add_argument("--engine", action="append", default=[], metavar="KEY=JSON",
                        help="an [engine] option for both sides, e.g. max_model_len=2048 "
                             "(repeatable)")
    parser.add_argument("--no-multiprocessing", action="store_true",
                        help="skip the VLLM_ENABLE_V1_MULTIPROCESSING=1 pair")
    parser.add_argument("--smoke", action="store_true",
                        help="120 prompts, one pair, every answer checked, nothing recorded")
    add_output_options(parser, RESULTS)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompts, args.reps, args.scaling = min(args.prompts, 120), 1, ""
        args.no_multiprocessing = True
    output = args.output if args.output or args.smoke else RESULTS
    checkpoint = output.with_name(output.stem + ".partial.json") if output else None
    sizes = [int(s) for s in args.scaling.split(",") if s.strip()]
    sampling = {"max_tokens": args.max_tokens, "temperature": 0.0}
    began = time.perf_counter()
    error = None
    with tempfile.TemporaryDirectory(prefix="almanac-bench-engine-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model, what = prepare_model(args.model, work)
        engine = engine_options(args.model, args.engine)
        header: dict[str, Any] = {
            "benchmark": "engine", "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "smoke": args.smoke, "model": {"what": what, "path": str(model)},
            "engine_options": engine, "sampling": sampling, "prompt_example": prompt(0),
        }
        if args.quiet_below is not None:
            header["quiet"] = wait_for_quiet(args.quiet_below)
        bench = Bench(work, model, engine, sampling, header, checkpoint)
        load_start = load_average()
        try:
            measure(bench, args, sizes)
        except (Exception, KeyboardInterrupt) as exc:
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
        results = {**header, **figures(bench, args.prompts, sizes)}
    results["load_average"] = {"start": load_start, "end": load_average()}
    results["total_s"] = round(time.perf_counter() - began, 1)
    results["machine"] = machine_description()
    if error is not None:
        results["error"] = error
        # The recorded figures stay as they were; this run's go beside them.
        report(results, table(results), checkpoint)
        return 1
    report(results, table(results), output)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
