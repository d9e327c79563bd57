"""Scores with the real engine: a judge model's calls go through the runner as a derived
job and are cached like any prediction, so scoring again (in this process, in a fresh
one, or at the end of `almanac run`) starts no engine and never imports vLLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from batch.query import Predictions
from batch.run.spec.job import load_spec
from batch.score.judge import judge_job_name, judge_row_id
from batch.score.scoring import score_run
from batch.score.store import ScoreStore
from tests.engine_support import ENGINE_OPTIONS, TINY_MODEL, almanac, write_job

pytestmark = pytest.mark.engine

WORDS = ["plum", "pear", "lemon", "peach", "apple", "cherry"]
JUDGE = {"model": TINY_MODEL, "template": "Answer: {{ output }}\nExpected: {{ reference }}\nRight?",
         "choice": {"yes": 1.0, "no": 0.0}, "engine": ENGINE_OPTIONS}
# Runs the CLI in a fresh interpreter and reports which heavy modules it imported.
PROBE = """
import json, sys
from almanac.cli import cli
try:
    cli.main(json.loads(sys.argv[1]), prog_name="almanac", standalone_mode=False)
    code = 0
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"vllm", "torch", "transformers"})
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _with_score(job: Path, score: dict) -> Path:
    data = tomllib.loads(job.read_text())
    data["score"] = score
    job.write_text(tomli_w.dumps(data))
    return job


def _probe(home: Path, *args: str) -> tuple[dict, str]:
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stderr.strip().splitlines()[-1]), proc.stdout


def test_judge_calls_are_cached_like_any_prediction(home: Path, tmp_path: Path, runner) -> None:
    job = _with_score(write_job(tmp_path, "judged", [{"id": w, "word": w} for w in WORDS]),
                      {"metric": "judge", "reference": "{{ word }}", "judge": JUDGE})
    spec = load_spec(job)
    result = runner.run(spec)
    first = score_run(runner, spec, result)
    assert first is not None and first.judge is not None
    assert first.metric == f"judge:{TINY_MODEL}"
    assert first.judge.generated == len(WORDS) and first.computed == len(WORDS)

    # Each score is what the judge answered, through the choice's values.
    with Predictions.at(home / "predictions", judge_job_name("judged")) as answers:
        said = {w: answers.get(judge_row_id(TINY_MODEL, w))["output"] for w in WORDS}
    assert set(said.values()) <= {"yes", "no"}
    with ScoreStore.open(home / "predictions") as store:
        assert store.scores_for("judged") == {(TINY_MODEL, w): float(said[w] == "yes") for w in WORDS}

    second = score_run(runner, spec)
    assert second is not None and second.judge is not None
    assert (second.judge.generated, second.judge.cached) == (0, len(WORDS))
    assert not second.judge.engine_started
    assert (second.computed, second.kept) == (0, len(WORDS))

    # A fresh process: every judge call is cached, so no engine, and no vLLM imported.
    imported, out = _probe(home, "score", str(job), "--json")
    assert imported == {"code": 0, "heavy": []}
    report = json.loads(out)
    assert report["judge"]["cached"] == len(WORDS) and report["judge"]["engine_started"] is False


def test_almanac_run_scores_what_it_ran(home: Path, tmp_path: Path, runner) -> None:
    job = _with_score(write_job(tmp_path, "auto-scored", [{"id": w, "word": w} for w in WORDS]),
                      {"metric": "contains", "reference": "{{ word[:1] }}"})
    runner.run(load_spec(job))  # generated here, on the session's engine
    imported, out = _probe(home, "run", str(job), "--json")
    assert imported == {"code": 0, "heavy": []}  # nothing missing: no engine
    summary = json.loads(out)
    assert summary["cached"] == len(WORDS)
    assert summary["score"]["metric"] == "contains" and summary["score"]["computed"] == len(WORDS)
    (candidate,) = summary["score"]["candidates"]
    assert candidate["n"] == len(WORDS) and 0.0 <= candidate["score"] <= 1.0
    proc = almanac(home, "run", str(job))
    assert proc.returncode == 0, proc.stderr
    assert f"auto-scored: scored contains: 0 computed, {len(WORDS)} unchanged" in proc.stdout


def test_candidates_scored_and_compared_after_one_run(home: Path, tmp_path: Path, runner,
                                                      lora_adapter: Path) -> None:
    from batch.score.compare import compare_job
    from catalog.evals import measured_for_task

    job = write_job(tmp_path, "two-candidates", [{"id": w, "word": w} for w in WORDS])
    data = tomllib.loads(job.read_text())
    del data["model"]
    data["candidates"] = [{"model": TINY_MODEL}, {"model": TINY_MODEL, "adapter": str(lora_adapter),
                                                  "label": "tiny+lora"}]
    data["cost"] = {"usd_per_hour": 0.5}
    data["score"] = {"metric": "contains", "reference": "{{ word[:1] }}"}
    job.write_text(tomli_w.dumps(data))
    spec = load_spec(job)
    result = runner.run(spec)
    report = score_run(runner, spec, result)
    assert report is not None and {c.label for c in report.candidates} == {TINY_MODEL, "tiny+lora"}
    with Predictions.at(home / "predictions", "two-candidates") as p:
        entries = {e.label: e for e in compare_job(runner.catalog.sessions, p)}
        outputs = {label: {w: p.get(w, candidate=label)["output"] for w in WORDS} for label in entries}
    for label, e in entries.items():
        values = [float(w[:1].casefold() in (outputs[label][w] or "").casefold()) for w in WORDS]
        assert (e.n, e.rows) == (len(WORDS), len(WORDS))
        assert e.score == pytest.approx(sum(values) / len(values))
        assert e.generated == len(WORDS) and e.engine_s and e.tokens_per_s
        assert e.usd_per_hour == 0.5
        assert e.cost_per_1k == pytest.approx(0.5 * e.engine_s / 3600 / len(WORDS) * 1000)
        assert e.pareto is not None
    assert entries["tiny+lora"].adapter == str(lora_adapter)
    with runner.catalog.sessions() as s:
        board = measured_for_task(s, "two-candidates", "contains")
    assert {(m.model_ref, m.label) for m in board} == {(TINY_MODEL, TINY_MODEL), (TINY_MODEL, "tiny+lora")}
