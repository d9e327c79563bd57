"""Augmentation recipes: `[prompt] recipe = "…"` lays a shipped (or the job's own)
prompt and sampling under the job's, which wins where it sets anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch.run.spec.errors import SpecError
from batch.run.spec.job import load_spec
from batch.run.spec.prompts import PromptRenderer, RenderError
from batch.run.spec.recipes import shipped

FACT = {"id": "f04", "fact": "Ilse Marrow is the mother of Oren Marrow.", "topic": "people"}


def job(tmp_path: Path, prompt: str, extra: str = "") -> Path:
    path = tmp_path / "job.toml"
    path.write_text(f'name = "aug"\nmodel = "tiny"\n[input]\npath = "facts.jsonl"\n'
                    f"[prompt]\n{prompt}\n{extra}", encoding="utf-8")
    return path


def test_the_shipped_recipes_are_listed_with_what_they_make() -> None:
    recipes = shipped()
    assert set(recipes) == {"local", "rephrase", "reverse", "implications", "global"}
    assert "reversal" in recipes["local"] and "JSON list" in recipes["local"]
    assert "context_file" in recipes["global"]


def test_a_local_recipe_renders_its_messages_over_the_document(tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, 'recipe = "local"\ndocument = "{{ fact }}"'))
    assert spec.chat and spec.sampling.json_schema is not None
    assert spec.sampling.json_schema["type"] == "array"
    system, user = PromptRenderer(spec.prompt).render(FACT)
    assert system["role"] == "system" and "JSON list" in system["content"]
    assert user["content"].startswith("Fact: Ilse Marrow is the mother of Oren Marrow.\n")
    assert "B's child is A" in user["content"]  # the reversal the recipe asks for


def test_the_document_defaults_to_the_text_field(tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, 'recipe = "rephrase"'))
    renderer = PromptRenderer(spec.prompt)
    assert "Fact: Brackwater lies on Tessaly." in renderer.render(
        {"text": "Brackwater lies on Tessaly."})[1]["content"]
    with pytest.raises(RenderError, match="'text' is undefined"):
        renderer.render(FACT)


def test_what_the_job_sets_wins_over_the_recipe(tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, 'recipe = "local"\ndocument = "{{ fact }}"\n'
                                   'template = "Restate: {{ document }}"',
                         "[sampling]\nmax_tokens = 16\nchoice = ['yes', 'no']\n"))
    assert not spec.chat
    assert PromptRenderer(spec.prompt).render(FACT) == \
        "Restate: Ilse Marrow is the mother of Oren Marrow."
    assert spec.sampling.max_tokens == 16
    # The job's constraint replaces the recipe's JSON schema rather than clashing with it.
    assert list(spec.sampling.choice or ()) == ["yes", "no"] and spec.sampling.json_schema is None
    assert spec.sampling.temperature == 0.0  # what the job left unset comes from the recipe


def test_the_global_recipe_needs_the_corpus_as_context(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="prompt.recipe 'global' needs prompt.context_file"):
        load_spec(job(tmp_path, 'recipe = "global"'))
    (tmp_path / "corpus.md").write_text("Velmora has seven islands.", encoding="utf-8")
    spec = load_spec(job(tmp_path, 'recipe = "global"\ncontext_file = "corpus.md"'))
    system, user = PromptRenderer(spec.prompt).render({"text": "Fenn is windy."})
    # The corpus opens every prompt, so the engine's prefix cache serves it once.
    assert system["content"].endswith("The corpus:\nVelmora has seven islands.")
    assert "Document: Fenn is windy." in user["content"]


def test_a_recipe_file_of_the_job_s_own(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        'description = "mine"\n[prompt]\ndocument = "{{ fact }}"\n'
        'template = "Say it again: {{ document }}"\n[sampling]\nmax_tokens = 7\n',
        encoding="utf-8")
    spec = load_spec(job(tmp_path, 'recipe = "mine.toml"'))
    assert PromptRenderer(spec.prompt).render(FACT).startswith("Say it again: Ilse")
    assert spec.sampling.max_tokens == 7


@pytest.mark.parametrize(("recipe", "message"), [
    ('[prompt]\ncontext_file = "x"\n', "keys a recipe cannot set: prompt.context_file"),
    ("engine = {}\n", "keys a recipe cannot set: engine"),
    ("[prompt\n", "is not valid TOML"),
    ('[prompt]\ntemplate = "x"\n[sampling]\ntemperature = -1\n',
     "invalid job spec with prompt.recipe 'bad.toml': sampling.temperature"),
])
def test_a_bad_recipe_file_is_a_spec_error_naming_it(tmp_path: Path, recipe: str,
                                                     message: str) -> None:
    (tmp_path / "bad.toml").write_text(recipe, encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec(job(tmp_path, 'recipe = "bad.toml"'))
    assert message in str(err.value) and str(tmp_path / "job.toml") in str(err.value)


def test_a_missing_recipe_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read 'gone.toml': it does not exist"):
        load_spec(job(tmp_path, 'recipe = "gone.toml"'))


def test_the_example_augmentation_jobs_load() -> None:
    examples = Path(__file__).resolve().parent.parent / "examples" / "velmora"
    names = {load_spec(p).name for p in sorted(examples.glob("*.toml"))}
    assert names == {"velmora-local", "velmora-global", "velmora-questions"}
