"""How quickly one command answers from the shell: `python -m bench.shell [--runs 30] [--smoke]`.

A person at a terminal pays for a whole process each time: Python's start, the imports,
opening the catalog or the cache, the answer. This times whole processes, each command
run `--runs` times, the commands taking turns so that a slow stretch of the machine falls
on all of them:

- `almanac query JOB --input-id ID`: one cached prediction (a random id each time) from a
  job of `--rows` predictions written by the real shard writer (bench.lookups.fill);
- `almanac models list`: the seed catalog `almanac init` loads;
- `almanac --version` and `python -c pass`: what every command pays before its own work;
- `click + pyarrow.parquet`: a bare Python importing only what the lookup cannot do
  without (the CLI's parser, and pyarrow's Parquet reader, which loads numpy itself),
  numpy's OpenBLAS started with one thread as `almanac query` starts it: the floor of
  `query --input-id`, beside it.

Each figure is min / median / max of wall-clock time, with each process's CPU time (user
and system, from the kernel's accounting of the finished child) beside it: on a machine
other work keeps busy, wall time measures the machine, while CPU time stays close to
what the command costs (the process runs alone on a core, with one thread doing nearly
all the work). The processes run as an installed
`almanac` runs: Python's bytecode cache is written by a first, untimed run of each command
(an installed wheel ships it compiled), and PYTHONDONTWRITEBYTECODE is not passed on.
For each command, the heavy packages it imported are listed with their import time
(`python -X importtime`, cumulative, from one extra run): what the command pays for.

Prints a table on stderr and the figures as JSON on stdout, and writes them to
bench/results/shell.json (`--smoke`: 2 runs of each on 500 predictions, answers
checked, nothing recorded unless `--output` says where).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import add_output_options, load_average, machine, report, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "shell.json"
TARGET_MS = 300.0  # median, whole process
TARGETED = ("query --input-id", "models list")
# Packages whose import is worth naming (a few hundred milliseconds each, or more).
HEAVY = ("alembic", "sqlalchemy", "pandas", "pyarrow", "numpy", "jinja2", "jsonschema",
         "huggingface_hub", "platformdirs", "rich", "textual", "vllm", "torch", "fastapi")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["ALMANAC_HOME"] = str(home)
    return env


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _run(argv: list[str], env: dict[str, str]
         ) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU seconds of one whole process (children run one at a time here, so
    the growth of RUSAGE_CHILDREN is this one's)."""
    cpu0, t0 = _cpu(), time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, cpu, proc


FLOOR = ("import os; os.environ.setdefault('OPENBLAS_NUM_THREADS', '1'); "
         "import click, pyarrow.parquet")


def commands(job: str, rows: int) -> dict[str, Any]:
    """name -> a maker of argv (given a random source: the query asks a random id)."""
    from bench.lookups import input_id

    almanac = [sys.executable, "-m", "almanac"]
    return {
        "query --input-id": lambda r: [*almanac, "query", job, "--input-id",
                                       input_id(r.randrange(rows)), "--json"],
        "models list": lambda r: [*almanac, "models", "list"],
        "almanac --version": lambda r: [*almanac, "--version"],
        "python -c pass": lambda r: [sys.executable, "-c", "pass"],
        "click + pyarrow.parquet": lambda r: [sys.executable, "-c", FLOOR],
    }


def _check(name: str, argv: list[str], proc: subprocess.CompletedProcess[str]) -> None:
    """What the smoke run holds each answer to."""
    if name == "query --input-id":
        (record,) = json.loads(proc.stdout)
        if record["input_id"] != argv[argv.index("--input-id") + 1]:
            raise AssertionError(f"asked {argv}, got {record['input_id']}")
    elif name == "models list" and "eryk-mazus/polka-1.1b" not in proc.stdout:
        raise AssertionError(f"models list lacks a seed model: {proc.stdout[:500]}")


