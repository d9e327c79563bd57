"""The engine benchmark's figures, computed from whatever runs there are: a figure
whose runs are missing (none asked for, or the benchmark stopped early) is left
out, never a reason to fail."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

TARGET_RATIO = 0.90  # raw generate time / almanac time
TARGET_CACHED = 0.02  # cached rerun / first run's generation time
# The parts of an almanac run that do not overlap (see batch.run.result.Phases);
# engine start is reported apart, as on the raw side.
OWN_PHASES = ("recover_s", "resolve_s", "plan_s", "catalog_s", "copy_s", "tokenize_s",
              "generate_s", "record_s", "write_s")

Run = dict[str, Any]


def _best(runs: list[Run], key: Callable[[Run], float]) -> Run | None:
    return min(runs, key=key, default=None)


def pair_figures(n: int, runs: list[Run]) -> dict[str, Any]:
    """Best of each side at `n` prompts, and their ratio when both sides ran."""
    raws = [r for r in runs if r["side"] == "raw"]
    alms = [r for r in runs if r["side"] == "almanac"]
    out: dict[str, Any] = {"prompts": n, "runs": runs}
    if raws:
        out["raw_generate_s"] = min(r["generate_s"] for r in raws)
        out["raw_output_tokens_per_s"] = round(max(r["output_tokens"] / r["generate_s"]
                                                   for r in raws), 1)
    if alms:
        out["almanac_s"] = min(a["time_s"] for a in alms)
        out["almanac_output_tokens_per_s"] = round(max(a["output_tokens"] / a["time_s"]
                                                       for a in alms), 1)
    if raws and alms:
        out["ratio"] = round(out["raw_generate_s"] / out["almanac_s"], 4)
        out["ratios_by_rep"] = [round(r["generate_s"] / a["time_s"], 4) for r, a in zip(raws, alms, strict=False)]
        out["met"] = out["ratio"] >= TARGET_RATIO
    out["target"] = TARGET_RATIO
    out["engine_start_s"] = {
        "raw": min((r["start_s"] for r in raws), default=None),
        "almanac": min((a["engine_start_s"] for a in alms if a["engine_started"]), default=None),
    }
    out["mean_output_tokens"] = {
        side: round(statistics.fmean(r["output_tokens"] / n for r in group), 3) if group else None
        for side, group in (("raw", raws), ("almanac", alms))
    }
    return out


def cached_figures(rerun: Run, first: Run) -> Run:
    share = rerun["total_s"] / first["generation_s"]
    return {**rerun, "first_generation_s": first["generation_s"],
            "share_of_generation": round(share, 5), "target": TARGET_CACHED,
            "met": share <= TARGET_CACHED}


def incremental_figures(run: Run, full: Run, new_rows: int, increment: float) -> Run:
    """Against what the new rows' share of the full run would take, plus planning."""
    expected = increment * full["time_s"] + run["plan_s"]
    return {**run, "new_rows": new_rows, "full_run_s": full["time_s"],
            "expected_s": round(expected, 4), "vs_expected": round(run["time_s"] / expected, 4)}


def best_with_runs(runs: list[Run], key: str) -> dict[str, Any] | None:
    best = _best(runs, lambda r: r[key])
    return None if best is None else {**best, "runs": runs}


def breakdown(runs: list[Run]) -> dict[str, Any]:
    """Where each side's time goes: the fastest instrumented raw run, and the fastest
    almanac run, whose phases the run measured itself."""
    out: dict[str, Any] = {}
    raw = _best([r for r in runs if r["side"] == "raw" and "parts" in r], lambda r: r["generate_s"])
    if raw is not None:
        parts = raw["parts"]
        out["raw"] = {
            "generate_s": raw["generate_s"],
            "add_requests_s (tokenize + validate + enqueue)": parts["add_requests_s"],
            "engine_step_s": parts["engine_step_s"],
            "engine_steps": parts["engine_steps"],
            "other_s (loop, sort)": round(raw["generate_s"] - parts["add_requests_s"]
                                          - parts["engine_step_s"], 4),
        }
    alm = _best([r for r in runs if r["side"] == "almanac"], lambda r: r["time_s"])
    if alm is not None:
        phases = alm["phases"]
        out["almanac"] = {
            "time_s": alm["time_s"],
            "phases": phases,
            "unaccounted_s (stream loop, progress, counters)":
                round(alm["time_s"] - sum(phases[k] for k in OWN_PHASES), 4),
        }
    return out


def _line(label: str, value: str, target: str = "") -> str:
    return f"{label:<46}{value:>14}{target:>16}"


def table(r: dict[str, Any]) -> str:
    """The figures a reader looks for first, for stderr."""
    lines = [f"model: {r['model']['what']}; max {r['sampling']['max_tokens']} tokens a prompt",
             _line("measure", "value", "target")]
    o = r.get("overhead") or {}
    if "raw_generate_s" in o:
        lines.append(_line(f"raw LLM.generate, {o['prompts']:,} prompts (best)",
                           f"{o['raw_generate_s']:.2f} s"))
    if "almanac_s" in o:
        lines.append(_line("almanac run, engine start excluded (best)", f"{o['almanac_s']:.2f} s"))
    if "ratio" in o:
        lines.append(_line("  ratio raw / almanac", f"{o['ratio']:.3f}", f">= {TARGET_RATIO:.2f}"))
    starts = o.get("engine_start_s") or {}
    if starts.get("raw") is not None and starts.get("almanac") is not None:
        lines.append(_line("engine start raw / almanac",
                           f"{starts['raw']:.1f} / {starts['almanac']:.1f} s"))
    if c := r.get("cached_rerun"):
        lines.append(_line("cached rerun / first generation time",
                           f"{c['share_of_generation'] * 100:.2f} %", f"<= {TARGET_CACHED:.0%}"))
    if i := r.get("incremental"):
        lines.append(_line("incremental (+5%) / (5% of full + plan)",
                           f"{i['vs_expected']:.2f}", "~ 1"))
    if alm := (r.get("breakdown") or {}).get("almanac"):
        phases = alm["phases"]
        lines.append(_line("almanac run, by phase (fastest run)", f"{alm['time_s']:.2f} s"))
        lines += [_line(f"  {name}", f"{phases[name]:.3f} s") for name in OWN_PHASES]
    for s in r.get("scaling", []):
        if "ratio" in s:
            lines.append(_line(f"ratio at {s['prompts']:,} prompts", f"{s['ratio']:.3f}"))
    if (m := r.get("multiprocessing")) and "ratio" in m:
        lines.append(_line("ratio with VLLM_ENABLE_V1_MULTIPROCESSING=1", f"{m['ratio']:.3f}"))
    if error := r.get("error"):
        lines.append(f"stopped early: {error}")
    return "\n".join(lines)
