"""Candidates side by side: quality (mean score with its interval) against speed and
cost, from the scores store, the cache's candidate counts and the catalog's runs.

`build_comparison` is the arithmetic over plain records; `compare_job` gathers them
for one job of a home.

Cost: the price the user states for the hardware (`[cost] usd_per_hour`, recorded
with each run, or a flag that overrides it) times the engine-seconds a candidate
spent per generated row: its share of the engine's generation time over every run
of the job. The engine start is shown apart: at scale it is paid once per run, not
per row. A candidate with no generation measured, or no price, has no cost: unknown
stays empty, never invented.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from batch.score.stats import mean_interval, pareto_front
from batch.score.store import ScoreStore
from catalog.history import revision_statuses
from catalog.models import find_model
from catalog.records import CandidateRun, jsonable
from catalog.runs import candidate_runs

# The highest price per hour a comparison takes (far above any machine): keeps every cost
# finite. The CLI's --usd-per-hour and the HTTP API's usd_per_hour are held to it.
MAX_USD_PER_HOUR = 1_000_000.0

if TYPE_CHECKING:  # SQLAlchemy's session types, for annotations only
    from sqlalchemy.orm import Session, sessionmaker

    from batch.cache.reader import Predictions


def usd_text(usd: float | None) -> str:
    """A cost for people: cents from a dollar up, three significant digits below, in
    plain positional notation (0.000123, never 0.0000 nor 1.23e-04): a small model's cost
    per 1,000 rows is a fraction of a cent, and must not read as free. JSON keeps the
    full float."""
    if usd is None:
        return ""
    if usd >= 1 or usd <= 0 or not math.isfinite(usd):
        return f"{usd:,.2f}"
    decimals = 2 - math.floor(math.log10(usd))
    text = f"{usd:.{decimals}f}"
    # Rounding may carry into one more digit (0.09996 -> 0.1000): keep three.
    return f"{float(text):.{decimals - 1}f}" if float(text) >= 10 ** -(decimals - 3) else text


@dataclass(frozen=True)
class CandidateFacts:
    """What the cache knows of one of a job's current candidates."""

    label: str
    model: str
    adapter: str | None = None
    revision: str | None = None
    rows: int = 0
    failures: int = 0


@dataclass
class CandidateComparison:
    label: str
    model: str
    adapter: str | None
    revision: str | None
    rows: int  # inputs with a cached prediction
    failures: int  # of those, failed predictions
    n: int  # rows scored (the mean's sample)
    errors: int  # rows that could not be scored (their reference failed)
    score: float | None
    ci_low: float | None
    ci_high: float | None
    metric: str | None
    generated: int  # rows this candidate generated over the job's runs
    tokens_per_s: float | None  # output tokens per engine-second of this candidate
    engine_start_s: float | None  # of the latest run that generated this candidate's rows
    engine_s: float | None  # engine-seconds spent generating this candidate's rows
    parameters: int | None
    usd_per_hour: float | None
    cost_per_1k: float | None  # USD per 1,000 rows generated
    pareto: bool | None = None  # on the quality/cost front; None when score or cost is unknown
    # Predictions made on a revision the catalog has since replaced: False; None when it cannot tell.
    revision_current: bool | None = None
    current_revision: str | None = None

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass(frozen=True)
class _Speed:
    generated: int = 0
    output_tokens: int = 0
    engine_s: float = 0.0
    engine_start_s: float | None = None
    priced_s: float = 0.0  # engine-seconds of runs with a price ...
    usd: float = 0.0  # ... and what they cost
    unpriced: bool = False  # some generating run had no price
    price: float | None = None  # the one price every priced run stated, if they agree


def _speed(runs: Sequence[CandidateRun]) -> _Speed:
    """The runs (newest first) that generated rows for one candidate, summed."""
    generating = [r for r in runs if r.generated and r.generation_s]
    if not generating:
        return _Speed()
    start = next((r.engine_start_s for r in generating if r.engine_start_s), None)
    priced = [r for r in generating if r.usd_per_hour is not None]
    return _Speed(
        generated=sum(r.generated for r in generating),
        output_tokens=sum(r.output_tokens for r in generating),
        engine_s=sum(r.generation_s or 0.0 for r in generating),
        engine_start_s=start,
        priced_s=sum(r.generation_s or 0.0 for r in priced),
        usd=sum((r.generation_s or 0.0) * (r.usd_per_hour or 0.0) / 3600 for r in priced),
        unpriced=len(priced) < len(generating),
        price=priced[0].usd_per_hour if len({r.usd_per_hour for r in priced}) == 1 else None,
    )


