"""`almanac demo`, step by step: train the fruit specialist once per home, register
it in the catalog like any local model, run the demo job through the same runner
as every other job, and set its answers beside the right ones.

The model is trained on the CPU in under a minute because nothing can be
downloaded where Almanac is tested.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from almanac.demo import DEMO_JOB
from almanac.demo.families import FRUIT_FAMILIES
from almanac.paths import Home
from batch.query import Predictions
from batch.run.inputs import read_rows
from batch.run.runner import Runner, RunResult, configure_logging
from batch.run.spec import JobSpec, load_spec
from catalog.db import Catalog
from catalog.models import upsert_model
from catalog.seed import load_seed

MODEL_DIR = "fruit-specialist"  # under the home's models/


def ensure_demo_model(home: Home) -> Path:
    """Train once per home; a crash mid-training leaves no half-written model."""
    from almanac.demo.training import train_demo_model

    dest = home.models / MODEL_DIR
    if (dest / "config.json").is_file():
        return dest
    tmp = home.models / f".{MODEL_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    train_demo_model(tmp)
    tmp.rename(dest)
    return dest


def register_demo_model(catalog: Catalog, path: Path, name: str) -> None:
    """Catalog the trained model under ``name``, the model the demo job asks for."""
    from catalog.localmodels import entry_from_directory

    entry = entry_from_directory(path, name=name)
    entry.name = "Fruit specialist (demo)"
    entry.domains = ["science"]
    entry.languages = ["en"]
    entry.description = ("A tiny Llama trained here in under a minute to name the botanical "
                         "fruit type of a fruit (drupe, pome, berry, …); Almanac's demo model.")
    with catalog.sessions.begin() as s:
        upsert_model(s, entry)


def run_demo(catalog: Catalog, home: Home, job_path: Path | None = None,
             preview_rows: int = 8
             ) -> tuple[RunResult, list[dict[str, Any]], tuple[int, int]]:
    """Run ``job_path`` (the demo job by default) with the fruit specialist in the
    catalog: the run's result, a sample of answers, and (right, total)."""
    configure_logging()
    with catalog.sessions.begin() as s:
        load_seed(s)
    demo_job = load_spec(DEMO_JOB)
    register_demo_model(catalog, ensure_demo_model(home), demo_job.model)
    spec = load_spec(job_path) if job_path else demo_job
    runner = Runner(catalog, home.predictions, home.locks)
    try:
        result = runner.run(spec)
    finally:
        runner.close()
    rows = answers(home, spec)
    right = sum(r["output"] == r["expected"] for r in rows)
    return result, spread(rows, preview_rows), (right, len(rows))


def answers(home: Home, spec: JobSpec) -> list[dict[str, Any]]:
    """Every input's cached prediction, next to the right answer."""
    fruits = {row.id: (row.fields or {}).get("fruit") for row in read_rows(spec.input)}
    with Predictions.at(home.predictions, spec.name) as predictions:
        found = predictions.get_many(list(fruits))
    return [{"input_id": input_id, "fruit": fruit,
             "output": ((found.get(input_id) or {}).get("output") or "").strip(),
             "expected": FRUIT_FAMILIES.get(fruit, "?")}
            for input_id, fruit in fruits.items()]


def spread(rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """A sample across the file: it is grouped by family."""
    return rows[:: max(1, len(rows) // count)][:count]
