"""Writing many models at once (discovery and refresh): merged with what the catalog holds,
in batches of plain inserts and updates rather than one ORM object per model.

One call writes one batch in the caller's transaction: models, their link tables and
evals, the history of revisions that moved on, and the derived read structures
(catalog.indexing). A model already in the catalog is refreshed, never duplicated; what
its seed entry or its user stated stays (catalog.merge); an entry that does not validate
is refused and reported, the rest of the batch goes on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, select, text
from sqlalchemy.orm import Session

from catalog import indexing
from catalog.history import record_replaced
from catalog.listing import SCALARS, records_for
from catalog.merge import as_entry, merge_hub, same_facts
from catalog.models import facts_of, validate_entry
from catalog.records import ModelEntry, ModelRecord
from catalog.tables import Model

Action = Literal["added", "updated", "unchanged", "refused"]


@dataclass
class Outcome:
    """What one import did (or, dry, would do) to one model."""

    ref: str
    action: Action
    revision: str | None = None
    previous_revision: str | None = None  # set when the Hub moved the model
    reason: str | None = None  # why it was refused

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class _Plan:
    ref: str
    have: ModelRecord | None
    was: ModelEntry | None  # `have` as an entry, for comparing and indexing
    merged: ModelEntry
    action: Action

    @property
    def moved(self) -> bool:
        return bool(self.have and self.have.revision and self.merged.revision
                    and self.have.revision != self.merged.revision)


def import_entries(session: Session, entries: Sequence[ModelEntry], *, now: datetime,
                   dry_run: bool = False) -> list[Outcome]:
    """Add or refresh these models as the Hub describes them, described at `now`."""
    outcomes: list[Outcome] = []
    valid: dict[str, ModelEntry] = {}  # the Hub listed one twice: the last word stands
    for entry in entries:
        try:
            valid[entry.ref] = validate_entry(entry)
        except ValueError as exc:
            outcomes.append(Outcome(entry.ref, "refused", reason=f"{entry.ref}: {exc}"))
    haves = _existing(session, list(valid))
    plans: list[_Plan] = []
    for ref, entry in valid.items():
        have = haves.get(ref)
        was = as_entry(have) if have is not None else None
        merged = merge_hub(have, entry, was=was)
        action: Action = "added" if was is None else ("unchanged" if same_facts(was, merged) else "updated")
        plan = _Plan(ref, have, was, merged, action)
        plans.append(plan)
        outcomes.append(Outcome(ref, action, merged.revision,
                                previous_revision=have.revision if plan.moved and have else None))
    if not dry_run and plans:
        _write(session, plans, now)
    return outcomes


def _existing(session: Session, refs: list[str]) -> dict[str, ModelRecord]:
    ids = list(session.scalars(select(Model.id).where(Model.ref.in_(refs))))
    return {r.ref: r for r in records_for(session, ids, performance=False)}


def _row(entry: ModelEntry, now: datetime) -> dict[str, Any]:
    row = {name: getattr(entry, name) for name in SCALARS}
    row.update(description=entry.description or "", card=entry.card or "", refreshed_at=now,
               curated=json.dumps(entry.curated) if entry.curated else None)
    return row


def _indexed(model_id: int, entry: ModelEntry, text_key: int | None = None) -> indexing.Indexed:
    return indexing.Indexed(
        id=model_id, ref=entry.ref, name=entry.name, description=entry.description or "",
        card=entry.card or "", downloads=entry.downloads, tags=tuple(sorted(entry.tags)),
        domains=tuple(sorted(entry.domains)), languages=tuple(sorted(entry.languages)),
        text_key=text_key)


def _write(session: Session, plans: list[_Plan], now: datetime) -> None:
    models = Model.__table__  # Core, not ORM bulk: a plain executemany per statement
    conn = session.connection()
    ids: dict[str, int] = {p.ref: p.have.id for p in plans if p.have is not None}
    if new := [p for p in plans if p.have is None]:
        rows = [{"ref": p.ref, **_row(p.merged, now), "created_at": now, "updated_at": now} for p in new]
        ids.update((ref, model_id) for model_id, ref in conn.execute(
            models.insert().returning(models.c.id, models.c.ref), rows))
    changed = [p for p in plans if p.action == "updated"]
    live = [{"_id": ids[p.ref], "downloads": p.merged.downloads, "likes": p.merged.likes, "refreshed_at": now}
            for p in plans if p.action == "unchanged"]
    updates = [{"_id": ids[p.ref], **_row(p.merged, now), "updated_at": now} for p in changed]
    for rows in (updates, live):
        if rows:
            conn.execute(models.update().where(models.c.id == bindparam("_id")), rows)
    for p in changed:
        if p.moved and p.have is not None and p.have.revision:
            record_replaced(session, p.have.id, p.have.revision, facts_of(p.have),
                            seen_at=p.have.refreshed_at or p.have.updated_at, replaced_at=now,
                            replaced_by=p.merged.revision)
    _children(conn, [ids[p.ref] for p in [*new, *changed]], {ids[p.ref]: p.merged for p in plans})
    keys = dict(conn.execute(select(models.c.id, models.c.text_key)
                             .where(models.c.id.in_([p.have.id for p in plans if p.have]))).all())
    old = [_indexed(p.have.id, p.was, keys.get(p.have.id)) for p in plans if p.have and p.was]
    indexing.apply(conn, old, [_indexed(ids[p.ref], p.merged) for p in plans])


def _children(conn: Connection, model_ids: list[int], entries: dict[int, ModelEntry]) -> None:
    """Replace the link rows and evals of these models with their entries'."""
    if not model_ids:
        return
    for table in ("model_languages", "model_domains", "model_tags", "evals"):
        conn.execute(text(f"DELETE FROM {table} WHERE model_id IN (SELECT value FROM json_each(:ids))"),
                     {"ids": json.dumps(model_ids)})
    links = (("model_languages", "language", "languages"), ("model_domains", "domain", "domains"),
             ("model_tags", "tag", "tags"))
    for table, column, field in links:
        rows = [(i, v) for i in model_ids for v in getattr(entries[i], field)]
        if rows:
            conn.exec_driver_sql(f"INSERT INTO {table} (model_id, {column}) VALUES (?, ?)", rows)
    evals = [(i, e.benchmark, e.metric, e.value, e.source)
             for i in model_ids for e in {(x.benchmark, x.metric): x for x in entries[i].evals}.values()]
    if evals:
        conn.exec_driver_sql("INSERT INTO evals (model_id, benchmark, metric, value, source) "
                             "VALUES (?, ?, ?, ?, ?)", evals)
