"""Catalog operations the front door calls: init, seeding, run bookkeeping."""

from __future__ import annotations

import platform
from dataclasses import asdict
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.records import ModelEntry, RunRecord
from catalog.seed import read_entries
from catalog.store import find_model, to_record, upsert_model, validate_entry
from catalog.tables import Run


def load_seed(session: Session, entries: list[ModelEntry] | None = None) -> dict[str, int]:
    """Add or refresh seed models; leaves models that came from elsewhere alone.
    Unchanged entries are not written at all, so a second `init` changes nothing."""
    counts = {"added": 0, "updated": 0, "unchanged": 0, "kept": 0}
    for entry in entries if entries is not None else read_entries():
        existing = find_model(session, entry.ref)
        if existing is not None and existing.source != "seed":
            counts["kept"] += 1
            continue
        if existing is not None and _same(session, existing, entry):
            counts["unchanged"] += 1
            continue
        upsert_model(session, entry)
        counts["updated" if existing is not None else "added"] += 1
    return counts


def _same(session: Session, model, entry: ModelEntry) -> bool:  # noqa: ANN001
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


def hardware() -> str:
    """A short description of where a run happened, for comparing throughput."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} x{os.cpu_count()}"


def start_run(session: Session, run_id: str, job: str, model_ref: str, revision: str | None) -> None:
    model = find_model(session, model_ref)
    session.add(
        Run(
            id=run_id, job=job, model_id=model.id if model else None, model_ref=model_ref,
            revision=revision, status="running", inputs=0, cached=0, copied=0, generated=0,
            failed=0, prompt_tokens=0, output_tokens=0, hardware=hardware(),
        )
    )


def finish_run(session: Session, run_id: str, *, status: str, **figures: object) -> None:
    run = session.get(Run, run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r}")
    run.status = status
    run.finished_at = datetime.now(timezone.utc)
    for name, value in figures.items():
        setattr(run, name, value)


def list_runs(session: Session, job: str | None = None, limit: int | None = 50) -> list[RunRecord]:
    stmt = select(Run).order_by(Run.started_at.desc())
    if job:
        stmt = stmt.where(Run.job == job)
    if limit:
        stmt = stmt.limit(limit)
    return [run_record(r) for r in session.scalars(stmt)]


def run_record(run: Run) -> RunRecord:
    return RunRecord(**{f: getattr(run, f) for f in RunRecord.__dataclass_fields__})
