"""One `almanac run --json` of the Ray benchmark, or several side by side, with the CPU
each kind of process took meanwhile (bench.ray_cpu) and the driver's own account of
its time (the run's phases)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.engine_sides import ROOT
from bench.machine import load_average
from bench.ray_cpu import CpuAccount

KEPT = ("status", "generated", "failed", "output_tokens", "engine_starts", "engine_start_s",
        "generation_s", "plan_s", "total_s", "executor", "replicas", "phases")
TIMEOUT_S = 7200


def run_all(runs: list[tuple[Path, Path, dict[str, str], tuple[str, ...]]],
            cluster_head: int | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Start every (home, job, environment, extra arguments) run at once, wait for all;
    each run's figures, and the CPU account of them all."""
    load = load_average()
    account = CpuAccount(set(), cluster_head)
    began = time.perf_counter()
    procs = []
    for home, job, env, extra in runs:
        log = (home.parent / f"{home.name}.log").open("a", encoding="utf-8")
        cmd = [sys.executable, "-m", "almanac", "--home", str(home), "run", str(job),
               "--json", *extra]
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                cwd=ROOT)
        account.drivers.add(proc.pid)
        procs.append((home, proc, log))
    account.start()
    outs: list[dict[str, Any]] = []
    try:
        for home, proc, log in procs:
            stdout, _ = proc.communicate(timeout=TIMEOUT_S)
            wall = time.perf_counter() - began
            log.close()
            if proc.returncode != 0:
                tail = Path(log.name).read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"{home.name}: almanac run exited {proc.returncode}:\n{tail}")
            s = json.loads(stdout)
            out = {k: s.get(k) for k in KEPT}
            start = s["engine_start_s"] or 0.0
            out.update(time_s=round(s["total_s"] - start, 3), wall_s=round(wall, 3),
                       load_start=load, load_end=load_average(), engine_log=s.get("engine_log"),
                       driver=driver_breakdown(s))
            if s["failed"] or s["status"] != "ok":
                raise AssertionError(f"{home.name}: {s['status']}, {s['failed']} rows failed")
            outs.append(out)
    finally:
        for _, proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        cpu = account.stop()
    return outs, cpu


def run(home: Path, job: Path, env: dict[str, str], *extra: str,
        cluster_head: int | None = None) -> dict[str, Any]:
    """One run alone, with its CPU account."""
    (out,), cpu = run_all([(home, job, env, extra)], cluster_head)
    out["cpu"] = cpu
    return out


def driver_breakdown(s: dict[str, Any]) -> dict[str, float]:
    """The driver's time during generation, from the run's phases: tokenizing, shipping
    the request blocks, waiting for answers, turning answer rows into records, writing
    shards and index, and the rest of the loop (Arrow rows to Python, counters). In
    process, waiting for answers is the engine's own work."""
    p = s["phases"]
    generation = s["generation_s"] or 0.0
    handled = generation - p["generate_s"] - p["record_s"] - p["write_s"]
    if s.get("executor") != "ray":  # on Ray, tokenizing comes before the first answer
        handled -= p["tokenize_s"]
    return {"tokenize_s": round(p["tokenize_s"], 2), "ship_s": round(p.get("ship_s", 0.0), 2),
            "wait_for_answers_s": round(p["generate_s"], 2),
            "records_s": round(p["record_s"], 2), "shards_s": round(p["write_s"], 2),
            "rest_of_loop_s": round(max(handled, 0.0), 2),
            "until_first_answer_s": round(p["engine_start_s"], 2),
            "after_first_answer_s": round(generation, 2)}
