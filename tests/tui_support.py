"""A deterministic Almanac home for TUI tests, snapshots and the README captures.

The seed catalog, plus runs and cached predictions written through the real
`catalog.runs` and `batch.cache.store.ShardWriter` with fixed ids, times and
figures: what the screens show then depends on nothing but this file.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from almanac.paths import Home
from batch.cache.store import PredictionStore, ShardWriter
from catalog import runs as run_log
from catalog.db import Catalog
from catalog.seed import load_seed
from catalog.tables import Run

if TYPE_CHECKING:  # textual loads with the app, in the tests that start one
    from tui.app import AlmanacApp

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
HARDWARE = "Test CPU x2"
SQL = "defog/sqlcoder-7b-2"
POLISH = "eryk-mazus/polka-1.1b"
LAW = "Equall/Saul-7B-Instruct-v1"

CITIES = [("Warszawa", "Warsaw"), ("Kraków", "Cracow"), ("Gdańsk", "Danzig"),
          ("Wrocław", "Breslau"), ("Poznań", "Posen"), ("Łódź", "Lodz")]
TABLES = ["orders", "customers", "invoices", "payments", "products", "shipments", "returns",
          "suppliers", "employees", "regions", "stores", "refunds"]


def _record(job: str, run_id: str, i: int, model: str, prompt: str, output: str | None,
            error: str | None = None) -> dict:
    params = {"max_tokens": 32, "seed": 0, "temperature": 0.0}
    return {
        "key": hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest(),
        "job": job, "input_id": f"{job[:3]}-{i:03d}", "model": model,
        "revision": "rev-" + hashlib.sha256(model.encode()).hexdigest()[:12], "adapter": None,
        "prompt": prompt, "output": output, "finish_reason": None if error else "stop",
        "prompt_tokens": 12 + i % 7, "output_tokens": None if error else 5 + i % 4,
        "run_id": run_id, "created_at": T0 + timedelta(minutes=i), "error": error,
        "outputs": None, "logprobs": None, "params": json.dumps(params, sort_keys=True),
    }


def _jobs() -> dict[str, tuple[str, str, list[dict]]]:
    sql_run, pl_run = "run0000000000000000000000000sql1", "run00000000000000000000000000pl1"
    sql = [_record("text-to-sql", sql_run, i, SQL,
                   f"-- Count the rows of {t} per month\nSELECT",
                   f" date_trunc('month', created_at) AS month, count(*) FROM {t} GROUP BY 1")
           for i, t in enumerate(TABLES)]
    sql.append(_record("text-to-sql", sql_run, len(TABLES), SQL, "-- " + "very long " * 60,
                       None, error="prompt is 612 tokens; the model's context "
                                   "(max_model_len) is 512"))
    polish = [_record("polish-cities", pl_run, i, POLISH,
                      f"Podaj niemiecką nazwę miasta {pl}:", f" {de}")
              for i, (pl, de) in enumerate(CITIES)]
    return {"text-to-sql": (sql_run, SQL, sql), "polish-cities": (pl_run, POLISH, polish)}


def build_home(root: Path) -> Path:
    """Write the fixed home under `root` and return it."""
    catalog = Catalog.at(root / "catalog.db")
    with catalog.sessions.begin() as s:
        load_seed(s)
    store = PredictionStore(root / "predictions")
    runs = []
    for n, (job, (run_id, model, records)) in enumerate(sorted(_jobs().items())):
        with ShardWriter(store, job, run_id, shard_rows=100, row_group_rows=100) as writer:
            for record in records:
                writer.add(record)
        failed = sum(r["error"] is not None for r in records)
        out = sum(r["output_tokens"] or 0 for r in records)
        runs.append((run_id, job, model, T0 + timedelta(hours=n), 42.0 + n * 7,
                     "failed_rows" if failed else "ok",
                     dict(inputs=len(records), generated=len(records) - failed, failed=failed,
                          prompt_tokens=sum(r["prompt_tokens"] for r in records),
                          output_tokens=out, engine_start_s=18.5, generation_s=out / 40.0,
                          tokens_per_s=40.0 + n * 12.5)))
    # A second, fully cached run of one job, and one that failed before generating.
    runs.append(("run0000000000000000000000000sql2", "text-to-sql", SQL,
                 T0 + timedelta(days=1), 1.5, "ok",
                 dict(inputs=13, cached=13, prompt_tokens=0, output_tokens=0)))
    runs.append(("run0000000000000000000000000law1", "contract-clauses", LAW,
                 T0 + timedelta(days=1, hours=2), 3.2, "error",
                 dict(inputs=40, error="FileNotFoundError: clauses.jsonl: no such file")))
    with catalog.sessions.begin() as s:
        for run_id, job, model, started, seconds, status, figures in runs:
            run_log.start_run(s, run_id, job, model, None)
            s.flush()
            run_log.finish_run(s, run_id, status=status, **figures)
            run = s.get(Run, run_id)
            run.started_at, run.finished_at = started, started + timedelta(seconds=seconds)
            run.hardware = HARDWARE
    store.close()
    catalog.close()
    return root


def tui_app(home: Path, **options: str | None) -> AlmanacApp:
    """The TUI over the home at `home`, its paths found as `almanac tui` finds them."""
    from tui.app import make_app

    layout = Home(Path(home))
    return make_app(layout.catalog_db, layout.predictions, **options)
