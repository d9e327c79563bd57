"""The batch runner on the real vLLM engine (CPU build) and a tiny generated model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batch.run.executors.engine import EnginePool
from batch.run.executors.local import LocalExecutor
from batch.run.runner import Runner
from batch.run.spec.job import load_spec
from tests.engine_support import ENGINE_OPTIONS, almanac, popen_almanac, runner_for, write_job

pytestmark = pytest.mark.engine
MAX_NUM_SEQS = ENGINE_OPTIONS["max_num_seqs"]  # rows the engine generates at once


def read_job(home: Path, job: str) -> list[dict[str, Any]]:
    """Every row of a job's dataset, read with plain pyarrow."""
    return ds.dataset(home / "predictions" / job, format="parquet").to_table().to_pylist()


def raw_generate(engine_pool: EnginePool, prompts: list[str], **sampling: Any) -> list[str]:
    """What vLLM itself answers, for comparison."""
    from vllm import SamplingParams

    llm = next(iter(engine_pool._engines.values())).llm
    outs = llm.generate(prompts, SamplingParams(**{"max_tokens": 8, "temperature": 0.0, **sampling}),
                        use_tqdm=False)
    return [o.outputs[0].text for o in outs]


def words(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": f"w{i}", "word": f"apple {i}"} for i in range(start, start + n)]


def test_run_writes_a_parquet_dataset_equal_to_raw_vllm_outputs(
    runner: Runner, home: Path, tmp_path: Path, engine_pool: EnginePool
) -> None:
    job = write_job(tmp_path, "e2e", words(150), shard_rows=40)
    result = runner.run(load_spec(job))

    assert result.status == "ok"
    assert (result.generated, result.cached, result.failed) == (150, 0, 0)
    # The run timed its own phases; those that do not overlap fit in its total.
    phases = result.phases
    assert phases.plan_s > 0 and phases.tokenize_s > 0 and phases.generate_s > 0
    assert phases.record_s > 0 and phases.write_s > 0 and phases.catalog_s > 0
    assert 0 < phases.engine_step_s <= phases.generate_s and phases.engine_steps > 0
    assert phases.plan_lookups_s <= phases.plan_s
    own = (phases.recover_s + phases.resolve_s + phases.plan_s + phases.catalog_s + phases.copy_s
           + phases.engine_start_s + phases.tokenize_s + phases.generate_s + phases.record_s
           + phases.write_s)
    assert own <= result.total_s
    assert result.to_json()["phases"]["generate_s"] == phases.generate_s
    files = sorted((home / "predictions" / "e2e").glob("*.parquet"))
    assert len(files) == 4  # 150 rows in shards of 40
    assert not list((home / "predictions" / "e2e").glob(".*"))  # no temporaries left
    rows = {r["input_id"]: r for r in read_job(home, "e2e")}
    assert len(rows) == 150
    expected = raw_generate(engine_pool, [f"Say: apple {i}" for i in range(150)])
    assert [rows[f"w{i}"]["output"] for i in range(150)] == expected
    sample = rows["w7"]
    assert sample["prompt"] == "Say: apple 7"
    assert sample["model"] == "tiny-test" and sample["revision"].startswith("sha256:")
    assert sample["finish_reason"] in ("stop", "length") and sample["error"] is None
    assert sample["output_tokens"] > 0 and sample["prompt_tokens"] > 0
    assert json.loads(sample["params"])["max_tokens"] == 8
    # The schema is the one in schemas/, not one inferred from the rows.
    assert pq.read_schema(files[0]).field("created_at").type.tz == "UTC"


def test_rerun_is_served_from_cache_without_starting_the_engine(
    runner: Runner, home: Path, tmp_path: Path
) -> None:
    job = write_job(tmp_path, "again", words(40))
    runner.run(load_spec(job))
    local = LocalExecutor(EnginePool())
    fresh = Runner(runner.catalog, home / "predictions", home / "locks", executor=local)
    result = fresh.run(load_spec(job))
    assert (result.cached, result.generated, result.engine_started) == (40, 0, False)
    assert local.pool.starts == 0
    # Nothing was tokenized, generated or written: the phases say so.
    assert result.phases.plan_s > 0 and result.phases.recover_s > 0
    assert (result.phases.tokenize_s, result.phases.generate_s, result.phases.write_s,
            result.phases.engine_steps) == (0, 0, 0, 0)
    assert len(read_job(home, "again")) == 40  # nothing written twice


def test_cached_rerun_never_imports_vllm(runner: Runner, home: Path, tmp_path: Path) -> None:
    job = write_job(tmp_path, "noimport", words(10))
    runner.run(load_spec(job))
    code = (
        "import sys\n"
        "from almanac.cli import cli\n"
        f"cli.main(['run', {str(job)!r}], standalone_mode=False)\n"
        "print('vllm imported' if 'vllm' in sys.modules else 'vllm not imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "ALMANAC_HOME": str(home)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "vllm not imported" in out.stdout
    assert "10 cached" in out.stdout


def test_appended_rows_are_the_only_ones_generated(
    runner: Runner, home: Path, tmp_path: Path
) -> None:
    job = write_job(tmp_path, "grow", words(60))
    runner.run(load_spec(job))
    write_job(tmp_path, "grow", words(63))  # the same 60 rows and 3 new ones
    result = runner.run(load_spec(job))
    assert (result.cached, result.generated) == (60, 3)
    rows = read_job(home, "grow")
    assert len(rows) == 63 and len({r["input_id"] for r in rows}) == 63


def test_the_same_prompt_under_two_jobs_is_generated_once(
    runner: Runner, home: Path, tmp_path: Path
) -> None:
    first = runner.run(load_spec(write_job(tmp_path, "one", words(30))))
    renamed = [{"id": f"other-{r['id']}", "word": r["word"]} for r in words(30)]
    second = runner.run(load_spec(write_job(tmp_path, "two", renamed)))
    assert first.generated == 30
    assert (second.generated, second.copied, second.engine_started) == (0, 30, False)
    one = {r["key"]: r["output"] for r in read_job(home, "one")}
    two = read_job(home, "two")
    assert all(one[r["key"]] == r["output"] for r in two)
    assert {r["input_id"] for r in two} == {f"other-w{i}" for i in range(30)}


def test_identical_prompts_in_one_job_are_generated_once(
    runner: Runner, home: Path, tmp_path: Path
) -> None:
    rows = [{"id": "a", "word": "pear"}, {"id": "b", "word": "pear"}, {"id": "c", "word": "fig"}]
    result = runner.run(load_spec(write_job(tmp_path, "dupes", rows)))
    assert result.plan["distinct_missing"] == 2 and result.generated == 3
    out = {r["input_id"]: r for r in read_job(home, "dupes")}
    assert out["a"]["key"] == out["b"]["key"] and out["a"]["output"] == out["b"]["output"]


def test_bad_rows_fail_alone_and_the_rest_succeed(
    runner: Runner, home: Path, tmp_path: Path, engine_pool: EnginePool
) -> None:
    rows = [
        *words(20),
        "{this is not json",
        {"id": "long", "word": "banana " * 300},  # far beyond max_model_len = 256
        {"id": "nofield", "text": "no word here"},  # the template needs `word`
        *words(5, start=20),
    ]
    result = runner.run(load_spec(write_job(tmp_path, "bad", rows)))
    assert result.status == "failed_rows"
    assert (result.generated, result.failed) == (25, 3)
    out = {r["input_id"]: r for r in read_job(home, "bad")}
    assert "invalid JSON" in out["<row 21>"]["error"]
    assert "max_model_len" in out["long"]["error"] and out["long"]["output"] is None
    assert "'word' is undefined" in out["nofield"]["error"]
    expected = raw_generate(engine_pool, [f"Say: apple {i}" for i in range(25)])
    assert [out[f"w{i}"]["output"] for i in range(25)] == expected
    # Failures are recorded once: a rerun neither regenerates nor rewrites them.
    again = runner.run(load_spec(write_job(tmp_path, "bad", rows)))
    assert (again.generated, again.cached, again.failed, again.engine_started) == (0, 25, 3, False)
    assert len(read_job(home, "bad")) == 28


def test_chat_mode_renders_with_the_models_chat_template(
    runner: Runner, home: Path, tmp_path: Path, engine_pool: EnginePool
) -> None:
    from vllm import SamplingParams

    messages = [{"role": "system", "content": "You name fruit families."},
                {"role": "user", "content": "{{ word }}"}]
    rows = [{"id": "c1", "word": "plum"}, {"id": "c2", "word": "kiwi"}]
    result = runner.run(load_spec(write_job(tmp_path, "chat", rows, template=None,
                                            messages=messages)))
    assert result.generated == 2
    out = {r["input_id"]: r for r in read_job(home, "chat")}
    assert json.loads(out["c1"]["prompt"])[1] == {"role": "user", "content": "plum"}
    llm = next(iter(engine_pool._engines.values())).llm
    direct = llm.chat([[messages[0], {"role": "user", "content": w}] for w in ("plum", "kiwi")],
                      SamplingParams(max_tokens=8, temperature=0.0), use_tqdm=False)
    assert [out["c1"]["output"], out["c2"]["output"]] == [d.outputs[0].text for d in direct]


def test_choice_constraint_limits_outputs_to_the_choices(
    runner: Runner, home: Path, tmp_path: Path
) -> None:
    choices = ["drupe", "pome", "berry"]
    result = runner.run(load_spec(write_job(tmp_path, "choice", words(12),
                                            sampling={"choice": choices})))
    assert result.generated == 12
    assert {r["output"] for r in read_job(home, "choice")} <= set(choices)


def test_lora_adapter_changes_outputs_and_the_cache_key(
    runner: Runner, home: Path, tmp_path: Path, lora_adapter: Path, engine_pool: EnginePool
) -> None:
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    base = runner.run(load_spec(write_job(tmp_path, "base", words(16))))
    tuned = runner.run(load_spec(write_job(tmp_path, "tuned", words(16), adapter=str(lora_adapter))))
    assert base.generated == 16 and tuned.generated == 16  # not copied: another key
    base_rows = {r["input_id"]: r for r in read_job(home, "base")}
    tuned_rows = {r["input_id"]: r for r in read_job(home, "tuned")}
    assert tuned_rows["w0"]["adapter"] == str(lora_adapter)  # as the job names it
    assert tuned_rows["w0"]["adapter_revision"].startswith("lora:sha256:")
    assert {r["candidate"] for r in tuned_rows.values()} == {"tiny-test"}
    assert any(base_rows[i]["output"] != tuned_rows[i]["output"] for i in base_rows)
    llm = next(iter(engine_pool._engines.values())).llm
    direct = llm.generate([f"Say: apple {i}" for i in range(16)],
                          SamplingParams(max_tokens=8, temperature=0.0),
                          lora_request=LoRARequest("adapter", 1, str(lora_adapter)), use_tqdm=False)
    assert [tuned_rows[f"w{i}"]["output"] for i in range(16)] == [d.outputs[0].text for d in direct]


def test_openai_batch_lines_run_as_they_are(runner: Runner, home: Path, tmp_path: Path) -> None:
    lines = [
        {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "tiny-test", "messages": [{"role": "user", "content": "hello"}],
                  "max_tokens": 4}},
        {"custom_id": "req-2", "method": "POST", "url": "/v1/chat/completions",
         "body": {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 6}},
        {"custom_id": "req-3", "method": "POST", "url": "/v1/chat/completions"},
    ]
    job = write_job(tmp_path, "oai", lines, template=None, input_format="openai-batch")
    result = runner.run(load_spec(job))
    assert (result.generated, result.failed) == (2, 1)
    out = {r["input_id"]: r for r in read_job(home, "oai")}
    # Same messages, other max_tokens: another request, per-line sampling honoured.
    assert out["req-1"]["key"] != out["req-2"]["key"]
    assert out["req-1"]["output_tokens"] <= 4 < 7 and out["req-2"]["output_tokens"] <= 6
    assert "missing body" in out["req-3"]["error"]


def test_kill_9_mid_run_then_rerun_gives_each_input_once_as_an_uninterrupted_run(
    runner: Runner, home: Path, tmp_path: Path, engine_pool: EnginePool, tiny_model: Path
) -> None:
    """A real `almanac run` is killed with SIGKILL after its first shards land; a second
    run meanwhile exits 75; the rerun, on the session's engine, completes with every
    input exactly once."""
    # The engine takes MAX_NUM_SEQS rows at a time: after the first of them land, five
    # more rounds of 16 tokens are left when it is frozen (a wide margin, even loaded).
    n = 6 * MAX_NUM_SEQS
    rows = [*words(n), {"id": "long", "word": "banana " * 300}]
    job = write_job(tmp_path, "crash", rows, shard_rows=25, sampling={"max_tokens": 16})
    job_dir = home / "predictions" / "crash"
    log = tmp_path / "first.log"
    first = popen_almanac(home, log, "run", str(job))
    try:
        lock = home / "locks" / "crash.lock"
        while not (lock.exists() and lock.read_text().startswith(f"pid {first.pid}")):
            assert first.poll() is None, log.read_text()
            time.sleep(0.05)
        # A concurrent run of the same job: refused, and it writes nothing.
        concurrent = almanac(home, "run", str(job), "--json")
        assert concurrent.returncode == 75, concurrent.stderr
        assert "locked" in concurrent.stderr and concurrent.stdout == ""
        while not list(job_dir.glob("*.parquet")):
            assert first.poll() is None, log.read_text()
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # freeze it, then check it is mid-job
        landed = len(read_job(home, "crash"))
        assert 0 < landed < n, "the run finished before it could be interrupted"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL

    rerun = runner.run(load_spec(job))
    assert rerun.status == "failed_rows"  # the over-long row failed
    assert rerun.cached + rerun.generated == n
    assert rerun.phases.generate_s > 0 and rerun.phases.write_s > 0
    assert rerun.cached >= landed - 1  # the over-long row may have landed too

    rows_out = [r for r in read_job(home, "crash") if r["error"] is None]
    ids = [r["input_id"] for r in rows_out]
    assert len(ids) == len(set(ids)) == n  # every input exactly once
    # The same job, uninterrupted, in another home, on the session's engine.
    reference = runner_for(tmp_path / "reference-home", engine_pool, tiny_model)
    try:
        ref = reference.run(load_spec(job))
        assert ref.generated == n
        expected = {r["input_id"]: r["output"] for r in read_job(tmp_path / "reference-home", "crash")
                    if r["error"] is None}
    finally:
        reference.close()
    assert {r["input_id"]: r["output"] for r in rows_out} == expected
