"""Runs with several candidates and scores measured on jobs, as the catalog keeps them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from catalog.db import Catalog
from catalog.detail import model_detail
from catalog.evals import measured_for_model, measured_for_task, record_measured
from catalog.listing import records_for
from catalog.models import UnknownModelError, find_model, performances, upsert_model
from catalog.records import CandidateRun, MeasuredEvalRecord, ModelEntry
from catalog.runs import candidate_runs, finish_run, list_runs, record_candidates, start_run
from catalog.tables import Run


@pytest.fixture
def cat(home: Path):
    c = Catalog.at(home / "catalog.db")
    with c.sessions.begin() as s:
        for ref in ("acme/base", "acme/other"):
            upsert_model(s, ModelEntry(ref=ref, name=ref, source="local"))
    yield c
    c.close()


def test_a_run_keeps_its_candidates_price_and_phases(cat: Catalog) -> None:
    with cat.sessions.begin() as s:
        start_run(s, "r1", "fruits", "acme/base", "abc", "Test CPU x2")
        finish_run(s, "r1", status="ok", engine_starts=1, usd_per_hour=0.5, executor="local",
                   phases={"plan_s": 0.25, "generate_s": 2.0})
        record_candidates(s, "r1", [
            CandidateRun("base", "acme/base", revision="abc", inputs=10, generated=10,
                         output_tokens=40, generation_s=1.0, engine_start_s=20.0, engine_group=0),
            CandidateRun("base+lora", "acme/base", adapter="adapters/a", adapter_revision="lora:x",
                         inputs=10, generated=9, failed=1, output_tokens=36, generation_s=1.0,
                         engine_group=0),
        ])
    with cat.sessions() as s:
        (run,) = list_runs(s, "fruits")
        got = candidate_runs(s, "fruits")
    assert (run.engine_starts, run.usd_per_hour, run.executor) == (1, 0.5, "local")
    assert run.phases == {"plan_s": 0.25, "generate_s": 2.0}
    assert [(c.label, c.adapter, c.failed, c.run_id, c.usd_per_hour) for c in got] == [
        ("base", None, 0, "r1", 0.5), ("base+lora", "adapters/a", 1, "r1", 0.5)]


def test_recording_a_runs_candidates_again_replaces_them(cat: Catalog) -> None:
    with cat.sessions.begin() as s:
        start_run(s, "r1", "fruits", "acme/base", None)
        record_candidates(s, "r1", [CandidateRun("a", "acme/base"), CandidateRun("b", "acme/other")])
        record_candidates(s, "r1", [CandidateRun("a", "acme/base", generated=3)])
    with cat.sessions() as s:
        assert [(c.label, c.generated) for c in candidate_runs(s, "fruits")] == [("a", 3)]


def test_the_latest_measurement_of_a_model_on_a_task_stands(cat: Catalog) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with cat.sessions.begin() as s:
        record_measured(s, MeasuredEvalRecord("acme/base", "fruits", "exact", 0.5, 10, measured_at=t0))
        record_measured(s, MeasuredEvalRecord("acme/base", "fruits", "exact", 0.75, 20, ci_low=0.5,
                                              ci_high=0.9, measured_at=t0 + timedelta(days=1)))
        record_measured(s, MeasuredEvalRecord("acme/base", "fruits", "exact", 0.25, 20,
                                              adapter="adapters/a", measured_at=t0))
        record_measured(s, MeasuredEvalRecord("acme/other", "fruits", "exact", 0.9, 20, measured_at=t0))
    with cat.sessions() as s:
        base = find_model(s, "acme/base")
        assert base is not None
        mine = measured_for_model(s, base)
        board = measured_for_task(s, "fruits", "exact")
        detail = model_detail(s, base)
    assert [(m.adapter, m.value, m.n, m.ci_low) for m in mine] == [("", 0.75, 20, 0.5), ("adapters/a", 0.25, 20, None)]
    assert [(m.model_ref, m.adapter, m.value) for m in board] == [
        ("acme/other", "", 0.9), ("acme/base", "", 0.75), ("acme/base", "adapters/a", 0.25)]
    assert [m.value for m in detail.measured] == [0.75, 0.25]
    assert detail.evals == []  # card evals stay apart


def test_a_score_for_a_model_not_in_the_catalog_is_refused(cat: Catalog) -> None:
    with cat.sessions.begin() as s, pytest.raises(UnknownModelError):
        record_measured(s, MeasuredEvalRecord("nobody/none", "fruits", "exact", 1.0, 1))


def _run(s: Session, run_id: str, model_ref: str, at: datetime, **figures: object) -> None:
    start_run(s, run_id, "fruits", model_ref, None, "Test CPU x2")
    finish_run(s, run_id, status="ok", **figures)
    run = s.get(Run, run_id)
    assert run is not None
    run.started_at = at


def test_runs_of_several_models_measure_each_model_by_its_candidates(cat: Catalog) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with cat.sessions.begin() as s:
        _run(s, "r1", "acme/base", t0, generated=10, tokens_per_s=100.0, engine_start_s=20.0)
        # Two models in one run: no run-wide speed; each model's is its candidates'.
        _run(s, "r2", "acme/base", t0 + timedelta(hours=1), generated=20, tokens_per_s=None)
        record_candidates(s, "r2", [
            CandidateRun("base", "acme/base", generated=10, output_tokens=300, generation_s=1.0,
                         engine_start_s=15.0, engine_group=0),
            CandidateRun("base+lora", "acme/base", adapter="adapters/a", generated=10,
                         output_tokens=100, generation_s=1.0, engine_start_s=15.0, engine_group=0),
            CandidateRun("other", "acme/other", generated=10, output_tokens=50, generation_s=0.5,
                         engine_start_s=10.0, engine_group=1),
        ])
        # A later run that found everything of acme/base cached measured nothing.
        _run(s, "r3", "acme/base", t0 + timedelta(hours=2), generated=5, tokens_per_s=None)
        record_candidates(s, "r3", [
            CandidateRun("base", "acme/base", inputs=10, cached=10),
            CandidateRun("other", "acme/other", generated=5, output_tokens=80, generation_s=2.0,
                         engine_start_s=12.0, engine_group=0),
        ])
    with cat.sessions() as s:
        base, other = find_model(s, "acme/base"), find_model(s, "acme/other")
        assert base is not None and other is not None
        got = performances(s, [base.id, other.id])
        shown = model_detail(s, base).performance
        listed = {r.ref: r.performance for r in records_for(s, [base.id, other.id])}
    b, o = got[base.id], got[other.id]
    assert (b.runs, b.tokens_per_s, b.engine_start_s, b.hardware) == (2, 200.0, 15.0, "Test CPU x2")
    assert b.last_run_at == t0 + timedelta(hours=1)
    assert (o.runs, o.tokens_per_s, o.engine_start_s, o.last_run_at) == (2, 40.0, 12.0, t0 + timedelta(hours=2))
    assert shown == b and listed == {"acme/base": b, "acme/other": o}
