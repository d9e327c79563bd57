"""`almanac distill`: a cheaper specialist from a teacher's answers, measured.

    teach     run the teacher job (only what is missing) and score it
    curate    its answers that pass `--where`, split by a hash of each row's id
    train     a LoRA adapter of the student on the train split (`batch.train.train`)
    evaluate  a job over the validation split's rows alone, never trained on: the teacher,
              the student's base and the student, scored with the teacher job's [score]
    compare   the three side by side, and one line: the student against both

Every step is cached: the runs generate only missing rows, curate writes the same
files for the same answers, training reuses an adapter of the same inputs. The
evaluation rows are the validation split of all the teacher's answers, not only those
`--where` kept, so the teacher is measured on its misses too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.cache.reader import Predictions
from batch.data.curate import CurateReport, curate
from batch.run.spec.job import load_spec
from batch.score.compare import CandidateComparison, compare_job, usd_text
from batch.score.scoring import check_score, score_run
from batch.train import adapter
from batch.train.dataset import read_curated
from batch.train.errors import TrainError
from batch.train.evaljob import check_file_input, derive_job, job_name
from batch.train.progress import TrainProgress
from batch.train.settings import TrainSettings
from batch.train.train import Places, TrainReport, TrainRequest, train

if TYPE_CHECKING:  # the runner's types, for annotations
    from batch.run.result import RunResult
    from batch.run.runner import Runner


@dataclass
class DistillRequest:
    teacher_job: Path
    student: str
    name: str
    where: str | None = None
    split: float = 0.8
    teacher: str | None = None  # the teacher job's candidate, when it has several
    settings: TrainSettings = field(default_factory=TrainSettings)
    retrain: bool = False
    replace: bool = False


@dataclass
class DistillReport:
    """What `almanac distill --json` prints: each step's own report, then the comparison."""

    teacher_job: str
    teacher: str | None = None
    teacher_run: dict[str, Any] | None = None
    curate: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    eval_job: str | None = None
    eval_run: dict[str, Any] | None = None
    compare: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Distillation:
    """The steps of one distillation, in order; each keeps what the next needs."""

    def __init__(self, runner: Runner, places: Places, work: Path, request: DistillRequest, *,
                 say: Callable[[str], None] = lambda line: None,
                 progress: TrainProgress | None = None) -> None:
        self.runner, self.places, self.request = runner, places, request
        self.say, self.progress = say, progress
        self.spec = load_spec(request.teacher_job)
        self.report = DistillReport(str(self.spec.path))
        adapter.check_name(request.name)
        if not 0 < request.split < 1:
            raise TrainError(f"--split: {request.split:g} leaves no validation rows to measure "
                             "the student on (give a share below 1)")
        if check_score(self.spec, runner.catalog) is None:
            raise TrainError(f"{self.spec.path}: score: distill measures the student with the "
                             "job's [score], and the job has none")
        check_file_input(self.spec)
        several = len(self.spec.candidates) > 1 or self.spec.candidates[0].adapters_of
        if request.teacher is None and several:
            raise TrainError(f"{self.spec.path}: the job has several candidates: name the "
                             "teacher with --teacher LABEL")
        self.dir = work / job_name(request.name)
        self.teacher: str | None = None
        self.teacher_run: RunResult | None = None
        self.validation: list[str] = []
        self.trained: TrainReport | None = None
        self.entries: list[CandidateComparison] = []
        self.eval_name = job_name(self.spec.name, "distill", request.name)

    def teach(self) -> RunResult:
        result = self.runner.run(self.spec)
        labels = [c.label for c in result.candidates]
        self.teacher, self.teacher_run = self.request.teacher or labels[0], result
        if self.teacher not in labels:
            raise TrainError(f"--teacher: {self.teacher!r} is not a candidate of job "
                             f"{self.spec.name} (its candidates: {', '.join(labels)})")
        score_run(self.runner, self.spec, result)
        self.report.teacher, self.report.teacher_run = self.teacher, result.to_json()
        self.say(f"teacher: {self.spec.name}: {result.status}: {result.cached} cached, "
                 f"{result.copied} copied, {result.generated} generated, {result.failed} failed")
        return result

    def curate(self) -> CurateReport:
        """The training set (filtered) and, when filtered, the unfiltered split whose
        validation rows the student is measured on."""
        assert self.teacher is not None, "teach() first"
        r = self.request
        made = self._curate(self.dir / "data", r.where)
        if not made.split_rows.get("train"):
            counts = "; ".join(f"{step}: {n:,}" for step, n in made.counts)
            raise TrainError(f"--where {r.where!r}: no teacher rows left to train on ({counts})")
        split = self._curate(self.dir / "split", None) if r.where else made
        self.validation = read_curated(split.output).input_ids("validation") \
            if split.split_rows.get("validation") else []
        if not self.validation:
            raise TrainError(f"--split {r.split:g}: none of the teacher's rows lands in the "
                             "validation split: nothing to measure the student on")
        for line in made.warnings:
            self.say(f"license warning: {line}")
        self.report.curate = made.to_json()
        self.say(f"curated: {made.split_rows.get('train', 0):,} train, "
                 f"{made.split_rows.get('validation', 0):,} validation rows in {made.output}; "
                 f"measuring on {len(self.validation):,} validation rows")
        return made

    def _curate(self, output: Path, where: str | None) -> CurateReport:
        r = self.request
        command = f"almanac distill {self.spec.path} --student {r.student} --name {r.name}"
        return curate(self.places.predictions, self.spec.name, output, command=command,
                      where=where, split=r.split, candidate=self.teacher,
                      catalog=self.runner.catalog)

    def train(self) -> TrainReport:
        r = self.request
        request = TrainRequest(r.student, self.dir / "data", r.name, r.settings,
                               form="chat" if self.spec.chat else "text", retrain=r.retrain,
                               replace=r.replace)
        self.trained = train(self.runner.catalog, self.places, request, self.progress)
        self.report.train = self.trained.to_json()
        t = self.trained
        self.say(f"student: {t.name}: {t.status}" + (f" ({t.steps} steps)" if t.steps else ""))
        return t

    def evaluate(self) -> RunResult:
        assert self.trained is not None and self.teacher is not None, "train() first"
        assert self.teacher_run is not None
        teacher = next(c for c in self.teacher_run.candidates if c.label == self.teacher)
        entry: dict[str, Any] = {"model": teacher.model_ref, "label": teacher.label}
        if teacher.adapter:
            entry["adapter"] = teacher.adapter
        pinned = {c.model: c.revision for c in self.spec.candidates if c.model and c.revision}
        if revision := pinned.get(teacher.model_ref):
            entry["revision"] = revision
        student = self.trained.base
        base_label = student if student != teacher.label else f"{student} (base)"
        candidates = [entry, {"model": student, "label": base_label},
                      {"model": student, "adapter": self.request.name,
                       "label": f"{student}+{self.request.name}"}]
        path = derive_job(self.spec, self.dir, name=self.eval_name, candidates=candidates,
                          row_ids=self.validation)
        spec = load_spec(path)
        result = self.runner.run(spec)
        score_run(self.runner, spec, result)
        self.report.eval_job, self.report.eval_run = str(path), result.to_json()
        self.say(f"evaluation: {spec.name}: {result.status}: {result.cached} cached, "
                 f"{result.copied} copied, {result.generated} generated ({path})")
        return result

    def compare(self, *more_jobs: str) -> list[CandidateComparison]:
        """The evaluation job's comparison, and the summary line (costs measured in the
        teacher's job, or in `more_jobs`, when the evaluation copied every row)."""
        assert self.trained is not None and self.teacher is not None
        entries = self._compared(self.eval_name)
        costs = [e for job in (self.eval_name, self.spec.name, *more_jobs)
                 for e in (entries if job == self.eval_name else self._compared(job))]
        student = f"{self.trained.base}+{self.request.name}"
        self.entries, self.report.compare = entries, [e.to_json() for e in entries]
        self.report.summary = summary(entries, costs, teacher=self.teacher, student=student,
                                      base=self.trained.base)
        return entries

    def _compared(self, job: str) -> list[CandidateComparison]:
        with Predictions.at(self.places.predictions, job) as predictions:
            return compare_job(self.runner.catalog.sessions, predictions)

    def run(self) -> DistillReport:
        self.teach()
        self.curate()
        self.train()
        self.evaluate()
        self.compare()
        return self.report


