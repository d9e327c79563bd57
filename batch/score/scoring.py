"""Scoring a job: every current candidate's latest prediction of every input row,
against the row's reference, into `predictions/scores.db`; then each candidate's
mean recorded in the catalog as a measured eval of its model (task = the job).

Only what changed is computed: a stored score whose scorer (metric, options,
reference template) and basis (the prediction's key, the rendered reference, the
judge's answer) are unchanged is kept. Nothing here starts an engine except a judge
with predictions it has not read before, through the normal runner.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from batch.cache.index import Located
from batch.cache.index_rows import CandidateSummary
from batch.cache.reader import Predictions
from batch.run.spec.errors import SpecError
from batch.score import judge as judging
from batch.score.metrics import Metric, make_metric
from batch.score.settings import Reference, RowError, ScoreSpec
from batch.score.stats import mean_interval
from batch.score.store import Score, ScoreStore
from catalog import evals
from catalog.models import UnknownModelError, find_model
from catalog.records import MeasuredEvalRecord, jsonable
from catalog.runs import candidate_runs

if TYPE_CHECKING:  # the runner (and through it the engine module) only for annotations
    from batch.run.result import RunResult
    from batch.run.runner import Runner
    from batch.run.spec.job import JobSpec
    from catalog.db import Catalog

log = logging.getLogger("almanac.batch")
CHUNK = 2000  # predictions read per lookup


@dataclass
class CandidateScore:
    label: str
    model: str
    adapter: str | None
    n: int  # rows scored
    errors: int  # rows that could not be scored
    score: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass
class ScoreReport:
    job: str
    metric: str
    scorer: str
    computed: int = 0  # scores computed by this scoring
    kept: int = 0  # scores still valid from an earlier one
    errors: int = 0
    candidates: list[CandidateScore] = field(default_factory=list)
    judge: RunResult | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("judge", "candidates")}
        out["candidates"] = [asdict(c) for c in self.candidates]
        out["judge"] = self.judge.to_json() if self.judge is not None else None
        return jsonable(out)


def check_score(spec: JobSpec, catalog: Catalog) -> ScoreSpec | None:
    """The job's [score], checked before any work: settings, and a judge in the catalog.
    Raises SpecError naming the file and the field."""
    settings = ScoreSpec.of(spec)
    if settings is not None and settings.judge is not None:
        with catalog.sessions() as s:
            if find_model(s, settings.judge.model) is None:
                raise SpecError(f"{spec.path}: score.judge.model: no model "
                                f"{settings.judge.model!r} in the catalog (see `almanac models list`)")
    return settings


def score_run(runner: Runner, spec: JobSpec, result: RunResult | None = None) -> ScoreReport | None:
    """Score `spec`'s cached predictions (after `result`, the run that just made them,
    if any). None when the job has no [score], or the run only planned."""
    settings = check_score(spec, runner.catalog)
    if settings is None or (result is not None and result.status == "planned"):
        return None
    report = ScoreReport(spec.name, settings.metric_name, settings.scorer)
    root = runner.store.root
    references = _References(spec, settings, runner)
    store = ScoreStore.open(root)
    try:
        stored = store.bases(spec.name)
        scores: list[Score] = []
        current: list[tuple[str, str]] = []
        with Predictions.at(root, spec.name) as predictions:
            summaries = predictions.candidates()
            pending = _score_rows(settings, predictions, summaries, references, stored, scores,
                                  current, report)
            if settings.judge is not None:
                report.judge = _judge(runner, spec, settings, references, pending, stored,
                                      scores, report)
        store.save(spec.name, settings.scorer, settings.metric_name, scores, current)
        values, errors = store.values(spec.name), store.error_counts(spec.name)
    finally:
        store.close()
    for s in summaries:
        estimate = mean_interval(values.get(s.label, []))
        report.candidates.append(CandidateScore(
            s.label, s.model, s.adapter, estimate.n, errors.get(s.label, 0), estimate.mean,
            estimate.low, estimate.high))
    report.errors = sum(errors.values())
    _record_measured(runner.catalog, spec.name, settings, summaries, report, result)
    return report


class _References:
    """Each input row's fields and rendered reference, by input id."""

    def __init__(self, spec: JobSpec, settings: ScoreSpec, runner: Runner) -> None:
        self.fields: dict[str, dict[str, Any] | None] = {}
        self.problems: dict[str, str] = {}
        for row in runner.input_rows(spec):  # a chain's rows too (the runner's Upstream)
            if row.id not in self.fields:  # a duplicate id is a failed row of its own
                self.fields[row.id] = row.fields
                if row.error is not None:
                    self.problems[row.id] = row.error
        self._reference = Reference(settings.reference) if settings.reference else None
        self._rendered: dict[str, tuple[str | None, str | None]] = {}

    def of(self, input_id: str) -> tuple[str | None, str | None]:
        """(the reference, None) or (None, why there is none); rendered once per row."""
        if input_id not in self._rendered:
            self._rendered[input_id] = self._render(input_id)
        return self._rendered[input_id]

    def _render(self, input_id: str) -> tuple[str | None, str | None]:
        fields = self.fields.get(input_id)
        if fields is None:
            return None, f"reference: the input row cannot be read: {self.problems.get(input_id, 'missing')}"
        if self._reference is None:
            return None, None
        try:
            return self._reference.render(fields), None
        except RowError as exc:
            return None, f"reference: {exc}"


