"""Prompt recipes: prompts and sampling a job takes by name with `[prompt] recipe`.

The shipped recipes are TOML files beside this module (`recipes/<name>.toml`, package
data): `local` (rephrasings, reversals and direct implications of one document),
`rephrase`, `reverse` and `implications` (one kind each), and `global` (inferences
drawn with the whole corpus as the shared context, `context_file`). A job may name a
recipe file of its own instead (`recipe = "mine.toml"`, relative to the job file).

What the job sets wins: its template or messages replace the recipe's, and each
[sampling] key it sets replaces the recipe's (a constraint, `choice`, `regex` or
`json_schema`, replaces the recipe's constraint). A recipe works on `document`, a
template over the row (`{{ text }}` unless the job sets `document = "{{ fact }}"`),
rendered before the prompt and available to every template of the job.

Recipes are spec sugar, resolved when the spec is read: the prompts a run renders,
keys and caches are plain templates, and changing a recipe's text changes keys as
changing a template would.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from batch.run.spec.errors import SpecError
from batch.run.spec.files import MAX_JOB_FILE, FileProblem, read_text

CONSTRAINTS = ("choice", "regex", "json_schema")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
_RECIPE_KEYS = {"description", "needs", "prompt", "sampling"}
_PROMPT_KEYS = {"document", "template", "messages", "examples"}
_NEEDS = {"context_file": "the corpus every row shares, e.g. context_file = \"corpus.md\""}


def shipped() -> dict[str, str]:
    """{name: description} of the recipes shipped with Almanac."""
    out = {}
    for entry in sorted(resources.files(__package__).joinpath("recipes").iterdir(),
                        key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            out[entry.name.removesuffix(".toml")] = tomllib.loads(
                entry.read_text("utf-8")).get("description", "")
    return out


def load_recipe(name: str, job_path: Path) -> dict[str, Any]:
    """A recipe's table: a shipped one by name, or a file relative to the job file."""
    where = f"{job_path}: prompt.recipe"
    if name.endswith(".toml"):
        path = (job_path.parent / name).resolve()
        try:
            text = read_text(path, MAX_JOB_FILE)
        except FileProblem as exc:
            raise SpecError(f"{where}: cannot read {name!r}: it {exc}") from None
    else:
        entry = resources.files(__package__).joinpath("recipes", f"{name}.toml")
        if not _NAME.fullmatch(name) or not entry.is_file():
            raise SpecError(f"{where}: no recipe {name!r} (shipped: {', '.join(shipped())}; "
                            "or name a recipe file, `*.toml`)")
        text = entry.read_text("utf-8")
    try:
        recipe = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: {name!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(recipe) - _RECIPE_KEYS) + \
        sorted(f"prompt.{k}" for k in set(recipe.get("prompt", {})) - _PROMPT_KEYS)
    if unknown:
        raise SpecError(f"{where}: {name!r} has keys a recipe cannot set: {', '.join(unknown)} "
                        f"(a recipe sets {', '.join(sorted(_RECIPE_KEYS))}; its prompt "
                        f"{', '.join(sorted(_PROMPT_KEYS))})")
    return recipe


def apply_recipe(data: dict[str, Any], job_path: Path) -> dict[str, Any]:
    """The job's table with its recipe laid under it and `document` set up; the job's
    own table when it names neither."""
    prompt = data.get("prompt") or {}
    name, document = prompt.get("recipe"), prompt.get("document")
    if name is None and document is None:
        return data
    recipe = load_recipe(name, job_path) if name is not None else {}
    theirs = recipe.get("prompt", {})
    mine = {k: v for k, v in prompt.items() if k not in ("recipe", "document")}
    if "template" not in mine and "messages" not in mine:
        mine.update({k: theirs[k] for k in ("template", "messages") if k in theirs})
    if "examples" not in mine and "examples" in theirs:
        mine["examples"] = theirs["examples"]
    for need in recipe.get("needs", []):
        if need not in mine:
            raise SpecError(f"{job_path}: prompt.recipe {name!r} needs prompt.{need}: "
                            f"{_NEEDS.get(need, 'see the recipe')}")
    document = document or theirs.get("document")
    if document:
        # Rendered first, once per template, so that every template sees the same text.
        define = "{% set document %}" + document + "{% endset %}"
        if "template" in mine:
            mine["template"] = define + mine["template"]
        if "messages" in mine:
            mine["messages"] = [{**m, "content": define + m["content"]} for m in mine["messages"]]
    sampling = dict(recipe.get("sampling", {}))
    own = data.get("sampling", {})
    if any(c in own for c in CONSTRAINTS):
        sampling = {k: v for k, v in sampling.items() if k not in CONSTRAINTS}
    sampling.update(own)
    out = {**data, "prompt": mine}
    if sampling:
        out["sampling"] = sampling
    return out
