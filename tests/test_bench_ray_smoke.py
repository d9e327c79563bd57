"""The Ray benchmark's parts that need neither an engine nor Ray (bench/ray.py,
bench/ray_driver.py): its job is valid with its [ray] table, and the driver's write
path, fed pre-made answers, lands every row in shards and the index."""

from __future__ import annotations

from pathlib import Path

from batch.query import Predictions
from batch.run.spec.job import load_spec
from bench import ray as bench_ray
from bench.engine_workload import JOB, MODEL_NAME
from bench.ray_driver import keeps_up, write_path


def test_the_job_carries_its_ray_table(tmp_path: Path) -> None:
    job = bench_ray.write_job(tmp_path, 7, {"max_tokens": 8, "temperature": 0.0},
                              {"replicas": 2, "cpus_per_replica": 1})
    spec = load_spec(job)
    assert (spec.ray.replicas, spec.ray.cpus_per_replica) == (2, 1.0)
    assert len((tmp_path / "prompts.jsonl").read_text().splitlines()) == 7


def test_the_write_path_indexes_every_premade_answer(tmp_path: Path, tiny_model: Path) -> None:
    n = 300
    job = bench_ray.write_job(tmp_path / "job", n, {"max_tokens": 8, "temperature": 0.0},
                              {"replicas": 1})
    figures = write_path(tmp_path / "home", job, tiny_model, MODEL_NAME, max_tokens=8)
    assert figures["rows"] == n and figures["shards"] == 1
    assert figures["shipped_blocks"] == 5  # blocks of a replica's batch (64 rows) at most
    assert figures["write_rows_per_s"] > 0 and figures["outbox_rows_per_s"] > 0
    with Predictions.at(tmp_path / "home" / "predictions", JOB) as p:
        rows = p.search(limit=n + 1)
    assert len(rows) == n
    assert all(r["error"] is None and r["output_tokens"] == 8 for r in rows)
    assert rows[0]["prompt"].endswith(":")  # the job's own prompts, rendered


def test_the_limit_is_the_write_rate_over_a_replica_rate() -> None:
    assert keeps_up(10_000.0, {"slow": 400.0, "fast": 3_000.0}) == {
        "slow": {"replica_rows_per_s": 400.0, "replicas": 25},
        "fast": {"replica_rows_per_s": 3000.0, "replicas": 3}}


def test_the_cpu_account_counts_the_drivers_time() -> None:
    """A driver that burns 0.6 s of CPU, then waits: the account holds at least that."""
    import subprocess
    import sys

    from bench.ray_cpu import CpuAccount

    burn = ("import sys, time\n"
            "while time.process_time() < 0.6: pass\n"
            "print('done', flush=True)\n"
            "sys.stdin.read()\n")
    account = CpuAccount(set(), None)
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    account.drivers.add(child.pid)
    account.start()
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        figures = account.stop()
    finally:
        child.communicate("")
    assert figures["cpu_s"]["driver"] >= 0.55  # /proc counts in clock ticks
    assert set(figures["machine"]) == {"busy_s", "idle_s", "steal_s"}


def test_the_driver_breakdown_parts_a_runs_generation() -> None:
    from bench.ray_runs import driver_breakdown

    phases = {"tokenize_s": 1.0, "ship_s": 0.5, "generate_s": 6.0, "record_s": 1.0,
              "write_s": 2.0, "engine_start_s": 30.0}
    on_ray = driver_breakdown({"executor": "ray", "generation_s": 10.0, "phases": phases})
    assert on_ray["rest_of_loop_s"] == 1.0 and on_ray["until_first_answer_s"] == 30.0
    local = driver_breakdown({"executor": "local", "generation_s": 10.0, "phases": phases})
    assert local["rest_of_loop_s"] == 0.0  # tokenizing is inside the in-process stream