def summary(entries: list[CandidateComparison], costs: list[CandidateComparison], *,
            teacher: str, student: str, base: str) -> str:
    """One line: the student's score (95% CI) against the teacher's and the base's, and its
    cost per 1,000 rows against the teacher's."""
    by_label = {e.label: e for e in entries}
    s, t = by_label.get(student), by_label.get(teacher)
    b = by_label.get(base) or by_label.get(f"{base} (base)")
    if s is None or t is None:
        return "no comparison: the evaluation job has no student or teacher rows"
    line = (f"{student}: {_score(s)} on {s.n:,} validation rows, against teacher {teacher} "
            f"{_score(t)}" + (f" and base {base} {_score(b)}" if b is not None else ""))
    student_cost, teacher_cost = _cost(s, costs), _cost(t, costs)
    if student_cost is None or teacher_cost is None:
        return line + "; cost unknown (state a price: [cost] usd_per_hour in the teacher job)"
    line += (f"; USD {usd_text(student_cost)} per 1k rows against the teacher's "
             f"{usd_text(teacher_cost)}")
    return line


def _score(e: CandidateComparison) -> str:
    if e.score is None:
        return "(not scored)"
    ci = f" (95% CI [{e.ci_low:.3f}, {e.ci_high:.3f}])" if e.ci_low is not None \
        and e.ci_high is not None else ""
    return f"{e.score:.3f}{ci}"


def _cost(entry: CandidateComparison, costs: list[CandidateComparison]) -> float | None:
    """The candidate's measured cost per 1k rows, in whichever job measured it."""
    same = [c for c in costs if (c.model, c.adapter or None) == (entry.model, entry.adapter or None)]
    return next((c.cost_per_1k for c in [entry, *same] if c.cost_per_1k is not None), None)
