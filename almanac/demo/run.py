"""`almanac demo`, step by step: train the demo's models once per home (the fruit
specialist and a generalist), distil a LoRA student of the generalist from the
specialist's answers (`almanac distill`'s steps: the teacher's job, curate, `almanac
train`), register them in the catalog like any model, run the demo job's three
candidates through the same runner as every other job, score them against the right
answers, and compare; then the student on the fruits it never trained on.

The models are trained on the CPU in about a minute and a half in all, because
nothing can be downloaded where Almanac is tested.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from almanac.demo import DEMO_JOB
from almanac.demo.families import FRUIT_FAMILIES
from almanac.paths import Home
from batch.query import Predictions
from batch.run.inputs import read_rows
from batch.run.runner import Runner, RunResult, configure_logging
from batch.run.spec.job import JobSpec, load_spec
from batch.run.stopping import catch_stops
from catalog.db import Catalog
from catalog.models import upsert_model
from catalog.seed import load_seed

if TYPE_CHECKING:  # the scoring room loads with the run, not with `almanac --help`
    from batch.score.compare import CandidateComparison
    from batch.score.scoring import ScoreReport
    from batch.train.distill import DistillReport

SPECIALIST, GENERALIST, LORA = "almanac/fruit-specialist", "almanac/tiny-generalist", \
    "almanac/fruit-lora"
MODEL_DIR = "fruit-specialist"  # under the home's models/
GENERALIST_DIR = "tiny-generalist"


@dataclass
class DemoOutcome:
    """What `almanac demo` shows: the run, a sample of answers, how many each candidate
    got right, its scores and the comparison."""

    result: RunResult
    preview: list[dict[str, Any]]
    accuracy: dict[str, tuple[int, int]]  # candidate label -> (right, total)
    score: ScoreReport | None = None
    comparison: list[CandidateComparison] = field(default_factory=list)
    distill: DistillReport | None = None  # the student on the fruits it never trained on


def _once(dest: Path, marker: str, train: Callable[[Path], Path]) -> Path:
    """Train into `dest` once per home; a crash mid-training leaves nothing half-written."""
    if (dest / marker).is_file():
        return dest
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    train(tmp)
    tmp.rename(dest)
    return dest


def ensure_demo_model(home: Home) -> Path:
    """The fruit specialist, trained once per home."""
    from almanac.demo.training import train_demo_model

    return _once(home.models / MODEL_DIR, "config.json", train_demo_model)


def ensure_demo_models(home: Home) -> dict[str, Path]:
    """The specialist and the generalist: {ref: directory}. The generalist's LoRA student
    is distilled later, from the specialist's answers (almanac.demo.student)."""
    from almanac.demo.training import train_demo_model

    generalist = _once(home.models / GENERALIST_DIR, "config.json",
                       lambda d: train_demo_model(d, generalist=True))
    return {SPECIALIST: ensure_demo_model(home), GENERALIST: generalist}


def register_demo_model(catalog: Catalog, path: Path, name: str) -> None:
    """Catalog the trained specialist under ``name``, the model the demo job asks for."""
    register_demo_models(catalog, {name: path})


_ABOUT = {
    SPECIALIST: ("Fruit specialist (demo)", ["science"],
                 "A tiny Llama trained here in under a minute to name the botanical fruit type "
                 "of a fruit (drupe, pome, berry, …); Almanac's demo model."),
    GENERALIST: ("Tiny generalist (demo)", ["general"],
                 "The demo's tiny Llama trained for fewer steps on two tasks (fruit types and "
                 "colours): it knows the fruits, and errs on their types."),
}


def register_demo_models(catalog: Catalog, paths: dict[str, Path]) -> None:
    """Catalog the demo's models as local models."""
    from catalog.localmodels import entry_from_directory

    with catalog.sessions.begin() as s:
        for ref, path in paths.items():
            entry = entry_from_directory(path, name=ref)
            name, domains, description = _ABOUT.get(ref, (ref, ["general"], ""))
            entry.name, entry.domains, entry.languages = name, domains, ["en"]
            entry.description = description or entry.description
            upsert_model(s, entry)


def run_demo(catalog: Catalog, home: Home, job_path: Path | None = None,
             preview_rows: int = 8) -> DemoOutcome:
    """Run ``job_path`` (the demo job by default) with the demo's models in the
    catalog; score it (if it has [score]) and compare its candidates."""
    from almanac.demo.student import distillation
    from batch.data.chains import UpstreamReader
    from batch.score.compare import compare_job
    from batch.score.scoring import score_run

    configure_logging()
    with catalog.sessions.begin() as s:
        load_seed(s)
    register_demo_models(catalog, ensure_demo_models(home))
    spec = load_spec(job_path) if job_path else load_spec(DEMO_JOB)
    # A job of the user's may read another job's predictions (a chain), as with `run`.
    runner = Runner(catalog, home.predictions, home.locks,
                    upstream=UpstreamReader(home.predictions))
    try:
        with catch_stops():  # a stop while the student trains keeps a checkpoint
            # The student first: the demo job compares it (`adapters_of` the generalist).
            student = distillation(runner, home, specialist=SPECIALIST, generalist=GENERALIST,
                                   name=LORA)
            student.teach()
            student.curate()
            student.train()
            result = runner.run(spec)
            report = score_run(runner, spec, result)
            if job_path is None:
                # The fruits the student never saw, every one in the demo job's cache now.
                student.evaluate()
                student.compare(spec.name)
    finally:
        runner.close()
    preview, accuracy = answers(home, spec, preview_rows)
    with Predictions.at(home.predictions, spec.name) as predictions:
        comparison = compare_job(catalog.sessions, predictions, spec.usd_per_hour)
    return DemoOutcome(result, preview, accuracy, report, comparison,
                       student.report if job_path is None else None)


def answers(home: Home, spec: JobSpec, count: int = 8
            ) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int]]]:
    """A sample of inputs with each candidate's answer beside the right one, and how
    many each candidate got right of all."""
    rows = {row.id: row.fields or {} for row in read_rows(spec.input)}
    expected = {i: f.get("family") or FRUIT_FAMILIES.get(f.get("fruit", ""), "?")
                for i, f in rows.items()}
    outputs: dict[str, dict[str, str]] = {}
    with Predictions.at(home.predictions, spec.name) as predictions:
        for label in predictions.select():
            found = predictions.get_many(list(rows), candidate=label)
            outputs[label] = {i: ((found.get(i) or {}).get("output") or "").strip() for i in rows}
    accuracy = {label: (sum(got[i] == expected[i] for i in rows), len(rows))
                for label, got in outputs.items()}
    preview = [{"input_id": i, "fruit": rows[i].get("fruit"), "expected": expected[i],
                "answers": {label: got[i] for label, got in outputs.items()}}
               for i in spread(list(rows), count)]
    return preview, accuracy


def spread(items: list[str], count: int) -> list[str]:
    """A sample across the file: it is grouped by family."""
    return items[:: max(1, len(items) // count)][:count]
