"""Jobs on a real Ray cluster through Ray Data LLM: one head node on 127.0.0.1 with
token authentication, shared by every test here (conftest's `ray_cluster`), and one
engine replica at a time on the tiny model.

A job on Ray writes what the same job writes in-process (keys, records, layout; the
same outputs at temperature 0), rows the engine refuses become failed rows, a rerun
with nothing missing never contacts Ray, a driver killed mid-run loses only what it
had not written and a run without Ray completes the job, every input once. What
cannot work (no Ray, no cluster, no token, a model the workers cannot see) exits 1
with one line, writes nothing and leaves the lock free.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from batch.cache.lock import JobLock
from batch.query import Predictions
from batch.run.executors.engine import EnginePool
from batch.run.executors.ray import RayExecutor
from batch.run.runner import Runner
from batch.run.spec.job import load_spec
from batch.run.spec.ray_settings import RayAddress
from catalog.runs import list_runs
from tests.engine_support import (
    ENGINE_OPTIONS,
    TINY_MODEL,
    almanac,
    popen_almanac,
    runner_for,
    write_job,
)
from tests.ray_support import HeadNode
from tests.test_job_spec import make_local_model

pytestmark = [pytest.mark.engine, pytest.mark.ray]
COMPARED = ("key", "prompt", "params", "output", "outputs", "finish_reason", "prompt_tokens",
            "output_tokens", "logprobs", "error", "model", "adapter", "adapter_revision")


def line(custom_id: str, **body: Any) -> dict[str, Any]:
    url = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"max_tokens": 8, "temperature": 0.0, **body}}


def openai_job(directory: Path, name: str, lines: list[dict[str, Any]], adapter: Path) -> Path:
    import tomli_w

    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{name}.jsonl").open("w") as fh:
        fh.writelines(json.dumps(x) + "\n" for x in lines)
    job = {"name": name, "candidates": [{"model": TINY_MODEL},
                                        {"model": TINY_MODEL, "adapter": str(adapter),
                                         "label": "tuned"}],
           "input": {"path": f"{name}.jsonl", "format": "openai-batch"},
           "engine": dict(ENGINE_OPTIONS), "output": {"shard_rows": 16}}
    path = directory / f"{name}.toml"
    path.write_text(tomli_w.dumps(job))
    return path


def records(home: Path, job: str) -> dict[tuple[str, str], dict[str, Any]]:
    with Predictions.at(home / "predictions", job) as p:
        return {(r["candidate"], r["input_id"]): r for r in p.search(limit=10_000)}


def ray_runner(home: Path, pool: EnginePool, model: Path, address: str) -> Runner:
    base = runner_for(home, pool, model)
    return Runner(base.catalog, base.predictions, base.locks,
                  executor=RayExecutor(RayAddress.parse(address)))


def nothing_written(home: Path, job: str) -> None:
    assert not list((home / "predictions").glob(f"{job}/*.parquet"))
    from catalog.db import open_catalog

    catalog = open_catalog(home / "catalog.db", readonly=True)
    with catalog.sessions() as s:
        assert list_runs(s, job) == []
    catalog.close()
    with JobLock(home / "locks", job):  # free: another run could take it at once
        pass


def almanac_in(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line in an environment of the test's choosing."""
    return subprocess.run([sys.executable, "-m", "almanac", *args],
                          env={**env, "ALMANAC_HOME": str(home)}, capture_output=True,
                          text=True, timeout=600)


def one_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def fake_model_home(home: Path, tmp_path: Path) -> Path:
    """A home whose catalog has a local model (weights never loaded: these runs stop
    before any engine), and a job with rows to generate."""
    added = almanac(home, "models", "add", "--path", str(make_local_model(tmp_path / "m")),
                    "--name", TINY_MODEL)
    assert added.returncode == 0, added.stderr
    return write_job(tmp_path / "jobs", "refused", [{"id": "a", "word": "plum"}])


