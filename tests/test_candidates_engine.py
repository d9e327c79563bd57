"""Candidates on the real engine: adapters on one base in one engine and one stream,
answering as vLLM does with each LoRARequest; a candidate added later generates only
its rows; bases one after the other, each engine started once; per-candidate figures
in the catalog; OpenAI batch lines routed by `body.model`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from batch.query import Predictions
from batch.run.executors.engine import EnginePool
from batch.run.runner import Runner
from batch.run.spec.job import load_spec
from catalog.localmodels import entry_from_directory
from catalog.models import upsert_model
from catalog.runs import candidate_runs, list_runs
from tests.builders import build_tiny_model, make_lora_adapter
from tests.engine_support import ENGINE_OPTIONS, TINY_MODEL, almanac, sharpen

pytestmark = pytest.mark.engine
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def loras(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loras")
    return {name: make_lora_adapter(tiny_model, root / name, rank=4, seed=seed, scale=4.0)
            for name, seed in (("a", 11), ("b", 12), ("c", 13), ("d", 14), ("e", 15))}


def words(n: int) -> list[dict[str, Any]]:
    return [{"id": f"w{i}", "word": f"pear {i}"} for i in range(n)]


def candidates_job(directory: Path, name: str, candidates: list[dict[str, Any]],
                   rows: list[dict[str, Any]] | list[str], **fields: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{name}.jsonl").open("w") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    data: dict[str, Any] = {"name": name, "candidates": candidates,
                            "input": {"path": f"{name}.jsonl"}, **fields}
    if "format" not in data["input"] and "prompt" not in fields:
        data["prompt"] = {"template": "Say: {{ word }}"}
    data.setdefault("sampling", {"max_tokens": MAX_TOKENS, "temperature": 0.0})
    data["engine"] = dict(ENGINE_OPTIONS)
    path = directory / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def by_candidate(home: Path, job: str) -> dict[str, dict[str, dict[str, Any]]]:
    with Predictions.at(home / "predictions", job) as p:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for r in p.search(limit=10_000):
            out.setdefault(r["candidate"], {})[r["input_id"]] = r
        return out


def test_adapters_on_one_base_run_in_one_stream_and_answer_as_vllm_with_each_lora(
        runner: Runner, home: Path, tmp_path: Path, engine_pool: EnginePool,
        loras: dict[str, Path]) -> None:
    from vllm import SamplingParams

    starts = engine_pool.starts
    path = candidates_job(tmp_path, "trio", [
        {"model": TINY_MODEL},
        {"model": TINY_MODEL, "adapter": str(loras["a"]), "label": "a"},
        {"model": TINY_MODEL, "adapter": str(loras["b"]), "label": "b"},
    ], words(16), cost={"usd_per_hour": 0.5})
    result = runner.run(load_spec(path))

    assert (result.status, result.generated, result.failed) == ("ok", 48, 0)
    # The session's engine (LoRA enabled, room for four) served all three: no start.
    assert result.engine_starts == 0 and engine_pool.starts == starts
    assert len(engine_pool._engines) == 1
    # One stream: the 48 requests shared the scheduler's batches (three streams one
    # after another would take at least three times MAX_TOKENS steps).
    assert result.phases.engine_steps < 2 * MAX_TOKENS
    rows = by_candidate(home, "trio")
    engine = next(iter(engine_pool._engines.values()))
    prompts = [f"Say: pear {i}" for i in range(16)]
    for label, adapter in ((TINY_MODEL, None), ("a", loras["a"]), ("b", loras["b"])):
        direct = engine.llm.generate(
            prompts, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0), use_tqdm=False,
            lora_request=engine.lora(str(adapter)) if adapter else None)
        assert [rows[label][f"w{i}"]["output"] for i in range(16)] == \
            [d.outputs[0].text for d in direct]
        record = rows[label]["w0"]
        assert record["adapter"] == (str(adapter) if adapter else None)
        assert (record["adapter_revision"] or "lora:").startswith("lora:")
    assert rows["a"] != rows["b"] and any(
        rows["a"][i]["output"] != rows[TINY_MODEL][i]["output"] for i in rows["a"])

    with runner.catalog.sessions() as s:
        (run,) = list_runs(s, "trio")
        shares = {c.label: c for c in candidate_runs(s, "trio")}
    assert (run.engine_starts, run.usd_per_hour) == (0, 0.5)
    assert run.phases is not None and run.phases["engine_steps"] == result.phases.engine_steps
    assert sorted(shares) == ["a", "b", TINY_MODEL]
    assert {(c.generated, c.engine_group, c.adapter) for c in shares.values()} == {
        (16, 0, None), (16, 0, str(loras["a"])), (16, 0, str(loras["b"]))}
    assert sum(c.generation_s for c in shares.values()) == pytest.approx(result.generation_s)
    assert sum(c.output_tokens for c in shares.values()) == result.output_tokens


def test_adapters_earlier_jobs_loaded_never_answer_for_requests_without_one(
        runner: Runner, home: Path, tmp_path: Path, engine_pool: EnginePool,
        loras: dict[str, Path]) -> None:
    """vLLM's CPU kernels give a request without an adapter the last LoRA slot in a
    mixed batch: the engine keeps that slot empty, also after a job filled the others."""
    from vllm import SamplingParams

    four = [{"model": TINY_MODEL}] + [{"model": TINY_MODEL, "adapter": str(loras[n]), "label": n}
                                      for n in "abcd"]
    assert runner.run(load_spec(candidates_job(tmp_path, "four", four, words(8)))).generated == 40
    pair = [{"model": TINY_MODEL}, {"model": TINY_MODEL, "adapter": str(loras["e"]), "label": "e"}]
    quinces = [{"id": f"w{i}", "word": f"quince {i}"} for i in range(12)]
    result = runner.run(load_spec(candidates_job(tmp_path, "pair", pair, quinces)))
    assert result.generated == 24 and result.engine_starts == 0
    rows = by_candidate(home, "pair")
    engine = next(iter(engine_pool._engines.values()))
    prompts = [f"Say: quince {i}" for i in range(12)]
    for label, adapter in ((TINY_MODEL, None), ("e", engine.lora(str(loras["e"])))):
        direct = engine.llm.generate(prompts, SamplingParams(max_tokens=MAX_TOKENS,
                                                             temperature=0.0),
                                     lora_request=adapter, use_tqdm=False)
        assert [rows[label][f"w{i}"]["output"] for i in range(12)] == \
            [d.outputs[0].text for d in direct]


def test_a_candidate_added_later_generates_only_its_rows_and_one_dropped_leaves_reads(
        runner: Runner, home: Path, tmp_path: Path, loras: dict[str, Path]) -> None:
    base = {"model": TINY_MODEL}
    a = {"model": TINY_MODEL, "adapter": str(loras["a"]), "label": "a"}
    c = {"model": TINY_MODEL, "adapter": str(loras["c"]), "label": "c"}
    first = runner.run(load_spec(candidates_job(tmp_path, "grow", [base, a], words(12))))
    assert (first.generated, first.cached) == (24, 0)

    grown = runner.run(load_spec(candidates_job(tmp_path, "grow", [base, a, c], words(12))))
    assert (grown.generated, grown.cached, grown.copied) == (12, 24, 0)
    assert [(x.label, x.generated, x.cached) for x in grown.candidates] == \
        [(TINY_MODEL, 0, 12), ("a", 0, 12), ("c", 12, 0)]

    shrunk = runner.run(load_spec(candidates_job(tmp_path, "grow", [base, c], words(12))))
    assert (shrunk.generated, shrunk.cached, shrunk.engine_started) == (0, 24, False)
    with Predictions.at(home / "predictions", "grow") as p:
        assert p.select() == [TINY_MODEL, "c"] and p.count() == 24
    # A job with the adapter alone, elsewhere, copies those rows rather than generating.
    elsewhere = runner.run(load_spec(candidates_job(tmp_path, "other-job", [c], words(12))))
    assert (elsewhere.copied, elsewhere.generated) == (12, 0)


def test_openai_batch_lines_go_to_the_candidate_they_name(
        runner: Runner, home: Path, tmp_path: Path, loras: dict[str, Path]) -> None:
    def line(custom_id: str, model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": f"Say: {custom_id}", "max_tokens": 4}
        if model is not None:
            body["model"] = model
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": body}

    path = candidates_job(tmp_path, "oai-route", [
        {"model": TINY_MODEL}, {"model": TINY_MODEL, "adapter": str(loras["a"]), "label": "a"},
    ], [line("to-a", "a"), line("by-adapter", str(loras["a"])), line("to-base", TINY_MODEL),
        line("to-all", None), line("elsewhere", "gpt-4o")],
        input={"path": "oai-route.jsonl", "format": "openai-batch"})
    result = runner.run(load_spec(path))
    assert result.status == "failed_rows" and result.generated == 5
    rows = by_candidate(home, "oai-route")
    assert sorted(rows["a"]) == ["by-adapter", "elsewhere", "to-a", "to-all"]
    assert sorted(rows[TINY_MODEL]) == ["elsewhere", "to-all", "to-base"]
    for label in ("a", TINY_MODEL):
        failed = rows[label]["elsewhere"]
        assert failed["output"] is None
        assert "body.model 'gpt-4o' is not a candidate of this job" in failed["error"]
        assert f"{TINY_MODEL}, a" in failed["error"]


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-two", seed=1).resolve()
    sharpen(path)
    return path


def test_two_bases_run_one_engine_after_the_other_each_started_once(
        runner: Runner, home: Path, tmp_path: Path, loras: dict[str, Path],
        second_model: Path) -> None:
    """`almanac run --json` in a process of its own (so its engines are its own): the
    tiny model with two adapters and a second model make two engine starts, not four."""
    with runner.catalog.sessions.begin() as s:
        upsert_model(s, entry_from_directory(second_model, name="tiny-two"))
    path = candidates_job(tmp_path, "bases", [
        {"model": TINY_MODEL, "adapter": str(loras["a"]), "label": "a"},
        {"model": "tiny-two"},
        {"model": TINY_MODEL, "adapter": str(loras["b"]), "label": "b"},
        {"model": TINY_MODEL},
    ], words(10))
    out = almanac(home, "run", "--json", str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["engine_starts"] == 2 and summary["generated"] == 40
    assert [(c["label"], c["engine_group"], c["generated"]) for c in summary["candidates"]] == [
        ("a", 0, 10), ("tiny-two", 1, 10), ("b", 0, 10), (TINY_MODEL, 0, 10)]
    assert all(c["engine_start_s"] > 0 for c in summary["candidates"])

    again = almanac(home, "run", "--json", str(path))
    assert json.loads(again.stdout)["engine_starts"] == 0  # everything cached
    needs = almanac(home, "query", "bases", "--input-id", "w1")
    assert needs.returncode == 2 and "has 4 candidates (a, tiny-two, b, tiny-test)" in needs.stderr
    one = almanac(home, "query", "bases", "--input-id", "w1", "--model", "tiny-two", "--json")
    assert one.returncode == 0 and json.loads(one.stdout)[0]["candidate"] == "tiny-two"
