"""`models discover` and `models refresh`: the Hub read in batches, each batch written in a
transaction of its own.

Both are safe to repeat and to interrupt: a batch is written whole or not at all, a model
already in the catalog is refreshed rather than duplicated, and a refresh picks the models
the Hub described longest ago first, so one stopped halfway resumes where it stopped. A
model the Hub refuses or garbles is reported and skipped; when the Hub cannot be asked at
all (offline, out of reach), what was read before is written, then the error stops the run.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import or_, select

from catalog import hubapi
from catalog.hub import entry_from_model_info
from catalog.hubapi import Refusal
from catalog.hubhttp import HubError, HubHTTP, Sleep, library_calls
from catalog.hubquery import DiscoverQuery
from catalog.importer import Outcome, import_entries
from catalog.records import ModelEntry
from catalog.tables import Model

if TYPE_CHECKING:  # the client comes from the caller (the CLI honours HF_ENDPOINT, HF_TOKEN)
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import ModelInfo
    from sqlalchemy.orm import Session

    from catalog.db import Catalog

log = logging.getLogger(__name__)
DISCOVER_BATCH = 500
REFRESH_BATCH = 50
# Sources a refresh asks the Hub about: a cached or local model is what is on disk.
REFRESHED_SOURCES = ("hub", "seed")

T = TypeVar("T")
Progress = Callable[[int], None]


@dataclass
class Report:
    """What a discovery or refresh did, model by model."""

    outcomes: list[Outcome] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    dry_run: bool = False

    def count(self, action: str) -> int:
        return sum(o.action == action for o in self.outcomes)

    @property
    def moved(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.previous_revision]

    def absorb(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.action == "refused":
                self.refused.append(Refusal(outcome.ref, outcome.reason or "refused"))
            else:
                self.outcomes.append(outcome)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            **{action: self.count(action) for action in ("added", "updated", "unchanged")},
            "revisions_moved": len(self.moved),
            "refused": [r.to_json() for r in self.refused],
            "models": [o.to_json() for o in self.outcomes],
        }


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _entry(info: ModelInfo, card: str = "", config: dict[str, Any] | None = None) -> ModelEntry | Refusal:
    try:
        return entry_from_model_info(info, card_text=card, config=config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # odd metadata the schema let through
        return Refusal(info.id, f"{info.id}: unreadable metadata on the Hub: {exc}")


def _write(catalog: Catalog, report: Report, entries: list[ModelEntry | Refusal],
           dry_run: bool) -> None:
    report.refused += [e for e in entries if isinstance(e, Refusal)]
    good = [e for e in entries if isinstance(e, ModelEntry)]
    # The write lock first: a second discovery of the same models waits, then refreshes.
    with catalog.writing() as session:
        report.absorb(import_entries(session, good, now=datetime.now(UTC), dry_run=dry_run))


def discover(catalog: Catalog, api: HfApi, query: DiscoverQuery, *,
             dry_run: bool = False, batch: int = DISCOVER_BATCH, progress: Progress | None = None,
             sleep: Sleep = time.sleep) -> Report:
    """List what the Hub has for `query` and add or refresh each model, a batch at a time."""
    report = Report(dry_run=dry_run)
    pending: list[ModelEntry | Refusal] = []

    def flush() -> None:
        _write(catalog, report, pending, dry_run)
        pending.clear()
        if progress:
            progress(len(report.outcomes) + len(report.refused))

    with library_calls():
        http = HubHTTP(api, sleep=sleep)
        try:
            for found in hubapi.list_models(http, query):
                pending.append(found if isinstance(found, Refusal) else _entry(hubapi.with_lineage(http, found)))
                if len(pending) >= batch:
                    flush()
        except HubError:
            if pending:
                flush()  # what was read before the Hub went out of reach stays
            raise
        if pending:
            flush()
    return report


@dataclass(frozen=True)
class _Due:
    ref: str
    repo_id: str
    revision: str | None
    has_card: bool
    context_length: int | None


def due(session: Session, *, older_than: timedelta | None = None, refs: Iterable[str] = (),
        limit: int | None = None, now: datetime | None = None) -> list[_Due]:
    """Catalog models the Hub should describe again, the longest unasked first."""
    stmt = select(Model.ref, Model.repo_id, Model.revision, Model.card != "", Model.context_length).where(
        Model.repo_id.is_not(None), Model.source.in_(REFRESHED_SOURCES))
    if wanted := list(refs):
        stmt = stmt.where(or_(Model.ref.in_(wanted), Model.repo_id.in_(wanted)))
    if older_than is not None:
        cutoff = (now or datetime.now(UTC)) - older_than
        stmt = stmt.where(or_(Model.refreshed_at.is_(None), Model.refreshed_at < cutoff))
    stmt = stmt.order_by(Model.refreshed_at.is_not(None), Model.refreshed_at, Model.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_Due(*row) for row in session.execute(stmt)]


def refresh(catalog: Catalog, api: HfApi, *, older_than: timedelta | None = None,
            refs: Iterable[str] = (), limit: int | None = None, dry_run: bool = False,
            batch: int = REFRESH_BATCH, progress: Progress | None = None,
            sleep: Sleep = time.sleep) -> Report:
    """Ask the Hub again about catalog models: revisions, downloads, likes, gating, card
    evals. A model whose revision moved gets its new card, and keeps the old revision's
    facts in its history."""
    with catalog.sessions() as session:
        todo = due(session, older_than=older_than, refs=refs, limit=limit)
    report = Report(dry_run=dry_run)
    with library_calls():
        http = HubHTTP(api, sleep=sleep)
        for chunk in _batches(todo, batch):
            entries: list[ModelEntry | Refusal] = []
            try:
                for model in chunk:
                    entries.append(_refreshed(http, model))
            except HubError:
                if entries:  # what the Hub described before it went out of reach stays
                    _write(catalog, report, entries, dry_run)
                raise
            _write(catalog, report, entries, dry_run)
            if progress:
                progress(len(report.outcomes) + len(report.refused))
    return report


def _refreshed(http: HubHTTP, model: _Due) -> ModelEntry | Refusal:
    info = hubapi.described(http, model.repo_id)
    if isinstance(info, Refusal):
        return info
    moved = info.sha != model.revision
    # Once per revision: the card and config.json of a revision already read are not asked again.
    text, config = hubapi.extras(http, info, want_card=moved or not model.has_card,
                                 want_config=moved or model.context_length is None)
    entry = _entry(info, text, config)
    if isinstance(entry, ModelEntry):
        entry.ref = model.ref  # a seed model's reference is its repo id, a Hub one's too
    return entry
