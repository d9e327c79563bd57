"""Planning a run: render every row, compute keys, and sort rows into what is
already cached, what can be copied, what must be generated, and what failed.

Planning never touches the engine, so a run with nothing missing never
imports vLLM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from batch.cache.store import Located, PredictionStore
from batch.run.inputs import InputRow, position_id, read_rows
from batch.run.keys import failure_key, plan_digest, request_key
from batch.run.spec.errors import SpecError
from batch.run.spec.job import JobSpec
from batch.run.spec.prompts import PromptRenderer, RenderError
from batch.run.spec.settings import Sampling
from batch.run.upstream import ChainRows, Known

if TYPE_CHECKING:  # the protocol only types an argument
    from batch.run.upstream import Upstream

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
    """One candidate's share of a run: its rows sorted into cached, to copy, to
    generate and failed."""

    job: str
    model: str  # the catalog reference, the `model` column
    revision: str | None
    adapter: str | None = None  # the adapter as the job names it
    candidate: str = ""  # the candidate's label
    adapter_revision: str | None = None  # the adapter's identity
    inputs: int = 0
    cached: int = 0
    failed_before: int = 0  # failures already recorded for these exact inputs
    # Rows an earlier record answers: another job's or candidate's with the same key, or
    # this input's own earlier version (a prompt changed back), written again by this
    # run so that the files alone say which version is the latest.
    copies: list[tuple[str, str, Located]] = field(default_factory=list)  # input id, key, source
    requests: dict[str, Request] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    lookups_s: float = 0.0  # of the planning time, spent in index lookups
    # A chain's: the digest its memo is valid under, and each planned row's key
    # (batch.run.upstream), for the Upstream to keep.
    digest: str | None = None
    keys: dict[str, str] | None = None
    rendered: int = 0  # rows whose prompt this planning rendered (a chain's memo skips some)

    @property
    def missing_rows(self) -> int:
        return sum(len(r.input_ids) for r in self.requests.values())

    def summary(self) -> dict[str, int]:
        return {
            "inputs": self.inputs,
            "cached": self.cached,
            "copy": len(self.copies),
            "missing": self.missing_rows,
            "distinct_missing": len(self.requests),
            "invalid": len(self.failures),
            "failed_before": self.failed_before,
        }


@dataclass(frozen=True)
class Target:
    """What one candidate's plan keys and records on."""

    candidate: str  # its label
    model: str  # catalog reference
    revision: str | None
    model_identity: str  # the model part of its keys
    adapter: str | None = None
    adapter_identity: str | None = None


# Which targets an OpenAI batch line's `body.model` names (their positions), or why
# none: a line never gets an answer from a model it did not ask for.
Router = Callable[[str | None], "list[int] | str"]


@dataclass
class _Rendered:
    """A row as every candidate sees it: its prompt and sampling, or why it failed."""

    input_id: str
    prompt: str | list[dict[str, Any]] | None
    sampling: Sampling | None
    error: str | None
    asks_for: str | None = None  # an OpenAI batch line's body.model


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


def make_plans(spec: JobSpec, store: PredictionStore, targets: list[Target], *,
               route: Router | None = None, limit: int | None = None,
               retry_failed: bool = False, upstream: Upstream | None = None) -> list[Plan]:
    """One plan per target, in their order. Rows are read and rendered once; each
    candidate keys them with its own model and adapter identity. A chain's rows come
    from `upstream`, and those it remembers unchanged are not rendered at all."""
    renderer = None if spec.input.format == "openai-batch" else PromptRenderer(spec.prompt)
    plans = [Plan(spec.name, t.model, t.revision, t.adapter, t.candidate, t.adapter_identity)
             for t in targets]
    known = _remembered(spec, store, targets, plans, upstream, retry_failed, limit)
    line_sampling = _LineSampling(spec.sampling)
    if known is not None:
        rows: Iterator[InputRow] = _rows(spec, upstream, known.rows)
    else:
        rows = _rows(spec, upstream)
        if limit is not None:
            rows = islice(rows, limit)
    # A chain's rows some candidates remember go only to the others.
    remembering = [set(r.ids) for r in known.remembered] if known is not None and \
        len(targets) > 1 else None
    everyone = list(range(len(targets)))
    while chunk := list(islice(rows, PLAN_CHUNK)):
        shares: list[list[_Row]] = [[] for _ in targets]
        for row in chunk:
            left = everyone if remembering is None else [
                i for i in everyone if row.id not in remembering[i]]
            made = _render(spec, renderer, line_sampling, row)
            chosen = left if route is None else route(made.asks_for)
            if isinstance(chosen, str):  # a model the job does not have: a failure for all
                made = _Rendered(made.input_id, None, None, chosen)
                chosen = left
            for i in chosen:
                plans[i].rendered += 1
                shares[i].append(_keyed(spec.name, made, targets[i]))
        for plan, share in zip(plans, shares, strict=True):
            if share:
                _plan_chunk(plan, store, share, retry_failed)
    return plans


