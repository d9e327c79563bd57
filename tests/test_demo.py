"""`almanac demo`, the README's main command, as a user runs it: twice (the first run is
the session's demo home, which the documents' examples share). And the
demo's pieces agree: its model learns the prompts its job renders."""

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
def test_demo_compares_the_specialist_with_a_generalist_and_its_lora_then_reruns_from_cache(
        demo_home: DemoHome, tmp_path: Path) -> None:
    home = demo_home.copy(tmp_path / "home")
    specialist, generalist = "almanac/fruit-specialist", "almanac/tiny-generalist"
    lora = f"{generalist}+almanac/fruit-lora"
    # The session's demo (`almanac demo`, as a user runs it) generated every row.
    [run] = json.loads(almanac(home, "runs", "--json").stdout)
    assert (run["job"], run["generated"], run["cached"]) == ("fruit-families", 3 * 58, 0)
    # The adapter shares its base's engine: two starts for three candidates.
    assert run["engine_starts"] == 2
    shown = dict(re.findall(r"^(\S+): (\d+)/58 right$", demo_home.output, re.MULTILINE))
    assert set(shown) == {specialist, generalist, lora}

    again = almanac(home, "demo", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    out = json.loads(again.stdout)  # stdout carries only the JSON
    assert (out["run"]["cached"], out["run"]["generated"]) == (3 * 58, 0)
    assert out["run"]["engine_started"] is False and out["run"]["engine_starts"] == 0
    assert [c["label"] for c in out["run"]["candidates"]] == [specialist, generalist, lora]
    right = {label: a["correct"] for label, a in out["accuracy"].items()}
    assert right == {label: int(n) for label, n in shown.items()}  # what the first run said
    assert all(a["total"] == 58 for a in out["accuracy"].values())
    # Trained here in under a minute, the specialist names the fruit types; the
    # generalist errs, and a LoRA adapter trained in seconds mends most of it.
    assert right[specialist] >= 55 and right[lora] >= 40 and right[generalist] < right[lora] - 10
    assert all(p["answers"][specialist] for p in out["predictions"])
    # The comparison, best score first, with a cost from the job's [cost] price.
    compared = out["compare"]
    assert [c["label"] for c in compared] == [specialist, lora, generalist]
    assert compared[0]["score"] == pytest.approx(right[specialist] / 58)
    assert all(c["cost_per_1k"] is not None and c["n"] == 58 for c in compared)

    entry = almanac(home, "models", "show", specialist, "--json")
    assert json.loads(entry.stdout)["source"] == "local"
    runs = json.loads(almanac(home, "runs", "--json").stdout)
    assert [r["engine_starts"] for r in runs] == [0, 2]  # newest first
    lora_entry = json.loads(almanac(home, "models", "show", "almanac/fruit-lora", "--json").stdout)
    assert (lora_entry["relation"], lora_entry["base_model"]) == ("adapter", generalist)
