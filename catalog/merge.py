"""What an import from the Hub may change in a model the catalog already holds.

- Live figures the Hub owns (`LIVE`: revision, gating, downloads, likes) always follow
  the Hub — except a cached model's revision, which is the snapshot on disk.
- Fields the seed list or the user stated (the model's `curated` list) never change.
- Everything else follows the Hub where it says something, and stays where it is silent:
  a listing carries no model card, so discovery keeps the description and card a refresh
  fetched; a card without domain tags (`general`) keeps the domains the catalog had.
- Where it came from (`source`, `local_path`) stays.
"""

from __future__ import annotations

from copy import copy
from dataclasses import fields
from typing import Any

from catalog.listing import SCALARS
from catalog.models import facts_of
from catalog.records import LIVE, ModelEntry, ModelRecord

_KEPT = ("source", "local_path")
_ENTRY_FIELDS = tuple(f.name for f in fields(ModelEntry))


def as_entry(record: ModelRecord) -> ModelEntry:
    """The catalog's record as an entry that can be written back."""
    values: dict[str, Any] = {name: getattr(record, name) for name in _ENTRY_FIELDS}
    for name in ("languages", "domains", "tags", "evals", "curated"):
        values[name] = list(values[name])
    return ModelEntry(**values)


def merge_hub(have: ModelRecord | None, new: ModelEntry, *, was: ModelEntry | None = None) -> ModelEntry:
    """The entry to write when the Hub describes `new` and the catalog holds `have`
    (`was`: `have` as an entry, when the caller made it already). Both are validated,
    so what this returns is too."""
    if have is None:
        return new
    out = copy(was) if was is not None else as_entry(have)
    curated = set(have.curated)
    for name in SCALARS:
        value = getattr(new, name)
        if name in _KEPT or (name == "revision" and have.source == "cache"):
            continue
        if name in LIVE:
            if value is not None:
                setattr(out, name, value)
        elif name not in curated and value not in (None, ""):
            setattr(out, name, value)
    if "languages" not in curated and new.languages:
        out.languages = list(new.languages)
    if "domains" not in curated and new.domains and not (new.domains == ["general"] and have.domains):
        out.domains = list(new.domains)
    if "tags" in curated:
        out.tags = list(dict.fromkeys([*have.tags, *new.tags]))
    elif new.tags:
        out.tags = list(new.tags)
    if "evals" not in curated:
        out.evals = list(new.evals)
    return out


def seeded(have: ModelRecord, seed: ModelEntry) -> ModelEntry:
    """The entry to write when the seed list describes a model the catalog holds: what the
    seed states wins, and so does its silence on a field it stated before (a figure
    dropped from the seed because it could not be verified goes); the rest, filled by the
    Hub, stays. Live figures follow the seed only until the Hub has been asked."""
    out = as_entry(have)
    for name in (*SCALARS, "languages", "domains", "tags", "evals"):
        stated = name in seed.curated or name in have.curated
        if name in LIVE:
            stated = have.refreshed_at is None
        if stated and name not in _KEPT:
            setattr(out, name, getattr(seed, name))
    out.source, out.curated = seed.source, list(seed.curated)
    return out


def same_facts(a: ModelEntry, b: ModelEntry) -> bool:
    """Equal in everything but downloads and likes, which move every day."""
    def facts(e: ModelEntry) -> dict[str, Any]:
        out = facts_of(e)
        out.pop("downloads"), out.pop("likes")
        return {**out, "card": e.card, "languages": sorted(e.languages), "domains": sorted(e.domains),
                "tags": sorted(e.tags), "evals": sorted(map(repr, e.evals)),
                "curated": sorted(e.curated)}
    return facts(a) == facts(b)
