"""The two sides of one engine measurement, each in a process of its own.

- raw: a process that imports vLLM, builds `vllm.LLM` with exactly the keyword
  arguments Almanac's engine passes (`llm_kwargs`) and times `llm.generate(...)`
  and nothing else; instrumented, it makes the same calls `generate` makes
  (`LLM.enqueue`, then engine steps until none is unfinished) and times each part;
- almanac: `almanac --home TMP run job.toml --json`; the run reports its own
  phases, and its time is `total_s - engine_start_s`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.engine_workload import JOB, MODEL_NAME, llm_kwargs, prompt
from bench.machine import load_average

ROOT = Path(__file__).resolve().parent.parent
# What an almanac run reports that the benchmark keeps.
SUMMARY_FIELDS = ("status", "plan", "cached", "copied", "generated", "failed", "prompt_tokens",
                  "output_tokens", "engine_started", "engine_start_s", "generation_s", "plan_s",
                  "total_s", "tokens_per_s", "phases")


def side_environment(multiprocessing: bool) -> dict[str, str]:
    """Both sides run with the settings Almanac's engine gives vLLM."""
    from batch.run.executors.target import ENGINE_ENVIRONMENT

    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**ENGINE_ENVIRONMENT, **os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
            "VLLM_ENABLE_V1_MULTIPROCESSING": "1" if multiprocessing else "0"}


def run_logged(cmd: list[str], log: Path, env: dict[str, str],
               timeout: float) -> subprocess.CompletedProcess[str]:
    with log.open("a", encoding="utf-8") as err:
        err.write(f"\n$ {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                              cwd=ROOT, timeout=timeout, check=False)
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
    run_logged([sys.executable, "-m", "bench.engine_sides", str(spec_path)], work / "raw.log",
               side_environment(multiprocessing), timeout)
    out = json.loads(Path(spec["result"]).read_text(encoding="utf-8"))
    out.update(side="raw", wall_s=round(time.perf_counter() - began, 3),
               load_start=load, load_end=load_average(), multiprocessing=multiprocessing)
    return out


def raw_worker(spec_path: Path) -> int:
    """Raw vLLM: import, build LLM, time generate() alone (or its parts, instrumented)."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    prompts = [json.loads(line) for line in
               Path(spec["prompts"]).read_text(encoding="utf-8").splitlines()]
    t0 = time.perf_counter()
    from vllm import LLM, RequestOutput, SamplingParams
    from vllm.platforms import current_platform

    t1 = time.perf_counter()
    kwargs = llm_kwargs(spec["model"], spec["engine"], on_cpu=current_platform.is_cpu())
    llm = LLM(**kwargs)
    t2 = time.perf_counter()
    params = SamplingParams(**spec["sampling"])
    parts: dict[str, Any] = {}
    t3 = time.perf_counter()
    if spec["instrument"]:
        # What generate() does, step by step: the same public calls, timed apart.
        llm.enqueue(prompts, params, use_tqdm=False)
        queued = time.perf_counter()
        finished: list[RequestOutput] = []
        steps = 0
        while llm.llm_engine.has_unfinished_requests():
            steps += 1
            finished += [o for o in llm.llm_engine.step()
                         if isinstance(o, RequestOutput) and o.finished]
        stepped = time.perf_counter()
        outputs = sorted(finished, key=lambda o: int(o.request_id))
        parts = {"add_requests_s": round(queued - t3, 4),
                 "engine_step_s": round(stepped - queued, 4), "engine_steps": steps}
    else:
        outputs = llm.generate(prompts, params, use_tqdm=False)
    t4 = time.perf_counter()
    with Path(spec["outputs"]).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"prompt": out.prompt, "text": out.outputs[0].text,
                                  "tokens": len(out.outputs[0].token_ids)}) + "\n"
                      for out in outputs)
    result = {
        "prompts": len(outputs), "import_s": round(t1 - t0, 4), "construct_s": round(t2 - t1, 4),
        "start_s": round(t2 - t0, 4), "generate_s": round(t4 - t3, 4),
        "prompt_tokens": sum(len(o.prompt_token_ids or []) for o in outputs),
        "output_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
        "llm_kwargs": kwargs,
    }
    if parts:
        result["parts"] = parts
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
    llm.llm_engine.engine_core.shutdown()
    return 0


def new_home(work: Path, name: str, model: Path, job: Path, multiprocessing: bool = False) -> Path:
    """A fresh home with the model registered and its weights' fingerprint taken (a
    dry run does that once per home: a one-time cost, not a per-run one)."""
    home = work / name
    if home.exists():
        shutil.rmtree(home)
    env = side_environment(multiprocessing)
    log = work / f"{name}.log"
    run_logged([sys.executable, "-m", "almanac", "--home", str(home), "models", "add", "--path",
                str(model), "--name", MODEL_NAME], log, env, 600)
    run_logged([sys.executable, "-m", "almanac", "--home", str(home), "run", str(job),
                "--dry-run"], log, env, 600)
    return home


def almanac_side(home: Path, job: Path, *, multiprocessing: bool = False,
                 timeout: float = 7200) -> dict[str, Any]:
    load = load_average()
    began = time.perf_counter()
    proc = run_logged([sys.executable, "-m", "almanac", "--home", str(home), "run", str(job),
                       "--json"], home.parent / f"{home.name}.log",
                      side_environment(multiprocessing), timeout)
    wall = time.perf_counter() - began
    summary = json.loads(proc.stdout)
    out = {k: summary[k] for k in SUMMARY_FIELDS}
    start = out["engine_start_s"] or 0.0
    time_s = out["total_s"] - start
    out.update(side="almanac", time_s=round(time_s, 4),
               other_s=round(time_s - out["plan_s"] - (out["generation_s"] or 0.0), 4),
               wall_s=round(wall, 3), load_start=load, load_end=load_average(),
               multiprocessing=multiprocessing)
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


if __name__ == "__main__":
    sys.exit(raw_worker(Path(sys.argv[1])))