def _cost_per_1k(speed: _Speed, usd_per_hour: float | None) -> tuple[float | None, float | None]:
    """(USD per 1,000 rows, the price per hour it used) or (None, None)."""
    if not speed.generated or not speed.engine_s:
        return None, None
    if usd_per_hour is not None:
        return usd_per_hour * speed.engine_s / 3600 / speed.generated * 1000, usd_per_hour
    if speed.unpriced:
        return None, None
    # One stated price is shown as stated, not as usd / seconds * 3600 with its rounding.
    price = speed.price if speed.price is not None else speed.usd / speed.priced_s * 3600
    return speed.usd / speed.generated * 1000, price


def _same(run: CandidateRun, facts: CandidateFacts) -> bool:
    return (run.label, run.model_ref, run.adapter or None) == (facts.label, facts.model, facts.adapter or None)


def build_comparison(candidates: Sequence[CandidateFacts], values: dict[str, list[float]],
                     errors: dict[str, int], runs: Sequence[CandidateRun],
                     parameters: dict[str, int | None], metric: str | None,
                     usd_per_hour: float | None = None) -> list[CandidateComparison]:
    """One entry per candidate, best score first (unscored last, then by label), with the
    quality/cost Pareto front marked. `values`: each candidate's scored values; `runs`:
    the job's candidate runs, newest first; `parameters`: by model reference;
    `usd_per_hour`: a price that overrides what the runs recorded."""
    out = []
    for facts in candidates:
        estimate = mean_interval(values.get(facts.label, []))
        speed = _speed([r for r in runs if _same(r, facts)])
        cost, price = _cost_per_1k(speed, usd_per_hour)
        out.append(CandidateComparison(
            label=facts.label, model=facts.model, adapter=facts.adapter, revision=facts.revision,
            rows=facts.rows, failures=facts.failures, n=estimate.n,
            errors=errors.get(facts.label, 0), score=estimate.mean, ci_low=estimate.low,
            ci_high=estimate.high, metric=metric,
            generated=speed.generated,
            tokens_per_s=speed.output_tokens / speed.engine_s if speed.engine_s else None,
            engine_start_s=speed.engine_start_s,
            engine_s=speed.engine_s if speed.generated else None,
            parameters=parameters.get(facts.model), usd_per_hour=price, cost_per_1k=cost,
        ))
    for entry, on_front in zip(out, pareto_front([(e.score, e.cost_per_1k) for e in out]), strict=True):
        entry.pareto = on_front
    out.sort(key=lambda e: (e.score is None, -(e.score or 0.0), e.label))
    return out


def compare_job(sessions: sessionmaker[Session], predictions: Predictions,
                usd_per_hour: float | None = None) -> list[CandidateComparison]:
    """The comparison of one job's current candidates: their counts from the cache, their
    scores from `scores.db` beside it, their runs and sizes from the catalog."""
    facts = [CandidateFacts(c.label, c.model, c.adapter, c.revision, c.rows, c.failed)
             for c in predictions.candidates()]
    values: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    metric = None
    store = ScoreStore.open_readonly(predictions.reader.root)
    if store is not None:
        with store:
            scoring = store.scoring(predictions.job)
            if scoring is not None:
                metric = scoring.metric
                values, errors = store.values(predictions.job), store.error_counts(predictions.job)
    with sessions() as s:
        runs = candidate_runs(s, predictions.job)
        parameters = {}
        for model_ref in {f.model for f in facts}:
            model = find_model(s, model_ref)
            parameters[model_ref] = model.parameters if model is not None else None
        revisions = revision_statuses(s, [(f.model, f.revision) for f in facts])
    entries = build_comparison(facts, values, errors, runs, parameters, metric, usd_per_hour)
    for entry in entries:
        status = revisions[(entry.model, entry.revision)]
        entry.revision_current, entry.current_revision = status.is_current, status.current_revision
    return entries
