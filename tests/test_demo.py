"""`almanac demo`, the README's main command, as a user runs it: twice. And the
demo's pieces agree: its model learns the prompts its job renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from almanac.demo import DEMO_JOB
from almanac.demo.families import FRUIT_COLOURS, FRUIT_FAMILIES
from almanac.demo.training import DemoPrompts
from batch.run.inputs import read_rows
from batch.run.spec.job import load_spec
from batch.run.spec.prompts import PromptRenderer
from tests.engine_support import almanac


def test_training_prompts_are_the_prompts_the_demo_job_renders() -> None:
    spec = load_spec(DEMO_JOB)
    renderer, prompts = PromptRenderer(spec.prompt), DemoPrompts()
    rows = list(read_rows(spec.input))
    assert len(rows) == 58
    for row in rows:
        assert prompts.render(row.fields["fruit"]) == renderer.render(row.fields)
    # Other few-shot examples replace the job's rather than joining them.
    assert prompts.render("fig", [{"fruit": "kiwi", "family": "berry"}]) == "kiwi: berry\nfig:"
    assert prompts.render("fig", []) == "fig:"


def test_every_fruit_of_the_demo_job_has_a_known_type() -> None:
    spec = load_spec(DEMO_JOB)
    fruits = [row.fields["fruit"] for row in read_rows(spec.input)]
    assert fruits and set(fruits) <= set(FRUIT_FAMILIES)
    # Each row carries its right answer, which the job's [score] reference reads.
    assert all(row.fields["family"] == FRUIT_FAMILIES[row.fields["fruit"]]
               for row in read_rows(spec.input))
    assert set(FRUIT_COLOURS) == set(FRUIT_FAMILIES)  # the generalist's second task
    assert all(FRUIT_FAMILIES[ex["fruit"]] == ex["family"] for ex in spec.prompt.examples)


@pytest.mark.engine
def test_demo_distils_a_student_compares_it_with_its_teacher_and_base_then_reruns_from_cache(
        home: Path) -> None:
    first = almanac(home, "demo", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    out = json.loads(first.stdout)  # stdout carries only the JSON, even with vLLM running
    specialist, generalist = "almanac/fruit-specialist", "almanac/tiny-generalist"
    lora = f"{generalist}+almanac/fruit-lora"
    run = out["run"]
    # The specialist answered first, as the student's teacher: its answers are cached. The
    # student shares its base's engine: one start for two candidates.
    assert (run["generated"], run["cached"]) == (2 * 58, 58) and run["engine_starts"] == 1
    assert [c["label"] for c in run["candidates"]] == [specialist, generalist, lora]
    right = {label: a["correct"] for label, a in out["accuracy"].items()}
    assert all(a["total"] == 58 for a in out["accuracy"].values())
    # Trained here in under a minute, the specialist names the fruit types; the
    # generalist errs, and the student distilled from the specialist in seconds mends most.
    assert right[specialist] >= 55 and right[lora] >= 40 and right[generalist] < right[lora] - 10
    assert all(p["answers"][specialist] for p in out["predictions"])
    # The comparison, best score first, with a cost from the job's [cost] price.
    compared = out["compare"]
    assert [c["label"] for c in compared] == [specialist, lora, generalist]
    assert compared[0]["score"] == pytest.approx(right[specialist] / 58)
    assert all(c["cost_per_1k"] is not None and c["n"] == 58 for c in compared)
    # The student on the fruits it never trained on: every row already cached.
    distill = out["distill"]
    assert distill["train"]["status"] == "trained" and distill["train"]["form"] == "text"
    assert distill["eval_run"]["generated"] == 0 and distill["eval_run"]["engine_started"] is False
    held_out = {c["label"]: c for c in distill["compare"]}
    assert set(held_out) == {specialist, generalist, lora}
    # Every validation fruit, whether or not the specialist got it right.
    assert held_out[lora]["n"] >= distill["curate"]["split_rows"]["validation"] > 0
    assert distill["summary"].startswith(f"{lora}: ") and "against teacher" in distill["summary"]

    second = almanac(home, "demo", "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)
    assert (again["run"]["cached"], again["run"]["generated"]) == (3 * 58, 0)
    assert again["run"]["engine_started"] is False and again["run"]["engine_starts"] == 0
    assert again["accuracy"] == out["accuracy"]
    assert again["distill"]["train"]["status"] == "reused"
    assert again["distill"]["teacher_run"]["generated"] == 0

    shown = almanac(home, "models", "show", specialist, "--json")
    assert json.loads(shown.stdout)["source"] == "local"
    runs = json.loads(almanac(home, "runs", "--json").stdout)
    # Newest first: the second demo's evaluation, demo job and teacher runs, then the first's.
    evaluation = "fruit-families-distill-almanac-fruit-lora"
    assert [(r["job"], r["engine_starts"]) for r in runs] == [
        (evaluation, 0), ("fruit-families", 0), ("fruit-families", 0),
        (evaluation, 0), ("fruit-families", 1), ("fruit-families", 1)]
    lora_entry = json.loads(almanac(home, "models", "show", "almanac/fruit-lora", "--json").stdout)
    assert (lora_entry["relation"], lora_entry["base_model"]) == ("adapter", generalist)
    assert lora_entry["training"]["distilled_from"] == f"fruit-families (teacher {specialist})"
