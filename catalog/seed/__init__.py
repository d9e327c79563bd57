"""The curated seed list: real specialized models, read and loaded by `almanac init`."""

from __future__ import annotations

import tomllib
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import schemas
from catalog import taxonomy
from catalog.records import CURATABLE, LIVE, EvalRecord, ModelEntry
from schemas.errors import UsageError

if TYPE_CHECKING:  # reading the list needs no database: SQLAlchemy loads with load_seed
    from sqlalchemy.orm import Session

    from catalog.tables import Model


class SeedError(UsageError, ValueError):
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
    problems = [f"model[{i}].{msg}" for i, item in enumerate(items) for msg in schemas.problems("model-entry", item)]
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
    """An entry from one [[model]] table; what it states is curated (kept by Hub imports),
    except the live figures the Hub owns."""
    fields = dict(item)
    evals = [EvalRecord(**e) for e in fields.pop("evals", [])]
    repo_id = fields.pop("repo_id")
    curated = sorted(k for k in item if k in CURATABLE and k not in LIVE and k != "repo_id")
    return ModelEntry(ref=repo_id, repo_id=repo_id, source=source, evals=evals, curated=curated,
                      **fields)


def load_seed(session: Session, entries: list[ModelEntry] | None = None) -> dict[str, int]:
    """Add or refresh seed models; leaves models that came from elsewhere alone.
    Unchanged entries are not written at all, so a second `init` changes nothing."""
    from catalog.merge import seeded
    from catalog.models import find_model, to_record, upsert_model

    counts = {"added": 0, "updated": 0, "unchanged": 0, "kept": 0}
    for entry in entries if entries is not None else read_entries():
        existing = find_model(session, entry.ref)
        if existing is not None and existing.source != "seed":
            counts["kept"] += 1
            continue
        if existing is not None:
            # What a refresh from the Hub added (revision, downloads, a card) stays.
            entry = seeded(to_record(session, existing), entry)
            if _same(session, existing, entry):
                counts["unchanged"] += 1
                continue
        upsert_model(session, entry)
        counts["updated" if existing is not None else "added"] += 1
    return counts


def _same(session: Session, model: Model, entry: ModelEntry) -> bool:
    from catalog.models import to_record, validate_entry

    have = asdict(to_record(session, model))
    want = asdict(validate_entry(entry))
    for key, value in want.items():
        if key in ("languages", "domains", "tags"):
            if sorted(value) != have[key]:
                return False
        elif key == "evals":
            if sorted(map(str, value)) != sorted(map(str, have[key])):
                return False
        elif have.get(key) != value:
            return False
    return True
