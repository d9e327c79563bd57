"""`almanac demo`: a tiny fruit specialist, built here, run over the example job.

The model is trained on the CPU in under a minute (nothing can be
downloaded where Almanac is tested), registered in the catalog like any
local model, and run through the same runner as every other job.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from almanac.paths import Home
from batch.runner import RunResult, Runner, configure_logging
from batch.spec import load_spec
from catalog.db import Catalog
from catalog.ops import load_seed
from catalog.store import upsert_model

DEMO_MODEL = "almanac/fruit-specialist"
EXAMPLE_JOB = Path(__file__).resolve().parent.parent / "examples" / "fruits" / "job.toml"


def ensure_demo_model(home: Home) -> Path:
    """Train once per home; a crash mid-training leaves no half-written model."""
    from batch.tinymodel import train_demo_model

    dest = home.models / "fruit-specialist"
    if (dest / "config.json").is_file():
        return dest
    tmp = home.models / ".fruit-specialist.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    train_demo_model(tmp)
    tmp.rename(dest)
    return dest


def register_demo_model(catalog: Catalog, path: Path) -> None:
    from catalog.localmodels import entry_from_directory

    entry = entry_from_directory(path, name=DEMO_MODEL)
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
    configure_logging()
    with catalog.sessions.begin() as s:
        load_seed(s)
    register_demo_model(catalog, ensure_demo_model(home))
    spec = load_spec(job_path or EXAMPLE_JOB)
    runner = Runner(catalog, home.predictions, home.locks)
    try:
        result = runner.run(spec)
    finally:
        runner.close()
    return result, preview(home, spec.name, spec.input.path, preview_rows), \
        accuracy(home, spec.name, spec.input.path)


def preview(home: Home, job: str, input_path: Path, rows: int) -> list[dict[str, Any]]:
    """A few predictions read back from the Parquet dataset, next to the right answer."""
    from batch.tinymodel import FRUIT_FAMILIES

    table = ds.dataset(home.predictions / job, format="parquet").to_table(
        columns=["input_id", "output", "created_at"])
    latest: dict[str, str] = {}
    for rec in sorted(table.to_pylist(), key=lambda r: r["created_at"]):
        latest[rec["input_id"]] = rec["output"]
    fruits = {}
    with input_path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                fruits[str(row.get("id"))] = row.get("fruit")
    ids = list(fruits)
    step = max(1, len(ids) // rows)  # spread over the file: it is grouped by family
    out = []
    for input_id in ids[::step][:rows]:
        fruit = fruits[input_id]
        out.append({"input_id": input_id, "fruit": fruit,
                    "output": (latest.get(input_id) or "").strip(),
                    "expected": FRUIT_FAMILIES.get(fruit, "?")})
    return out


def accuracy(home: Home, job: str, input_path: Path) -> tuple[int, int]:
    """Correct answers over all rows, so the demo shows the specialist is right."""
    rows = preview(home, job, input_path, rows=10**9)
    return sum(r["output"] == r["expected"] for r in rows), len(rows)
