"""Planning a run: render every row, compute keys, and sort rows into what is
already cached, what can be copied, what must be generated, and what failed.

Planning never touches the engine, so a run with nothing missing never
imports vLLM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from batch.cache.store import Located, PredictionStore
from batch.run.inputs import InputRow, read_rows
from batch.run.keys import failure_key, plan_digest, request_key
from batch.run.spec.errors import SpecError
from batch.run.spec.job import JobSpec
from batch.run.spec.prompts import PromptRenderer, RenderError
from batch.run.spec.settings import Sampling

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
    memos = _memos(spec, targets, plans, upstream)
    current = None if memos is None else _current(plans, store)
    line_sampling = _LineSampling(spec.sampling)
    rows = _rows(spec, upstream)
    if limit is not None:
        rows = islice(rows, limit)
    everyone = list(range(len(targets)))
    while chunk := list(islice(rows, PLAN_CHUNK)):
        shares: list[list[_Row]] = [[] for _ in targets]
        for row in chunk:
            left = everyone if memos is None or current is None else [
                i for i in everyone
                if not _remembered(plans[i], memos[i], current[i], row, retry_failed)]
            if not left:
                continue
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


def _memos(spec: JobSpec, targets: list[Target], plans: list[Plan], upstream: Upstream | None
           ) -> list[Mapping[str, tuple[str | None, str]]] | None:
    """A chain's memo per candidate (batch.run.upstream); None for any other job."""
    if upstream is None or spec.input.format != "job":
        return None
    memos = []
    for target, plan in zip(targets, plans, strict=True):
        began = time.perf_counter()
        plan.digest, plan.keys = plan_digest(spec, target), {}
        memos.append(upstream.memo(spec.name, target.candidate, plan.digest))
        plan.lookups_s += time.perf_counter() - began
    return memos


def _current(plans: list[Plan], store: PredictionStore) -> list[dict[str, tuple[str, bool]]]:
    """Each candidate's latest (key, failed) of every row of the job, in one query each."""
    out = []
    for plan in plans:
        began = time.perf_counter()
        out.append(store.latest_keys(plan.job, plan.candidate))
        plan.lookups_s += time.perf_counter() - began
    return out


def _remembered(plan: Plan, memo: Mapping[str, tuple[str | None, str]],
                current: dict[str, tuple[str, bool]], row: InputRow, retry_failed: bool) -> bool:
    """Counts the row as cached (or failed before) without rendering it, when its basis
    is the one the memo holds and its latest record has the key that basis gave."""
    if row.basis is None or row.error is not None:
        return False
    known = memo.get(row.id)
    cur = current.get(row.id)
    if known is None or cur is None or known[0] != row.basis or cur[0] != known[1] \
            or (retry_failed and cur[1]):
        return False
    plan.inputs += 1
    if cur[1]:
        plan.failed_before += 1
    else:
        plan.cached += 1
    assert plan.keys is not None
    plan.keys[row.id] = cur[0]
    return True


def make_plan(spec: JobSpec, store: PredictionStore, *, model_identity: str,
              revision: str | None, adapter_identity: str | None,
              limit: int | None = None, retry_failed: bool = False) -> Plan:
    """The plan of a job's only candidate, labelled with its model."""
    target = Target(spec.model, spec.model, revision, model_identity, spec.adapter,
                    adapter_identity)
    return make_plans(spec, store, [target], limit=limit, retry_failed=retry_failed)[0]


def _keyed(job: str, row: _Rendered, target: Target) -> _Row:
    if row.error is not None or row.prompt is None or row.sampling is None:
        error = row.error or "nothing to run"
        return _Row(row.input_id, failure_key(job, row.input_id, error), None, None, error)
    key = request_key(target.model_identity, target.adapter_identity, row.prompt, row.sampling)
    return _Row(row.input_id, key, row.prompt, row.sampling, None)


def _rows(spec: JobSpec, upstream: Upstream | None) -> Iterator[InputRow]:
    seen: dict[str, int] = {}
    source = upstream.rows(spec) if upstream is not None and spec.input.format == "job" \
        else read_rows(spec.input)
    for row in source:
        if row.id in seen:
            # Two rows with one id would overwrite each other's prediction, a failed
            # one included (an openai-batch line without a body keeps its custom_id).
            dup_id = f"{row.id}@{row.position}"
            error = f"duplicate id {row.id!r} (first at row {seen[row.id]})"
            if row.error is not None:
                error += f"; {row.error}"
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

