"""Misses as batch jobs: one job per served model (`misses-<model>`), whose input is
its misses as OpenAI batch lines, each with the body that was asked.

The job has no `[sampling]` table, so each line's sampling goes over the same
defaults a request's did (batch.openai_api.asked), and the runner keys each line as
the server keyed the request: once the job has run, the same request is a hit. Its
files are written to the directory given (the home's `misses/<job>/`: `job.toml` and
`requests.jsonl`), replaced whole, and read back by the spec loader `almanac run`
uses, so `almanac run` on that file is the same run. A model's job keeps its name
and its one candidate from run to run: what it answered before stays its current
answers (and safe from `cache gc`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.openai_api.misses import Miss, MissStore
from batch.query import CacheReader
from batch.run.spec.job import JobSpec, load_spec
from schemas.errors import AlmanacError

if TYPE_CHECKING:  # the runner (and the engine behind it) is the caller's
    from batch.run.result import RunResult
    from batch.run.runner import Runner

JOB_PREFIX = "misses-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 128  # schemas/job.schema.json's bound on a job name


@dataclass
class MissJob:
    """One model's misses as a job, ready for the runner."""

    spec: JobSpec
    model: str
    adapter: str | None
    ids: list[str]  # its input ids: the misses' ids

    @property
    def name(self) -> str:
        return self.spec.name


def job_name(served: str) -> str:
    """`misses-<model>`: the served id where it is a job name already, else made one,
    with a digest of the id so that two models never share a job."""
    slug = _UNSAFE.sub("-", served).strip("-.") or "model"
    if slug == served and len(JOB_PREFIX + slug) <= _MAX_NAME:
        return JOB_PREFIX + slug
    digest = hashlib.sha256(served.encode()).hexdigest()[:8]
    return f"{JOB_PREFIX}{slug[:_MAX_NAME - len(JOB_PREFIX) - 9]}-{digest}"


def write_jobs(store: MissStore, directory: Path, *, model: str | None = None,
               engine: Mapping[str, Any] | None = None) -> list[MissJob]:
    """A job per served model with misses (only `model`'s, if given), in model order.
    `engine`: the jobs' [engine] table (what vllm.LLM gets besides the model)."""
    by_model: dict[str, list[Miss]] = {}
    for miss in store.misses(model):
        by_model.setdefault(miss.served, []).append(miss)
    return [_write(directory, served, misses, dict(engine or {}))
            for served, misses in by_model.items()]


def _write(directory: Path, served: str, misses: list[Miss], engine: dict[str, Any]) -> MissJob:
    name = job_name(served)
    where = directory / name
    where.mkdir(parents=True, exist_ok=True)
    first = misses[0]
    job: dict[str, Any] = {"name": name, "model": first.model}
    if first.adapter is not None:
        job["adapter"] = first.adapter
    job["input"] = {"path": "requests.jsonl", "format": "openai-batch"}
    if engine:
        job["engine"] = engine
    lines = "".join(json.dumps({"custom_id": m.id, "method": "POST", "url": m.endpoint,
                                "body": m.body}, ensure_ascii=False) + "\n" for m in misses)
    _replace(where / "requests.jsonl", lines)
    _replace(where / "job.toml", f"# The misses of {_toml(served)}, written by `almanac misses "
                                 f"run`: replaced on every run.\n{_toml_document(job)}")
    return MissJob(load_spec(where / "job.toml"), first.model, first.adapter, [m.id for m in misses])


def run_misses(runner: Runner, store: MissStore, directory: Path, *, model: str | None = None,
               engine: Mapping[str, Any] | None = None
               ) -> Iterator[tuple[MissJob, RunResult | AlmanacError, int]]:
    """Each model's misses run as its job, one after the other: (job, its run's result
    or the error that kept it from running, how many misses it answered). A job that
    cannot run (locked, its model gone from the catalog) does not stop the others; a
    stop signal does (`Stopped`, from the runner, with the run's result)."""
    for job in write_jobs(store, directory, model=model, engine=engine):
        try:
            result = runner.run(job.spec)
        except AlmanacError as exc:
            yield job, exc, 0
            continue
        yield job, result, settle(job, runner.predictions, store)


def settle(job: MissJob, predictions: Path, store: MissStore) -> int:
    """Forget the job's misses its run answered (a failure too: it is the answer a
    request now gets); how many."""
    with CacheReader(predictions) as reader:
        answered = reader.job(job.name).get_many(job.ids) if reader.has_job(job.name) else {}
    return store.remove(list(answered))


def _replace(path: Path, text: str) -> None:
    """Written whole under a temporary name, then renamed over the old file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _toml(value: Any) -> str:
    """A TOML value: strings as JSON writes them (its escapes are TOML's, bar DEL),
    numbers, booleans, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_document(data: dict[str, Any]) -> str:
    plain = [f"{k} = {_toml(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    tables = [f"\n[{k}]\n" + "".join(f"{_toml(str(n))} = {_toml(v)}\n" for n, v in v.items())
              for k, v in data.items() if isinstance(v, Mapping)]
    return "\n".join(plain) + "\n" + "".join(tables)
