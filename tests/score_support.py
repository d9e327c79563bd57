"""A home with a job of several candidates, written without an engine: the catalog's
models and runs (with each candidate's share and the price), the cache's records
(some superseded, some failed) and a job file with [score]. Shared by the scoring
tests, the comparison's HTTP and TUI tests and its snapshot."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from batch.cache.index import CandidateInfo
from batch.cache.schema import columns
from batch.cache.store import PredictionStore, ShardWriter
from catalog import runs as run_log
from catalog.db import Catalog
from catalog.models import upsert_model
from catalog.records import CandidateRun, ModelEntry
from catalog.tables import Run

if TYPE_CHECKING:  # the scoring room loads in the tests that score
    from batch.score.scoring import ScoreReport

JOB = "fruit-families"
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
BIG, SMALL, LORA = "org/big-fruit", "org/small-fruit", "acme/fruit-lora"
FRUITS = [("plum", "drupe"), ("cherry", "drupe"), ("peach", "drupe"), ("apple", "pome"),
          ("pear", "pome"), ("quince", "pome"), ("grape", "berry"), ("tomato", "berry"),
          ("lemon", "hesperidium"), ("orange", "hesperidium"), ("banana", "berry"),
          ("fig", "syconium")]
# What each candidate answered, by fruit: a wrong answer, a failure (None) or right.
WRONG = {
    "big": {},
    "small": {"cherry": "pome", "pear": "berry", "lemon": "berry", "banana": "drupe",
              "fig": "drupe", "grape": "pome"},
    "small+lora": {"fig": "berry", "grape": " Berry"},
}
FAILED = {"big": {"tomato"}, "small": set(), "small+lora": set()}
CANDIDATES = [CandidateInfo("big", BIG, "rev-big", None, None, 0),
              CandidateInfo("small", SMALL, "rev-small", None, None, 1),
              CandidateInfo("small+lora", SMALL, "rev-small", LORA, "lora:sha256:abc", 2)]


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _record(c: CandidateInfo, fruit: str, answer: str | None, run_id: str, at: datetime,
            version: int = 1, error: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {name: None for name in columns()}
    out.update(key=_key(c.label, fruit, str(version)), job=JOB, input_id=fruit, model=c.model,
               revision=c.revision, adapter=c.adapter, candidate=c.label,
               adapter_revision=c.adapter_revision, prompt=f"{fruit}:",
               output=None if error else f" {answer}", finish_reason=None if error else "stop",
               prompt_tokens=4, output_tokens=None if error else 2, run_id=run_id,
               created_at=at, error=error, params=json.dumps({"temperature": 0.0}))
    return out


def answers(label: str) -> dict[str, str | None]:
    """Each input's answer by `label` (None: the prediction failed); the last input,
    "mystery", has no family in the file."""
    out: dict[str, str | None] = {fruit: None if fruit in FAILED[label]
                                  else WRONG[label].get(fruit, family) for fruit, family in FRUITS}
    out["mystery"] = "berry"
    return out


def write_job(directory: Path, score: dict[str, Any] | None = None) -> Path:
    """The job file and its rows: one row lacks `family`, so its reference fails."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "fruits.jsonl").open("w", encoding="utf-8") as fh:
        for fruit, family in FRUITS:
            fh.write(json.dumps({"id": fruit, "fruit": fruit, "family": family}) + "\n")
        fh.write(json.dumps({"id": "mystery", "fruit": "mystery"}) + "\n")
    job = {"name": JOB, "model": BIG, "input": {"path": "fruits.jsonl"},
           "prompt": {"template": "{{ fruit }}:"}, "sampling": {"max_tokens": 4},
           "score": score or {"metric": "exact", "reference": "{{ family }}"}}
    path = directory / "job.toml"
    path.write_text(tomli_w.dumps(job), encoding="utf-8")
    return path


def build_scored_home(root: Path, *, second_price: float | None = None,
                      first_price: float = 1.2) -> Path:
    """Write the home under `root` (catalog, predictions) and return the job file. The
    first run states a price of `first_price` USD/hour (1.2), the second `second_price`."""
    catalog = Catalog.at(root / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, ModelEntry(ref=BIG, name="Big fruit model", source="hub", repo_id=BIG,
                                   parameters=7_240_000_000))
        upsert_model(s, ModelEntry(ref=SMALL, name="Small fruit model", source="hub",
                                   repo_id=SMALL, parameters=1_100_000_000))
    store = PredictionStore(root / "predictions")
    runs = [("run-one", T0, first_price), ("run-two", T0 + timedelta(hours=1), second_price)]
    with ShardWriter(store, JOB, "run-one", shard_rows=20, row_group_rows=8) as writer:
        for c in CANDIDATES[:2]:
            # An earlier version of every answer, all wrong, superseded below.
            for fruit, _ in FRUITS:
                writer.add(_record(c, fruit, "nut", "run-one", T0, version=0))
    with ShardWriter(store, JOB, "run-two", shard_rows=20, row_group_rows=8) as writer:
        for c in CANDIDATES:
            for fruit, answer in answers(c.label).items():
                writer.add(_record(c, fruit, answer, "run-two", T0 + timedelta(hours=1),
                                   error="prompt is 300 tokens; the context is 256"
                                   if answer is None else None))
    store.set_candidates(JOB, CANDIDATES)
    store.close()
    shares = {  # label: (generated, output tokens, engine-seconds, engine start)
        "run-one": {"big": (12, 24, 6.0, 30.0), "small": (12, 24, 3.0, 12.0)},
        "run-two": {"big": (11, 22, 5.5, 30.0), "small": (12, 24, 3.0, 12.0),
                    "small+lora": (12, 24, 2.0, 12.0)},
    }
    with catalog.sessions.begin() as s:
        for run_id, started, price in runs:
            run_log.start_run(s, run_id, JOB, BIG, "rev-big", "Test CPU x2")
            s.flush()
            run_log.finish_run(s, run_id, status="ok", usd_per_hour=price, engine_starts=2)
            run = s.get(Run, run_id)
            run.started_at, run.finished_at = started, started + timedelta(minutes=2)
            run_log.record_candidates(s, run_id, [
                CandidateRun(c.label, c.model, revision=c.revision, adapter=c.adapter,
                             adapter_revision=c.adapter_revision, inputs=13, generated=g,
                             output_tokens=t, generation_s=sec, engine_start_s=start,
                             engine_group=0 if c.model == BIG else 1)
                for c in CANDIDATES if c.label in shares[run_id]
                for g, t, sec, start in [shares[run_id][c.label]]])
    catalog.close()
    return write_job(root / "jobs")


def score_home(root: Path, job_file: Path) -> ScoreReport:
    """Score the job in this process, as `almanac score` does."""
    from batch.run.runner import Runner
    from batch.run.spec.job import load_spec
    from batch.score.scoring import score_run

    catalog = Catalog.at(root / "catalog.db")
    runner = Runner(catalog, root / "predictions", root / "locks")
    try:
        report = score_run(runner, load_spec(job_file))
    finally:
        runner.close()
        catalog.close()
    assert report is not None
    return report
