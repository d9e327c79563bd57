"""The curated seed list: real specialized models, loaded by `almanac init`."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import schemas
from catalog import taxonomy
from catalog.records import EvalRecord, ModelEntry


class SeedError(ValueError):
    pass


def read_entries(path: Path | None = None) -> list[ModelEntry]:
    """Read and validate a seed file (the shipped one by default)."""
    if path is None:
        raw = resources.files(__name__).joinpath("models.toml").read_text("utf-8")
        where = "seed list"
    else:
        raw = path.read_text("utf-8")
        where = str(path)
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise SeedError(f"{where}: not valid TOML: {exc}") from None
    items = data.get("model", [])
    problems = [f"model[{i}].{msg}" for i, item in enumerate(items) for msg in schemas.errors("model-entry", item)]
    # The schema checks the shape of codes and slugs; the taxonomy knows which exist.
    problems += [f"model[{i}].{msg}" for i, item in enumerate(items) for msg in _taxonomy_errors(item)]
    if problems:
        raise SeedError(f"{where}: " + "; ".join(problems))
    seen: set[str] = set()
    entries = []
    for i, item in enumerate(items):
        if item["repo_id"] in seen:
            raise SeedError(f"{where}: model[{i}].repo_id: {item['repo_id']!r} appears twice")
        seen.add(item["repo_id"])
        entries.append(entry_from_dict(item, source="seed"))
    return entries


def _taxonomy_errors(item: dict) -> list[str]:
    out = []
    for field, check in (
        ("domains", taxonomy.normalize_domain),
        ("languages", taxonomy.normalize_language),
    ):
        values = item.get(field)
        if not isinstance(values, list):
            continue  # the schema has already said so
        for j, value in enumerate(values):
            if not isinstance(value, str):
                continue
            try:
                check(value)
            except taxonomy.TaxonomyError as exc:
                out.append(f"{field}[{j}]: {exc}")
    return out


def entry_from_dict(item: dict, *, source: str) -> ModelEntry:
    fields = dict(item)
    evals = [EvalRecord(**e) for e in fields.pop("evals", [])]
    repo_id = fields.pop("repo_id")
    return ModelEntry(ref=repo_id, repo_id=repo_id, source=source, evals=evals, **fields)
