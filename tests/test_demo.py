"""`almanac demo`, the README's main command, as a user runs it: twice (the first run is
the session's demo home, which the documents' examples share). And the demo's pieces
agree: its model learns the prompts its job renders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from almanac.demo import DEMO_JOB
from almanac.demo.families import FRUIT_COLOURS, FRUIT_FAMILIES
from almanac.demo.training import DemoPrompts
from batch.run.inputs import read_rows
from batch.run.spec.job import load_spec
from batch.run.spec.prompts import PromptRenderer
from tests.docs_support import DemoHome
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
@pytest.mark.xdist_group("demo")  # the session's demo home is made once, on one worker
def test_demo_distils_a_student_compares_it_with_its_teacher_and_base_then_reruns_from_cache(
        demo_home: DemoHome, tmp_path: Path) -> None:
    home = demo_home.copy(tmp_path / "home")
    specialist, generalist = "almanac/fruit-specialist", "almanac/tiny-generalist"
    lora = f"{generalist}+almanac/fruit-lora"
    evaluation = "fruit-families-distill-almanac-fruit-lora"
    # The session's demo (`almanac demo`, as a user runs it), newest run first: the
    # student's evaluation, the demo job, the teacher's job.
    first = json.loads(almanac(home, "runs", "--json").stdout)
    assert [(r["job"], r["engine_starts"]) for r in first] == [
        (evaluation, 0), ("fruit-families", 1), ("fruit-families", 1)]
    # The specialist answered first, as the student's teacher: its answers are cached. The
    # student shares its base's engine: one start for two candidates.
    assert (first[1]["generated"], first[1]["cached"]) == (2 * 58, 58)
    assert first[0]["generated"] == 0  # the evaluation's rows were all answered already
    shown = dict(re.findall(r"^(\S+): (\d+)/58 right$", demo_home.output, re.MULTILINE))
    assert set(shown) == {specialist, generalist, lora}

    second = almanac(home, "demo", "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    out = json.loads(second.stdout)  # stdout carries only the JSON
    assert (out["run"]["cached"], out["run"]["generated"]) == (3 * 58, 0)
    assert out["run"]["engine_started"] is False and out["run"]["engine_starts"] == 0
    assert [c["label"] for c in out["run"]["candidates"]] == [specialist, generalist, lora]
    right = {label: a["correct"] for label, a in out["accuracy"].items()}
    assert right == {label: int(n) for label, n in shown.items()}  # what the first run said
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
    # The student on the fruits it never trained on, as the first run measured it.
    distill = out["distill"]
    assert distill["train"]["status"] == "reused" and distill["teacher_run"]["generated"] == 0
    assert distill["eval_run"]["generated"] == 0 and distill["eval_run"]["engine_started"] is False
    held_out = {c["label"]: c for c in distill["compare"]}
    assert set(held_out) == {specialist, generalist, lora}
    # Every validation fruit, whether or not the specialist got it right.
    assert held_out[lora]["n"] >= distill["curate"]["split_rows"]["validation"] > 0
    assert distill["summary"].startswith(f"{lora}: ") and "against teacher" in distill["summary"]

    entry = almanac(home, "models", "show", specialist, "--json")
    assert json.loads(entry.stdout)["source"] == "local"
    runs = json.loads(almanac(home, "runs", "--json").stdout)
    # Newest first: the second demo's evaluation, demo job and teacher runs, then the first's.
    assert [(r["job"], r["engine_starts"]) for r in runs] == [
        (evaluation, 0), ("fruit-families", 0), ("fruit-families", 0),
        (evaluation, 0), ("fruit-families", 1), ("fruit-families", 1)]
    lora_entry = json.loads(almanac(home, "models", "show", "almanac/fruit-lora", "--json").stdout)
    assert (lora_entry["relation"], lora_entry["base_model"]) == ("adapter", generalist)
    assert lora_entry["training"]["distilled_from"] == f"fruit-families (teacher {specialist})"
