"""Two replicas against two in-process runs (`python -m bench.ray --pair`).

With one replica, a Ray run puts one engine on the machine's two cores beside Ray's
own processes. Split the work in two instead: the same prompts as two in-process runs
side by side, each half of them in a home of its own (two `almanac run` processes at
once), against one Ray run of all of them on two replicas of one CPU each. The
in-process time is the later run's `total_s` less the later engine start; the Ray
time is the run's `total_s` less the start of a two-replica Ray run of two prompts.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from bench.engine_sides import new_home
from bench.ray_runs import run, run_all

TWO_REPLICAS = {"replicas": 2, "cpus_per_replica": 1}


def pair(work: Path, model: Path, sampling: dict[str, Any], env: dict[str, str],
         ray_env: dict[str, str], address: str, n: int,
         cluster_head: int | None) -> dict[str, Any]:
    from bench.ray import outputs, write_job

    half = n // 2
    jobs = [write_job(work / f"pair-job-{i}", half, sampling, {}, start=i * half)
            for i in range(2)]
    homes = [new_home(work, f"pair-local-{i}", model, jobs[i]) for i in range(2)]
    print(f"ray bench: two in-process runs of {half:,} prompts side by side", file=sys.stderr,
          flush=True)
    local, local_cpu = run_all([(homes[i], jobs[i], env, ()) for i in range(2)], cluster_head)
    reference = {**outputs(homes[0]), **outputs(homes[1])}
    for home in homes:
        shutil.rmtree(home)

    probe_job = write_job(work / "pair-probe-job", 2, sampling, TWO_REPLICAS)
    probe_home = new_home(work, "pair-probe-home", model, probe_job)
    print("ray bench: the start of a two-replica Ray run of 2 prompts", file=sys.stderr,
          flush=True)
    probe = run(probe_home, probe_job, ray_env, "--ray", address, cluster_head=cluster_head)
    shutil.rmtree(probe_home)
    job = write_job(work / "pair-ray-job", 2 * half, sampling, TWO_REPLICAS)
    home = new_home(work, "pair-ray-home", model, job)
    print(f"ray bench: on Ray, two replicas, {2 * half:,} prompts", file=sys.stderr, flush=True)
    on_ray = run(home, job, ray_env, "--ray", address, cluster_head=cluster_head)
    got = outputs(home)
    shutil.rmtree(home)
    if set(got) != set(reference):
        raise AssertionError(f"rows differ: {len(got)} on Ray, {len(reference)} in-process")

    local_s = max(x["total_s"] for x in local) - max(x["engine_start_s"] for x in local)
    ray_s = on_ray["total_s"] - probe["engine_start_s"]
    return {
        "prompts": 2 * half, "ray_settings": TWO_REPLICAS, "in_process": local,
        "in_process_cpu": local_cpu, "start_probe": probe, "ray": on_ray,
        "outputs_equal_share": sum(got[k] == reference[k] for k in got) / len(got),
        "in_process_s": round(local_s, 3), "ray_s": round(ray_s, 3),
        "ratio": round(local_s / ray_s, 3),
    }