def _basis(*parts: str | None) -> str:
    blob = "\x00".join("\x01" if p is None else p for p in parts)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _located(predictions: Predictions, label: str, ids: list[str]) -> dict[str, Located]:
    """Where each input's latest record of `label` is: the index alone, no shard read."""
    job = predictions.job
    return predictions.reader.query(lambda ix: ix.latest_for(job, label, ids), {})


def _score_rows(settings: ScoreSpec, predictions: Predictions, summaries: list[CandidateSummary],
                references: _References, stored: dict[tuple[str, str], tuple[str, str]],
                scores: list[Score], current: list[tuple[str, str]], report: ScoreReport,
                ) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """Score what a metric can score here; return what a judge still has to read. A
    stored score whose basis (key, reference) is unchanged is kept without reading the
    prediction: rescoring after a run reads only what the run changed."""
    metric: Metric | None = None if settings.judge else make_metric(settings)
    pending = []
    ids = list(references.fields)
    for s in summaries:
        for i in range(0, len(ids), CHUNK):
            unread = []
            for input_id, loc in _located(predictions, s.label, ids[i : i + CHUNK]).items():
                current.append((s.label, input_id))
                reference, problem = references.of(input_id)
                judged = metric is None and problem is None and not loc.failed
                if not judged and stored.get((s.label, input_id)) == (
                        settings.scorer, _basis(loc.key, reference, problem)):
                    report.kept += 1
                    continue
                unread.append(input_id)
            records = predictions.get_many(unread, candidate=s.label) if unread else {}
            for input_id in unread:
                record = records.get(input_id)
                if record is None:
                    continue  # gone since the lookup (a gc): not current any more
                reference, problem = references.of(input_id)
                if metric is None and problem is None and not record.get("error"):
                    pending.append((s.label, input_id, record, reference))
                    continue
                scores.append(_scored(s.label, input_id, record, reference, problem, metric))
                report.computed += 1
    return pending


def _scored(label: str, input_id: str, record: dict[str, Any], reference: str | None,
            problem: str | None, metric: Metric | None) -> Score:
    if problem is not None:
        value, error = None, problem
    elif record.get("error"):
        value, error = 0.0, f"prediction failed: {record['error']}"
    else:
        assert metric is not None
        try:
            value, error = metric(record.get("output") or "", reference), None
        except RowError as exc:
            value, error = None, f"reference: {exc}"
    return Score(label, input_id, record["key"], _basis(record["key"], reference, problem),
                 value, error)


def _judge(runner: Runner, spec: JobSpec, settings: ScoreSpec, references: _References,
           pending: list[tuple[str, str, dict[str, Any], str | None]],
           stored: dict[tuple[str, str], tuple[str, str]], scores: list[Score],
           report: ScoreReport) -> RunResult | None:
    assert settings.judge is not None
    if not pending:
        return None
    with judging.judge_rows() as rows:
        for label, input_id, record, reference in pending:
            rows.add(label, input_id, references.fields.get(input_id) or {}, record, reference)
        result, verdicts = judging.run_judge(runner, spec, settings.judge, rows)
    for label, input_id, record, reference in pending:
        v = verdicts[(label, input_id)]
        basis = _basis(record["key"], reference, None, v.key)
        if stored.get((label, input_id)) == (settings.scorer, basis):
            report.kept += 1
            continue
        scores.append(Score(label, input_id, record["key"], basis, v.value, v.error))
        report.computed += 1
    return result


def _record_measured(catalog: Catalog, job: str, settings: ScoreSpec,
                     summaries: list[CandidateSummary], report: ScoreReport,
                     result: RunResult | None) -> None:
    """Each candidate's mean as a measured eval of its model; a model gone from the
    catalog is skipped with a warning (its scores stay in scores.db)."""
    by_label = {s.label: s for s in summaries}
    with catalog.sessions.begin() as s:
        latest: dict[str, Any] = {}
        for run in candidate_runs(s, job):  # newest first
            latest.setdefault(run.label, run)
        for c in report.candidates:
            if not c.n or c.score is None:
                continue
            summary, run = by_label[c.label], latest.get(c.label)
            try:
                evals.record_measured(s, MeasuredEvalRecord(
                    model_ref=summary.model, task=job, metric=settings.metric_name,
                    value=c.score, n=c.n, adapter=summary.adapter or "",
                    adapter_revision=summary.adapter_revision, revision=summary.revision,
                    label=c.label, ci_low=c.ci_low, ci_high=c.ci_high,
                    hardware=run.hardware if run else None,
                    run_id=(result.run_id if result is not None and result.run_id else
                            run.run_id if run else None)))
            except UnknownModelError as exc:
                report.warnings.append(f"{c.label}: score not recorded in the catalog: {exc}")
                log.warning("%s: %s", job, report.warnings[-1])