def _remembered(spec: JobSpec, store: PredictionStore, targets: list[Target], plans: list[Plan],
                upstream: Upstream | None, retry_failed: bool, limit: int | None
                ) -> ChainRows | None:
    """A chain's rows, those each candidate remembers counted as cached (or failed before)
    without rendering (batch.run.upstream); None for any other job."""
    if upstream is None or spec.input.format != "job":
        return None
    known = []
    for target, plan in zip(targets, plans, strict=True):
        began = time.perf_counter()
        plan.digest, plan.keys = plan_digest(spec, target), {}
        known.append(Known(target.candidate, plan.digest,
                           store.latest_keys(plan.job, plan.candidate)))
        plan.lookups_s += time.perf_counter() - began
    chain = upstream.plan_rows(spec, known, retry_failed=retry_failed, limit=limit)
    for plan, remembered in zip(plans, chain.remembered, strict=True):
        failed = sum(remembered.failed)
        plan.inputs += len(remembered.ids)
        plan.failed_before += failed
        plan.cached += len(remembered.ids) - failed
        assert plan.keys is not None
        plan.keys.update(zip(remembered.ids, remembered.keys, strict=True))
    return chain


def make_plan(spec: JobSpec, store: PredictionStore, *, model_identity: str,
              revision: str | None, adapter_identity: str | None,
              limit: int | None = None, retry_failed: bool = False) -> Plan:
    """The plan of a job's only candidate, labelled with its model."""
    target = Target(spec.model, spec.model, revision, model_identity, spec.adapter,
                    adapter_identity)
    return make_plans(spec, store, [target], limit=limit, retry_failed=retry_failed)[0]


def _keyed(job: str, row: _Rendered, target: Target) -> _Row:
    if row.error is not None or row.prompt is None or row.sampling is None:
        return _failed(job, row.input_id, row.error or "nothing to run")
    try:
        key = request_key(target.model_identity, target.adapter_identity, row.prompt, row.sampling)
    except UnicodeEncodeError as exc:  # a template made a lone surrogate ("\ud800")
        bad = exc.object[exc.start:exc.end] if isinstance(exc.object, str) else ""
        return _failed(job, row.input_id, f"the prompt holds a lone surrogate ({bad!r}), "
                                          "which is not Unicode text")
    return _Row(row.input_id, key, row.prompt, row.sampling, None)


def _failed(job: str, input_id: str, error: str) -> _Row:
    # A reason quoting what a template made may hold a lone surrogate: kept escaped, so
    # that it can be keyed and written.
    try:
        error.encode("utf-8")
    except UnicodeEncodeError:
        error = error.encode("utf-8", "backslashreplace").decode("utf-8")
    return _Row(input_id, failure_key(job, input_id, error), None, None, error)


def _rows(spec: JobSpec, upstream: Upstream | None,
          source: Iterator[InputRow] | None = None) -> Iterator[InputRow]:
    seen: dict[str, int] = {}
    if source is None:
        source = upstream.rows(spec) if upstream is not None and spec.input.format == "job" \
            else read_rows(spec.input)
    for row in source:
        if row.id in seen:
            # Two rows with one id would overwrite each other's prediction, a failed
            # one included (an openai-batch line without a body keeps its custom_id).
            # The duplicate is named by its position: a form no row's own id may take.
            nth = 1
            while (dup_id := position_id(row.position, nth)) in seen:
                nth += 1
            error = f"duplicate id {row.id!r} (first at row {seen[row.id]})"
            if row.error is not None:
                error += f"; {row.error}"
            seen[dup_id] = row.position
            yield InputRow(row.position, dup_id, error=error)
            continue
        seen.setdefault(row.id, row.position)
        yield row


def _render(spec: JobSpec, renderer: PromptRenderer | None, line_sampling: _LineSampling,
            row: InputRow) -> _Rendered:
    if row.error is not None:
        return _Rendered(row.id, None, None, row.error)
    sampling = spec.sampling
    asks_for = None
    if renderer is None:  # an OpenAI batch line carries its own prompt and sampling
        body = (row.fields or {}).get("body")
        model = body.get("model") if isinstance(body, dict) else None
        asks_for = model if isinstance(model, str) and model else None
        if row.messages is not None:
            prompt: str | list[dict[str, Any]] = row.messages
        else:
            assert row.prompt is not None  # the reader makes lines without either error rows
            prompt = row.prompt
        try:
            sampling = line_sampling(row.sampling or {})
        except SpecError as exc:
            return _Rendered(row.id, None, None, f"invalid sampling in body: {exc}", asks_for)
    else:
        try:
            prompt = renderer.render(row.fields or {})
        except RenderError as exc:
            return _Rendered(row.id, None, None, str(exc))
    return _Rendered(row.id, prompt, sampling, None, asks_for)


def _plan_chunk(plan: Plan, store: PredictionStore, chunk: list[_Row], retry_failed: bool) -> None:
    plan.inputs += len(chunk)
    if plan.keys is not None:
        plan.keys.update((r.input_id, r.key) for r in chunk)
    began = time.perf_counter()
    latest = store.latest_for(plan.job, plan.candidate, [r.input_id for r in chunk])
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
    older = store.versions_for(plan.job, plan.candidate,
                               [(r.input_id, r.key) for r in undecided if r.input_id in latest])
    elsewhere = store.generated_anywhere(
        [r.key for r in undecided if r.key not in plan.requests]
    )
    plan.lookups_s += time.perf_counter() - began
    for row in undecided:
        if (old := older.get((row.input_id, row.key))) is not None and not old.failed:
            plan.copies.append((row.input_id, row.key, old))
        elif row.key in plan.requests:
            plan.requests[row.key].input_ids.append(row.input_id)
        elif (src := elsewhere.get(row.key)) is not None:
            plan.copies.append((row.input_id, row.key, src))
        else:
            assert row.prompt is not None and row.sampling is not None
            plan.requests[row.key] = Request(row.key, row.prompt, row.sampling, [row.input_id])

