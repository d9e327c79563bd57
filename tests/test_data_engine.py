"""The whole chain on the tiny model with the real engine: a teacher job with scores, jobs
chained from it (n samples, JSON lists from a recipe, both exploded), incremental
reruns, then `almanac curate` and `datasets.load_dataset` on what it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import tomli_w
from click.testing import CliRunner

from almanac.cli import cli
from batch.data.chains import UpstreamReader
from batch.query import Predictions
from batch.run.executors.engine import EnginePool
from batch.run.executors.local import LocalExecutor
from batch.run.runner import Runner, RunResult
from batch.run.spec.job import load_spec
from batch.score.scoring import score_run
from tests.engine_support import ENGINE_OPTIONS, TINY_MODEL

pytestmark = pytest.mark.engine

WORDS = ["plum", "pear", "lime", "fig"]


def job(directory: Path, name: str, source: dict[str, Any], prompt: dict[str, Any],
        sampling: dict[str, Any] | None = None, **extra: Any) -> Path:
    table = {"name": name, "model": TINY_MODEL, "input": source, "prompt": prompt,
             "sampling": {"max_tokens": 4, "temperature": 0.0, **(sampling or {})},
             "engine": ENGINE_OPTIONS, **extra}
    path = directory / f"{name}.toml"
    path.write_text(tomli_w.dumps(table), encoding="utf-8")
    return path


def words(directory: Path, items: list[str]) -> None:
    (directory / "words.jsonl").write_text(
        "".join(json.dumps({"id": w, "word": w}) + "\n" for w in items), encoding="utf-8")


@pytest.fixture
def chain_runner(runner: Runner, engine_pool: EnginePool, home: Path) -> Runner:
    """The session's engine, with the upstream reader the front door hands its runner."""
    r = Runner(runner.catalog, home / "predictions", home / "locks",
               executor=LocalExecutor(engine_pool),
               upstream=UpstreamReader(home / "predictions"))
    yield r
    r.close()


def ran(runner: Runner, path: Path) -> RunResult:
    spec = load_spec(path)
    result = runner.run(spec)
    score_run(runner, spec, result)
    return result


def test_teacher_scores_chains_and_curate_make_a_dataset(tmp_path: Path, home: Path,
                                                         chain_runner: Runner) -> None:
    words(tmp_path, WORDS)
    teacher = job(tmp_path, "teacher", {"path": "words.jsonl"}, {"template": "Say: {{ word }}"},
                  score={"reference": "{{ word }}", "metric": "contains"})
    samples = job(tmp_path, "samples", {"job": "teacher"},
                  {"template": "{{ word }} is {{ output }}"},
                  {"n": 2, "temperature": 1.0, "seed": 7},
                  score={"reference": "{{ word }}", "metric": "contains"})
    items = job(tmp_path, "items", {"job": "samples", "explode": True},
                {"template": "{{ position }}: {{ output }}"})

    assert ran(chain_runner, teacher).generated == 4
    first = ran(chain_runner, samples)
    assert first.generated == 4 and first.status == "ok"
    assert ran(chain_runner, items).generated == 8  # two samples of each row, one row each
    with Predictions.at(home / "predictions", "items") as p:
        rows = {r["input_id"]: r for r in p.search(limit=100)}
    assert sorted(rows) == sorted(f"{w}#{i}" for w in WORDS for i in (0, 1))
    with Predictions.at(home / "predictions", "samples") as p:
        plum = p.get("plum")
    assert plum is not None and plum["outputs"] is not None
    assert rows["plum#1"]["prompt"] == f"1: {plum['outputs'][1]}"

    # One new row upstream: each job downstream generates only what it brings.
    words(tmp_path, [*WORDS, "kiwi"])
    assert ran(chain_runner, teacher).generated == 1
    again = ran(chain_runner, samples)
    assert (again.generated, again.cached) == (1, 4)
    again = ran(chain_runner, items)
    assert (again.generated, again.cached) == (2, 8)

    # teacher (scored) -> curate -> a dataset `datasets` loads as it is.
    out = tmp_path / "teacher-sft"
    result = CliRunner().invoke(cli, ["curate", "teacher", "-o", str(out), "--where",
                                      "score is not null and finish_reason != 'error'",
                                      "--split", "0.6"])
    assert result.exit_code == 0, result.output
    data = datasets.load_dataset(str(out))
    assert sum(split.num_rows for split in data.values()) == 5
    example = next(iter(data.values()))[0]
    assert example["messages"][0] == {"role": "user", "content": f"Say: {example['input_id']}"}
    assert example["messages"][1]["role"] == "assistant" and example["model"] == TINY_MODEL
    assert example["score"] in (0.0, 1.0)

    # A chained job's dataset names the upstream rows it was made from.
    out = tmp_path / "items-sft"
    result = CliRunner().invoke(cli, ["curate", "items", "-o", str(out), "--split", "1",
                                      "--dedupe", "exact"])
    assert result.exit_code == 0, result.output
    train = datasets.load_dataset(str(out))["train"]
    assert set(train["source_job"]) == {"samples"}
    assert all(i.split("#")[0] == s for i, s in zip(train["input_id"], train["source_input_id"],
                                                    strict=True))
    card = (out / "README.md").read_text()
    assert "Chained from: `items` ← `samples` ← `teacher`" in card


def test_a_recipe_s_json_lists_explode_or_fail_with_the_reason(tmp_path: Path, home: Path,
                                                               chain_runner: Runner) -> None:
    words(tmp_path, WORDS)
    # The `local` recipe, with a prompt short enough for the tiny model's 256 tokens and
    # a tight schema: what the job sets wins over the recipe.
    augment = job(tmp_path, "augment", {"path": "words.jsonl"},
                  {"recipe": "local", "document": "{{ word }}",
                   "messages": [{"role": "user", "content": "List: {{ document }}"}]},
                  {"max_tokens": 24, "json_schema": {
                      "type": "array", "items": {"type": "string", "maxLength": 3},
                      "minItems": 1, "maxItems": 2}})
    items = job(tmp_path, "augment-items", {"job": "augment", "explode": True},
                {"template": "Again: {{ output }}"})
    ran(chain_runner, augment)
    result = ran(chain_runner, items)
    with Predictions.at(home / "predictions", "augment") as p:
        upstream = {w: p.get(w) for w in WORDS}
    with Predictions.at(home / "predictions", "augment-items") as p:
        down = {r["input_id"]: r for r in p.search(limit=100)}
    expected_rows = 0
    for w, rec in upstream.items():
        assert rec is not None and rec["error"] is None
        try:
            listed = json.loads(rec["output"])
        except json.JSONDecodeError:
            listed = None
        if isinstance(listed, list):  # one row per item, the item in its prompt
            for i, item in enumerate(listed):
                assert down[f"{w}#{i}"]["prompt"] == f"Again: {item}"
            expected_rows += len(listed)
        else:  # cut short by max_tokens: a failed row saying why
            assert down[w]["error"].startswith(f"input.explode: the answer of augment/{w} is ")
            expected_rows += 1
    assert result.plan["inputs"] == expected_rows == len(down)