def imports_of(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """The heavy top-level packages the command imported, with their cumulative import
    time in ms (one run under `-X importtime`, which itself slows the run a little)."""
    traced = [argv[0], "-X", "importtime", *argv[1:]]
    proc = subprocess.run(traced, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    lines = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            depth = (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2
            lines.append((depth, int(parts[1]), parts[2].strip().split(".")[0]))
    # Python lists a module after what it imported; read backwards, each module comes
    # after its importers, and a package counts once where nothing of its own imported it.
    out: dict[str, float] = {}
    above: list[tuple[int, str]] = []
    for depth, cumulative_us, root in reversed(lines):
        while above and above[-1][0] >= depth:
            above.pop()
        if root in HEAVY and all(r != root for _, r in above):
            out[root] = round(out.get(root, 0.0) + cumulative_us / 1000, 1)
        above.append((depth, root))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _stats(seconds: list[float], cpu: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)
    cpu_ms = sorted(s * 1000 for s in cpu)
    return {"n": len(ms), "min_ms": round(ms[0], 1), "median_ms": round(statistics.median(ms), 1),
            "max_ms": round(ms[-1], 1), "all_ms": [round(x, 1) for x in ms],
            "cpu_min_ms": round(cpu_ms[0], 1), "cpu_median_ms": round(statistics.median(cpu_ms), 1),
            "cpu_max_ms": round(cpu_ms[-1], 1)}


def prepare(home: Path, rows: int) -> str:
    """A home with the seed catalog and one job of `rows` predictions; returns the job."""
    from bench.lookups import JOB, fill

    _run([sys.executable, "-m", "almanac", "init"], _env(home))
    fill(home / "predictions", rows)
    return JOB


def _table(r: dict[str, Any]) -> str:
    lines = [f"whole processes, {r['runs']} runs each, {r['rows']:,} predictions in the job",
             f"{'command':<24}{'min ms':>9}{'median':>9}{'max ms':>9}{'cpu med':>9}{'target':>12}"
             "  imports (ms)"]
    for name, s in r["commands"].items():
        target = f"<= {TARGET_MS:.0f}" if name in TARGETED else ""
        heavy = ", ".join(f"{k} {v:.0f}" for k, v in r["imports"].get(name, {}).items())
        lines.append(f"{name:<24}{s['min_ms']:>9.0f}{s['median_ms']:>9.0f}{s['max_ms']:>9.0f}"
                     f"{s['cpu_median_ms']:>9.0f}{target:>12}  {heavy}")
    lines.append(f"load average {r['load_average']['start']} -> {r['load_average']['end']}")
    lines.append("meets targets: " + ("yes" if r["met"] else "NO"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shell", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each command")
    parser.add_argument("--rows", type=int, default=100_000, help="predictions in the job")
    parser.add_argument("--smoke", action="store_true",
                        help="2 runs each over 500 predictions, answers checked, nothing recorded")
    add_output_options(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.rows = min(args.runs, 2), min(args.rows, 500)
    output = args.output if args.output or args.smoke else RESULTS
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="almanac-bench-shell-") as tmp:
        home = Path(tmp) / "home"
        print(f"preparing a home with {args.rows:,} predictions…", file=sys.stderr, flush=True)
        job = prepare(home, args.rows)
        env = _env(home)
        made = commands(job, args.rows)
        for name, make in made.items():  # untimed: writes bytecode, warms the page cache
            argv_ = make(rng)
            _check(name, argv_, _run(argv_, env)[2])
        results: dict[str, Any] = {
            "benchmark": "shell", "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "smoke": args.smoke, "runs": args.runs, "rows": args.rows,
        }
        if args.quiet_below is not None:
            results["quiet"] = wait_for_quiet(args.quiet_below)
        load_start = load_average()
        times: dict[str, list[float]] = {name: [] for name in made}
        cpu: dict[str, list[float]] = {name: [] for name in made}
        for _ in range(args.runs):
            for name, make in made.items():
                argv_ = make(rng)
                wall, used, proc = _run(argv_, env)
                if args.smoke:
                    _check(name, argv_, proc)
                times[name].append(wall)
                cpu[name].append(used)
        results["load_average"] = {"start": load_start, "end": load_average()}
        results["commands"] = {name: _stats(times[name], cpu[name]) for name in made}
        results["imports"] = {name: imports_of(make(rng), env) for name, make in made.items()
                              if name in TARGETED}
    results["targets"] = {name: {"median_ms": results["commands"][name]["median_ms"],
                                 "target_ms": TARGET_MS,
                                 "met": results["commands"][name]["median_ms"] <= TARGET_MS}
                          for name in TARGETED}
    results["met"] = all(t["met"] for t in results["targets"].values())
    results["machine"] = machine("sqlalchemy", "pyarrow", "click", "almanac")
    report(results, _table(results), output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
