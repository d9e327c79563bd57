"""Planning a run: render every row, compute keys, and sort rows into what is
already cached, what can be copied, what must be generated, and what failed.

Planning never touches the engine, so a run with nothing missing never
imports vLLM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from batch.cache.store import Located, PredictionStore
from batch.run.errors import SpecError
from batch.run.inputs import InputRow, read_rows
from batch.run.keys import failure_key, request_key
from batch.run.prompts import PromptRenderer, RenderError
from batch.run.settings import Sampling
from batch.run.spec import JobSpec

PLAN_CHUNK = 2000  # rows per index round trip


@dataclass
class Request:
    """A distinct key to generate, and every input row waiting for it."""

    key: str
    prompt: str | list[dict[str, Any]]
    sampling: Sampling
    input_ids: list[str]


@dataclass
class Failure:
    input_id: str
    key: str
    error: str
    prompt: str | list[dict[str, Any]] | None = None
    sampling: Sampling | None = None


@dataclass
class Plan:
    job: str
    model: str
    revision: str | None
    adapter: str | None
    inputs: int = 0
    cached: int = 0
    failed_before: int = 0  # failures already recorded for these exact inputs
    repoint: list[Located] = field(default_factory=list)
    copies: list[tuple[str, str, Located]] = field(default_factory=list)  # input id, key, source
    requests: dict[str, Request] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    lookups_s: float = 0.0  # of the planning time, spent in index lookups

    @property
    def missing_rows(self) -> int:
        return sum(len(r.input_ids) for r in self.requests.values())

    def summary(self) -> dict[str, int]:
        return {
            "inputs": self.inputs,
            "cached": self.cached,
            "copy": len(self.repoint) + len(self.copies),
            "missing": self.missing_rows,
            "distinct_missing": len(self.requests),
            "invalid": len(self.failures),
            "failed_before": self.failed_before,
        }


@dataclass
class _Row:
    input_id: str
    key: str
    prompt: str | list[dict[str, Any]] | None
    sampling: Sampling | None
    error: str | None


class _LineSampling:
    """OpenAI batch lines' own sampling over the job's, validated once per distinct
    set: a million-line file usually repeats a handful."""

    def __init__(self, job: Sampling) -> None:
        self.job = job
        self._seen: dict[str, Sampling | str] = {}

    def __call__(self, overrides: dict[str, Any]) -> Sampling:
        seen = json.dumps(overrides, sort_keys=True, default=repr)
        if seen not in self._seen:
            try:
                self._seen[seen] = self.job.overridden(overrides)
            except SpecError as exc:
                self._seen[seen] = str(exc)
        found = self._seen[seen]
        if isinstance(found, str):
            raise SpecError(found)
        return found


def make_plan(spec: JobSpec, store: PredictionStore, *, model_identity: str,
              revision: str | None, adapter_identity: str | None,
              limit: int | None = None, retry_failed: bool = False) -> Plan:
    renderer = None if spec.input.format == "openai-batch" else PromptRenderer(spec.prompt)
    plan = Plan(spec.name, spec.model, revision, adapter_identity)
    rows = _rows(spec, renderer, _LineSampling(spec.sampling), model_identity, adapter_identity)
    if limit is not None:
        rows = islice(rows, limit)
    while chunk := list(islice(rows, PLAN_CHUNK)):
        _plan_chunk(plan, store, chunk, retry_failed)
    return plan


def _rows(spec: JobSpec, renderer: PromptRenderer | None, line_sampling: _LineSampling,
          model: str, adapter: str | None) -> Iterator[_Row]:
    seen: dict[str, int] = {}
    for row in read_rows(spec.input):
        if row.id in seen:
            # Two rows with one id would overwrite each other's prediction, a failed
            # one included (an openai-batch line without a body keeps its custom_id).
            dup_id = f"{row.id}@{row.position}"
            error = f"duplicate id {row.id!r} (first at row {seen[row.id]})"
            if row.error is not None:
                error += f"; {row.error}"
            yield _Row(dup_id, failure_key(spec.name, dup_id, error), None, None, error)
            continue
        seen.setdefault(row.id, row.position)
        yield _render(spec, renderer, line_sampling, row, model, adapter)


def _render(spec: JobSpec, renderer: PromptRenderer | None, line_sampling: _LineSampling,
            row: InputRow, model: str, adapter: str | None) -> _Row:
    def failed(error: str) -> _Row:
        return _Row(row.id, failure_key(spec.name, row.id, error), None, None, error)

    if row.error is not None:
        return failed(row.error)
    sampling = spec.sampling
    if renderer is None:  # an OpenAI batch line carries its own prompt and sampling
        if row.messages is not None:
            prompt: str | list[dict[str, Any]] = row.messages
        else:
            assert row.prompt is not None  # the reader makes lines without either error rows
            prompt = row.prompt
        try:
            sampling = line_sampling(row.sampling or {})
        except SpecError as exc:
            return failed(f"invalid sampling in body: {exc}")
    else:
        try:
            prompt = renderer.render(row.fields or {})
        except RenderError as exc:
            return failed(str(exc))
    return _Row(row.id, request_key(model, adapter, prompt, sampling), prompt, sampling, None)


def _plan_chunk(plan: Plan, store: PredictionStore, chunk: list[_Row], retry_failed: bool) -> None:
    plan.inputs += len(chunk)
    began = time.perf_counter()
    latest = store.latest_for(plan.job, [r.input_id for r in chunk])
    plan.lookups_s += time.perf_counter() - began
    undecided: list[_Row] = []
    for row in chunk:
        cur = latest.get(row.input_id)
        if cur is not None and cur.key == row.key and not (retry_failed and cur.failed):
            if cur.failed:
                plan.failed_before += 1
            else:
                plan.cached += 1
        elif row.error is not None:
            plan.failures.append(Failure(row.input_id, row.key, row.error))
        else:
            undecided.append(row)
    if not undecided:
        return
    began = time.perf_counter()
    older = store.versions_for(plan.job, [(r.input_id, r.key) for r in undecided
                                          if r.input_id in latest])
    elsewhere = store.generated_anywhere(
        [r.key for r in undecided if r.key not in plan.requests]
    )
    plan.lookups_s += time.perf_counter() - began
    for row in undecided:
        if (old := older.get((row.input_id, row.key))) is not None and not old.failed:
            plan.repoint.append(old)
        elif row.key in plan.requests:
            plan.requests[row.key].input_ids.append(row.input_id)
        elif (src := elsewhere.get(row.key)) is not None:
            plan.copies.append((row.input_id, row.key, src))
        else:
            assert row.prompt is not None and row.sampling is not None
            plan.requests[row.key] = Request(row.key, row.prompt, row.sampling, [row.input_id])

