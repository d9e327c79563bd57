"""`almanac train`: a LoRA adapter of a base model, trained on a curated set, written into
the home and registered in the catalog with its lineage.

Steps, each timed: read the set (the files its card names) and filter it → resolve the
base → the training's key (set digest, filter, base identity, settings, form) → reuse
an adapter already trained on that key under the name, or train (resuming a checkpoint
of the same key) → save, install and register. Everything before training is answered
without torch, so reruns, dry runs and bad inputs cost well under a second.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.cache.index import Index
from batch.cache.lock import JobLock, JobLockedError
from batch.cache.store import PredictionStore
from batch.run.stopping import Stopped, shielded, stop_requested
from batch.train import adapter
from batch.train.base import BaseModel, resolve_base
from batch.train.dataset import read_curated, sources
from batch.train.errors import TrainError, TrainLockedError, TrainUnavailableError
from batch.train.examples import Examples, choose_form, filtered, to_examples
from batch.train.progress import TrainProgress
from batch.train.settings import FORMATS, TrainSettings, training_key
from catalog.db import Catalog
from catalog.models import find_model
from catalog.records import TrainingRecord, TrainingSource
from schemas.timings import StepTimings

if TYPE_CHECKING:  # the trainer imports torch: for annotations only
    from batch.train.trainer import Fitted


@dataclass(frozen=True)
class Places:
    """Where a training reads and writes, in the home: models, checkpoints, the cache
    (whose index remembers base models' weight fingerprints), locks."""

    models: Path
    checkpoints: Path
    predictions: Path
    locks: Path


@dataclass
class TrainRequest:
    base: str
    data: Path
    name: str
    settings: TrainSettings = field(default_factory=TrainSettings)
    where: str | None = None
    form: str = "auto"  # text, chat, or auto (batch.train.examples)
    retrain: bool = False  # train even if an adapter of these very inputs is there
    replace: bool = False  # NAME may hold another model: replace it
    dry_run: bool = False
    description: str | None = None


@dataclass
class TrainReport(StepTimings):
    """What `almanac train --json` prints."""

    name: str
    status: str  # trained, reused, planned
    key: str
    base: str
    base_identity: str
    form: str
    data: str
    data_digest: str
    train_rows: int
    validation_rows: int
    path: str | None = None
    where: str | None = None
    without_answer: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    resumed_from_step: int = 0
    train_loss: float | None = None
    eval_loss: float | None = None
    seconds: float | None = None  # training steps, this process
    examples_per_s: float | None = None
    peak_memory_bytes: int | None = None
    device: str | None = None
    dtype: str | None = None
    hardware: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, measured here

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StoppedTraining:
    """A training a signal stopped: where its checkpoint is, for the front door's line."""

    name: str
    step: int
    total: int
    checkpoint: Path | None


def train(catalog: Catalog, places: Places, request: TrainRequest,
          progress: TrainProgress | None = None) -> TrainReport:
    """Train (or reuse, or with `dry_run` only plan) the adapter `request` asks for. One
    training per name at a time: another one holding it is exit 75."""
    adapter.check_name(request.name)
    if request.form not in FORMATS:
        raise TrainError(f"--format: {request.form!r} is not one of {', '.join(FORMATS)}")
    if request.dry_run:
        return _train_or_reuse(catalog, places, request, progress)
    try:
        with JobLock(places.locks, "train-" + request.name.replace("/", "--")):
            return _train_or_reuse(catalog, places, request, progress)
    except JobLockedError:
        raise TrainLockedError(f"--name: {request.name} is being trained by another process; "
                               "nothing was written") from None


def _train_or_reuse(catalog: Catalog, places: Places, request: TrainRequest,
                    progress: TrainProgress | None) -> TrainReport:
    began = time.perf_counter()
    curated = read_curated(request.data)
    tables = filtered(curated, request.where)
    read_s = time.perf_counter() - began
    with _store(places.predictions, request.dry_run) as store, catalog.sessions.begin() as s:
        resolve_began = time.perf_counter()
        base = resolve_base(s, request.base, store, fetch=not request.dry_run)
        held = adapter.holder(s, request.name)
        resolve_s = time.perf_counter() - resolve_began
    form = choose_form(request.form, tables, has_chat_template=base.has_chat_template,
                       base=base.ref)
    examples = to_examples(tables, form)
    key = training_key(data_digest=curated.digest, where=request.where,
                       base_identity=base.identity, settings=request.settings, prompt_format=form)
    report = TrainReport(
        request.name, "planned", key, base.ref, base.identity, form, str(curated.directory),
        curated.digest, len(examples.train), len(examples.validation), where=request.where,
        without_answer=examples.without_answer, sources=sources(tables["train"]),
        settings=request.settings.to_json(), timings={"read": read_s, "resolve": resolve_s})
    if held is not None and held.training is not None and held.training.key == key \
            and held.intact() and not request.retrain:
        return _reused(report, held)
    if held is not None and not request.replace and not (
            held.training is not None and held.training.key == key):
        raise TrainError(f"--name: {request.name} is already taken by {held.describe()}; "
                         "--force replaces it")
    if request.dry_run:
        return report
    _train(catalog, places, request, base, examples, report, progress)
    return report


def _reused(report: TrainReport, held: adapter.Holder) -> TrainReport:
    t = held.training
    assert t is not None
    report.status, report.path = "reused", held.local_path
    report.steps, report.train_loss, report.eval_loss = t.steps, t.train_loss, t.eval_loss
    report.seconds, report.device, report.dtype, report.hardware = (t.seconds, t.device, t.dtype,
                                                                    t.hardware)
    return report


def _train(catalog: Catalog, places: Places, request: TrainRequest, base: BaseModel,
           examples: Examples, report: TrainReport, progress: TrainProgress | None) -> None:
    with report.timed("import"):
        try:
            from batch.train.trainer import fit
        except ImportError as exc:
            raise TrainUnavailableError(
                f"training needs torch, transformers, trl and peft ({exc.name} is missing): "
                "install Almanac with its cpu or gpu extra") from None
    work = places.checkpoints / report.key
    final = places.models / request.name
    scratch = adapter.scratch_dir(places.models, request.name)
    try:
        with adapter.disk_errors(f"training {request.name}"):
            places.models.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(scratch, ignore_errors=True)
            fitted = None
            try:
                with shielded():  # a stop ends the step under way, then saves a checkpoint
                    fitted = fit(base.path, examples, request.settings, work=work, out=scratch,
                                 base_name=base.repo_id or str(base.path), base_ref=base.ref,
                                 progress=progress)
                if fitted.stopped:  # a stop the shield did not raise (none was caught)
                    raise Stopped(stop_requested() or signal.SIGINT)
            except Stopped as stop:
                stop.result = StoppedTraining(request.name, fitted.steps, fitted.total_steps,
                                              fitted.checkpoint) if fitted else \
                    StoppedTraining(request.name, 0, 0, None)
                raise
            report.timings.update(fitted.timings)
            report.status, report.steps, report.resumed_from_step = ("trained", fitted.steps,
                                                                      fitted.resumed_from)
            report.train_loss, report.eval_loss = fitted.train_loss, fitted.eval_loss
            report.seconds = fitted.timings.get("steps")
            report.examples_per_s, report.peak_memory_bytes = (fitted.examples_per_s,
                                                               fitted.peak_memory_bytes)
            report.device, report.dtype, report.hardware = (fitted.device, fitted.dtype,
                                                            fitted.hardware)
            record = _record(report, base, fitted)
            description = request.description or _describe(request.name, base, record)
            with report.timed("register"):
                adapter.write_card(scratch, request.name, base.ref, description, record)
                entry = adapter.entry_for(scratch, request.name, base.ref, description,
                                          list(base.languages), _domains(catalog, record, base))
                adapter.install(catalog, scratch, final, entry, record)
        report.path = str(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)  # trained and registered: no checkpoint to resume


def _record(report: TrainReport, base: BaseModel, fitted: Fitted) -> TrainingRecord:
    return TrainingRecord(
        key=report.key, base_ref=base.ref, base_revision=base.revision, data_path=report.data,
        data_digest=report.data_digest, data_filter=report.where, train_rows=report.train_rows,
        validation_rows=report.validation_rows,
        sources=[TrainingSource(**s) for s in report.sources], settings=report.settings,
        train_loss=fitted.train_loss, eval_loss=fitted.eval_loss, steps=fitted.steps,
        epochs=fitted.epochs, seconds=fitted.timings.get("steps", 0.0), device=fitted.device,
        dtype=fitted.dtype, hardware=fitted.hardware, versions=fitted.versions,
        trained_at=datetime.now(UTC))


def _describe(name: str, base: BaseModel, record: TrainingRecord) -> str:
    s = record.settings
    made = (f"A LoRA adapter (rank {s['rank']} on {', '.join(s['targets'])}) of {base.ref}, "
            f"trained by Almanac on {record.train_rows:,} curated rows")
    return made + (f" distilled from {record.distilled_from}." if record.distilled_from else ".")


def _domains(catalog: Catalog, record: TrainingRecord, base: BaseModel) -> list[str]:
    """The teachers' domains (what it was taught), else its base's."""
    found: list[str] = []
    with catalog.sessions() as s:
        for src in record.sources:
            model = find_model(s, src.model) if src.model else None
            found += [d.domain for d in model.domains] if model is not None else []
    return list(dict.fromkeys(found)) or list(base.domains)


@contextmanager
def _store(predictions: Path, dry_run: bool) -> Iterator[PredictionStore]:
    """The cache's store, for the fingerprints of local weights; a dry run's writes none."""
    if dry_run:
        store = PredictionStore(predictions, Index.open_scratch(predictions))
    else:
        predictions.mkdir(parents=True, exist_ok=True)
        store = PredictionStore(predictions)
    try:
        yield store
    finally:
        store.close()