def test_the_cluster_is_on_loopback_only(ray_cluster: HeadNode) -> None:
    import psutil
    import ray

    ray.init(address=ray_cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    group = [p for p in psutil.process_iter() if _group_of(p.pid) == ray_cluster.process.pid]
    ours = {p.pid for p in group}
    listening = [c.laddr.ip for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in ours]
    assert listening, "the cluster's processes listen nowhere?"
    assert set(listening) <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_an_address_nobody_answers_at_is_one_line_and_nothing_written(
        home: Path, fake_model_home: Path) -> None:
    job = fake_model_home
    # The front door reads the address from the environment too.
    done = almanac_in({**os.environ, "ALMANAC_RAY_ADDRESS": "127.0.0.1:1"}, home, "run", str(job))
    assert done.returncode == 1
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in one_line(done.stderr)
    nothing_written(home, "refused")
    bad = almanac(home, "run", str(job), "--ray", "http://head:80")
    assert bad.returncode == 2 and "--ray: 'http://head:80' is not a Ray address" in bad.stderr


def test_without_ray_installed_the_run_says_how_to_get_it(home: Path,
                                                          fake_model_home: Path) -> None:
    # A process in which `import ray` fails, as where the extra was never installed.
    hide_ray = "import sys; sys.modules['ray'] = None; from almanac.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", hide_ray, "run", str(fake_model_home),
                           "--ray", "local"], env={**os.environ, "ALMANAC_HOME": str(home)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "pip install 'almanac[ray]'" in one_line(done.stderr)
    nothing_written(home, "refused")


def test_a_cluster_asking_for_a_token_we_lack_is_one_line(
        ray_cluster: HeadNode, home: Path, fake_model_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done = almanac_in(env, home, "run", str(fake_model_home), "--ray", ray_cluster.address)
    assert done.returncode == 1
    assert "asks for an authentication token: set RAY_AUTH_MODE=token" in one_line(done.stderr)
    nothing_written(home, "refused")


def test_a_model_the_workers_cannot_see_is_one_line_and_nothing_written(
        ray_cluster: HeadNode, home: Path, tmp_path: Path) -> None:
    if ray_cluster.hidden is None:
        pytest.skip("no mount namespace here to hide a directory from the cluster")
    model = make_local_model(ray_cluster.hidden / "model")
    assert almanac(home, "models", "add", "--path", str(model), "--name", TINY_MODEL) \
        .returncode == 0
    job = write_job(tmp_path / "jobs", "unseen", [{"id": "a", "word": "plum"}])
    done = almanac(home, "run", str(job), "--ray", ray_cluster.address)
    assert done.returncode == 1
    said = one_line(done.stderr)
    assert f"cannot see the model directory {model}" in said and "127.0.0.1" in said
    nothing_written(home, "unseen")


def test_a_job_on_ray_writes_what_the_same_job_writes_in_process(
        ray_cluster: HeadNode, runner: Runner, home: Path, tmp_path: Path,
        engine_pool: EnginePool, tiny_model: Path, lora_adapter: Path) -> None:
    lines = [
        *(line(f"say-{i}", prompt=f"Say: apple {i}") for i in range(10)),
        line("chat", messages=[{"role": "user", "content": "Name a fruit"}]),
        line("logprobs", prompt="Say: plum", logprobs=2),  # some rows ask, most do not
        line("stop", prompt="Say: apple 2", stop=[" an"]),
        line("choice", prompt="Family of plum:", structured_outputs={"choice": ["drupe", "pome"]}),
        line("json", prompt="A fruit as JSON:", response_format={"type": "json_object"},
             max_tokens=12),
        line("to-the-end", prompt="Say: pear", max_tokens=None),  # up to the context
        line("bad-regex", prompt="Say: fig", structured_outputs={"regex": "("}),
        line("too-long", prompt="banana " * 300),
        line("two", prompt="Say: kiwi", n=2, temperature=0.5, seed=3),
    ]
    job = openai_job(tmp_path / "jobs", "parity", lines, lora_adapter)
    reference = runner.run(load_spec(job))
    assert reference.generated == 2 * (len(lines) - 2)  # every line but two, per candidate

    on_ray = ray_runner(tmp_path / "ray-home", engine_pool, tiny_model, ray_cluster.address)
    try:
        result = on_ray.run(load_spec(job))
        # Rows with a structured-output constraint travel apart: two passes, two starts.
        assert (result.executor, result.replicas, result.engine_starts) == ("ray", 1, 2)
        assert result.status == "failed_rows"
        assert result.generated == 2 * (len(lines) - 3) and result.failed == 6
        assert result.phases.cluster_s > 0 and result.phases.tokenize_s > 0
        assert result.phases.write_s > 0 and result.generation_s is not None

        got, want = records(tmp_path / "ray-home", "parity"), records(home, "parity")
        assert set(got) == set(want)
        for where, row in got.items():
            if where[1] == "two":  # n > 1: one completion per row on Ray, so refused there
                assert row["output"] is None and "n > 1 cannot run on Ray" in row["error"]
                continue
            assert {k: row[k] for k in COMPARED} == {k: want[where][k] for k in COMPARED}, where
        assert "rejected by the engine" in got[("tuned", "bad-regex")]["error"]
        assert "max_model_len" in got[(TINY_MODEL, "too-long")]["error"]
        assert got[(TINY_MODEL, "logprobs")]["logprobs"] is not None
        assert any(got[(TINY_MODEL, f"say-{i}")]["output"] != got[("tuned", f"say-{i}")]["output"]
                   for i in range(10))  # the adapter answered its rows
        # The same layout: shards named by the run, schema of the in-process dataset.
        import pyarrow.dataset as ds

        mine = ds.dataset(tmp_path / "ray-home" / "predictions" / "parity", format="parquet")
        theirs = ds.dataset(home / "predictions" / "parity", format="parquet")
        assert mine.schema == theirs.schema
        assert mine.files and all(f"-{result.run_id[:8]}-" in Path(f).name for f in mine.files)

        with on_ray.catalog.sessions() as s:
            (run,) = list_runs(s, "parity")
        assert (run.executor, run.replicas, run.status) == ("ray", 1, "failed_rows")
        assert run.hardware is not None and run.hardware.startswith("Ray cluster, 1 node: 2 CPU")

        # Nothing missing: Ray is never contacted (nobody answers at this address).
        nobody = Runner(on_ray.catalog, on_ray.predictions, on_ray.locks,
                        executor=RayExecutor(RayAddress.parse("127.0.0.1:1")))
        again = nobody.run(load_spec(job))
        nobody.close()
        assert (again.generated, again.executor, again.phases.cluster_s) == (0, "local", 0.0)
        assert again.cached == result.generated
    finally:
        on_ray.close()
        on_ray.catalog.close()


def test_a_killed_driver_loses_only_unwritten_blocks_and_a_run_without_ray_ends_the_job(
        ray_cluster: HeadNode, runner: Runner, home: Path, tmp_path: Path,
        engine_pool: EnginePool, tiny_model: Path) -> None:
    """`almanac run --ray` is killed with SIGKILL once its first shards have landed; the
    next run, in this process and without Ray, generates only what is missing."""
    n = 192  # 24 batches of 8, two at a time: the driver is frozen after the first two
    rows = [{"id": f"w{i}", "word": f"apple {i}"} for i in range(n)]
    job = write_job(tmp_path / "jobs", "killed", rows, shard_rows=16,
                    sampling={"max_tokens": 16})
    spec = job.read_text() + "\n[ray]\nbatch_size = 8\nmax_concurrent_batches = 2\n"
    job.write_text(spec)
    job_dir = home / "predictions" / "killed"
    log = tmp_path / "driver.log"
    driver = popen_almanac(home, log, "run", str(job), "--ray", ray_cluster.address)
    try:
        landed = 0
        while not landed:  # a shard is on disk a moment before the index names the job
            assert driver.poll() is None, log.read_text()
            time.sleep(0.05)
            if list(job_dir.glob("*.parquet")):
                driver.send_signal(signal.SIGSTOP)
                landed = _rows_landed(home, "killed")
                if not landed:
                    driver.send_signal(signal.SIGCONT)
        assert 0 < landed < n, "the run finished before it could be killed"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL

    rerun = runner.run(load_spec(job))  # no --ray: this process's engine
    assert rerun.status == "ok" and rerun.executor == "local"
    # What had landed is kept (and a shard landing as it stopped, indexed by recovery).
    assert rerun.cached >= landed and rerun.cached + rerun.generated == n
    with Predictions.at(home / "predictions", "killed") as p:
        written = p.search(limit=10_000)
    ids = [r["input_id"] for r in written]
    assert len(ids) == len(set(ids)) == n  # every input exactly once
    with runner.catalog.sessions() as s:
        statuses = sorted(r.status for r in list_runs(s, "killed"))
    assert statuses == ["interrupted", "ok"]  # the killed run, closed by the next

    other = runner_for(tmp_path / "reference", engine_pool, tiny_model)
    try:
        assert other.run(load_spec(job)).generated == n
        with Predictions.at(tmp_path / "reference" / "predictions", "killed") as p:
            expected = {r["input_id"]: r["output"] for r in p.search(limit=10_000)}
    finally:
        other.close()
        other.catalog.close()
    assert {r["input_id"]: r["output"] for r in written} == expected
    shutil.rmtree(tmp_path / "reference")


def _rows_landed(home: Path, job: str) -> int:
    from batch.cache.errors import UnknownJobError

    try:
        with Predictions.at(home / "predictions", job) as p:
            return len(p.search(limit=10_000))
    except UnknownJobError:
        return 0
