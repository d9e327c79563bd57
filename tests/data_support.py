"""Helpers for chain and curate tests without the engine: upstream jobs whose
predictions are written by the real ShardWriter, chained jobs planned by the real
planner, and "runs" that answer a plan's requests as the engine would have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomli_w

from batch.cache.store import PredictionStore
from batch.data.chains import UpstreamReader
from batch.run.plan import Plan, Target, make_plans
from batch.run.spec.job import JobSpec, load_spec
from batch.score.store import Score, ScoreStore
from tests.cache_support import key_for, record, write

TARGET = Target("tiny", "tiny", None, "sha256:tiny")


def write_job(directory: Path, name: str, *, rows: list[dict[str, Any]] | None = None,
              upstream: str | None = None, template: str = "{{ question }}",
              messages: list[dict[str, str]] | None = None, **input_options: Any) -> Path:
    """A job file (with its JSONL input, or a chain's `[input] job`)."""
    directory.mkdir(parents=True, exist_ok=True)
    if upstream is None:
        with (directory / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows or [])
        source: dict[str, Any] = {"path": f"{name}.jsonl"}
    else:
        source = {"job": upstream, **input_options}
    job = {"name": name, "model": "tiny", "input": source,
           "prompt": {"messages": messages} if messages else {"template": template},
           "sampling": {"max_tokens": 8}}
    path = directory / f"{name}.toml"
    path.write_text(tomli_w.dumps(job), encoding="utf-8")
    return path


def answers(predictions: Path, job: str, texts: dict[str, str | None], *, version: int = 1,
            candidate: str = "tiny", failed: tuple[str, ...] = (), **fields: Any) -> None:
    """Latest predictions of `job` by `candidate`: `texts` by input id, `failed` ids
    as failures."""
    records = [record(i, job=job, version=version, output=o, model=candidate,
                      candidate=candidate, **fields) for i, o in texts.items()]
    records += [record(i, job=job, version=version, model=candidate, candidate=candidate,
                       error="engine said no") for i in failed]
    write(predictions, records, job=job)


def scores(predictions: Path, job: str, values: dict[str, float], *, version: int = 1,
           candidate: str = "tiny") -> None:
    with ScoreStore.open(predictions) as store:
        store.save(job, "scorer", "exact",
                   [Score(candidate, i, key_for(i, version), "basis", v) for i, v in values.items()],
                   [(candidate, i) for i in values])


def plan(predictions: Path, spec: JobSpec | Path, reader: UpstreamReader | None = None,
         *, retry_failed: bool = False) -> Plan:
    spec = load_spec(spec) if isinstance(spec, Path) else spec
    store = PredictionStore(predictions)
    try:
        return make_plans(spec, store, [TARGET], upstream=reader or UpstreamReader(predictions),
                          retry_failed=retry_failed)[0]
    finally:
        store.close()


def run(predictions: Path, spec_path: Path, reader: UpstreamReader | None = None) -> Plan:
    """What a run does without the engine: plan, keep what planning found (the job's
    file, a chain's lineage), then write an answer for every request and failure."""
    reader = reader or UpstreamReader(predictions)
    spec = load_spec(spec_path)
    done = plan(predictions, spec, reader)
    reader.record(spec, [done], complete=True)
    records = []
    for request in done.requests.values():
        prompt = request.prompt if isinstance(request.prompt, str) else json.dumps(request.prompt)
        records += [record(i, job=spec.name, output=f"re: {prompt}", key=request.key, prompt=prompt,
                           model="tiny", candidate="tiny") for i in request.input_ids]
    records += [record(f.input_id, job=spec.name, key=f.key, error=f.error, model="tiny",
                       candidate="tiny") for f in done.failures]
    if records:
        write(predictions, records, job=spec.name)
    return done


def recorded(predictions: Path, spec_path: Path) -> None:
    """Record a job's file as a run would (upstream jobs written by hand need it)."""
    spec = load_spec(spec_path)
    UpstreamReader(predictions).record(spec, [], complete=True)
