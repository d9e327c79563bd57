"""`almanac demo`, the README's main command, as a user runs it: twice. And the
demo's pieces agree: its model learns the prompts its job renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from almanac.demo import DEMO_JOB
from almanac.demo.families import FRUIT_FAMILIES
from almanac.demo.training import DemoPrompts
from batch.run.inputs import read_rows
from batch.run.prompts import PromptRenderer
from batch.run.spec import load_spec
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
    assert all(FRUIT_FAMILIES[ex["fruit"]] == ex["family"] for ex in spec.prompt.examples)


@pytest.mark.engine
def test_demo_trains_a_specialist_that_is_right_and_reruns_from_cache(home: Path) -> None:
    first = almanac(home, "demo", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    out = json.loads(first.stdout)  # stdout carries only the JSON, even with vLLM running
    assert out["run"]["generated"] == out["accuracy"]["total"] == 58
    assert out["run"]["engine_started"] is True
    # Trained here in well under a minute, the specialist names the fruit types.
    assert out["accuracy"]["correct"] >= 55
    assert all(p["output"] for p in out["predictions"])

    second = almanac(home, "demo", "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)
    assert (again["run"]["cached"], again["run"]["generated"]) == (58, 0)
    assert again["run"]["engine_started"] is False
    assert again["accuracy"] == out["accuracy"]

    shown = almanac(home, "models", "show", "almanac/fruit-specialist", "--json")
    listed = json.loads(shown.stdout)
    assert listed["source"] == "local" and listed["performance"]["tokens_per_s"] > 0
