"""A job's candidates resolved: catalog models and adapters, their labels, the engines
they share, and which candidate an OpenAI batch line's `body.model` names.

Candidates whose model, revision and engine options agree share one engine: LoRA
enabled with room (`max_loras`, `max_lora_rank`) for all their adapters, and
every candidate's requests interleaved in one stream. Engines run one after the
other, each started once. Whatever a job states that cannot work (a model not in
the catalog, an adapter built on another base, a rank vLLM cannot serve, a label
twice) is a SpecError naming the field, before anything runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from batch.cache.store import CandidateInfo, PredictionStore
from batch.run.executors.target import EngineTarget
from batch.run.resolve import (
    ResolvedAdapter,
    ResolvedModel,
    ResolveError,
    resolve_adapter,
    resolve_model,
)
from batch.run.spec.candidates import CandidateSpec
from batch.run.spec.errors import SpecError
from batch.run.spec.settings import EngineOptions
from catalog.models import UnknownModelError, adapters_of, find_model

MAX_LORA_RANK = 512  # the largest `max_lora_rank` vLLM accepts


@dataclass(frozen=True)
class Candidate:
    """One candidate of a run: what it loads, what its keys hash, how it is named."""

    label: str
    ordinal: int
    where: str  # its field in the job file
    model: ResolvedModel
    engine: EngineOptions
    adapter_ref: str | None = None  # the `adapter` column: as the job names it
    adapter: ResolvedAdapter | None = None

    @property
    def adapter_identity(self) -> str | None:
        return self.adapter.identity if self.adapter else None

    def info(self) -> CandidateInfo:
        return CandidateInfo(self.label, self.model.ref, self.model.revision, self.adapter_ref,
                             self.adapter_identity, self.ordinal)


@dataclass
class EngineGroup:
    """Candidates one engine serves, in the job's order."""

    index: int
    target: EngineTarget
    members: list[Candidate] = field(default_factory=list)


def resolve_candidates(session: Session, specs: tuple[CandidateSpec, ...], job_path: Path,
                       store: PredictionStore) -> list[Candidate]:
    """Every candidate of a job, `adapters_of` expanded, in the job's order."""
    out: list[Candidate] = []
    for spec in specs:
        for model_ref, adapter_ref, label in _expand(session, spec, job_path):
            model = _model(session, spec, model_ref, job_path, store)
            adapter = _adapter(session, spec, adapter_ref, model, job_path, store)
            if label is None:
                label = model.ref if adapter_ref is None or spec.where == "model" \
                    else f"{model.ref}+{adapter_ref}"
            out.append(Candidate(label, len(out), spec.where, model, spec.engine, adapter_ref,
                                 adapter))
    _unique_labels(out, job_path)
    return out


def _expand(session: Session, spec: CandidateSpec,
            job_path: Path) -> list[tuple[str, str | None, str | None]]:
    """(model, adapter, label) of each candidate an entry stands for."""
    if spec.adapters_of is None:
        assert spec.model is not None  # the schema requires one of the two
        return [(spec.model, spec.adapter, spec.label)]
    base = find_model(session, spec.adapters_of)
    if base is None:
        raise SpecError(f"{job_path}: {spec.field('adapters_of')}: no model "
                        f"{spec.adapters_of!r} in the catalog (see `almanac models list`)")
    adapters = adapters_of(session, base)
    if not adapters:
        raise SpecError(f"{job_path}: {spec.field('adapters_of')}: the catalog has no adapter "
                        f"of {base.ref!r} (`almanac models add DIR` registers one)")
    return [(base.ref, ref, None) for ref in adapters]


def _model(session: Session, spec: CandidateSpec, ref: str, job_path: Path,
           store: PredictionStore) -> ResolvedModel:
    name = spec.field("adapters_of" if spec.adapters_of else "model")
    try:
        return resolve_model(session, ref, spec.revision, store)
    except UnknownModelError as exc:
        raise SpecError(f"{job_path}: {name}: {exc}") from None
    except ResolveError as exc:
        raise SpecError(f"{job_path}: {name}: {exc}") from None


def _adapter(session: Session, spec: CandidateSpec, ref: str | None, model: ResolvedModel,
             job_path: Path, store: PredictionStore) -> ResolvedAdapter | None:
    if ref is None:
        return None
    name = spec.field("adapters_of" if spec.adapters_of else "adapter")
    try:
        adapter = resolve_adapter(session, ref, store)
    except ResolveError as exc:
        raise SpecError(f"{job_path}: {name}: {exc}") from None
    if not 1 <= adapter.rank <= MAX_LORA_RANK:
        raise SpecError(f"{job_path}: {name}: adapter {ref!r} has rank {adapter.rank}; vLLM "
                        f"serves LoRA ranks from 1 to {MAX_LORA_RANK}")
    if not _built_on(session, adapter.base, model):
        raise SpecError(f"{job_path}: {name}: adapter {ref!r} is built on {adapter.base!r}, "
                        f"not on the candidate's model {model.ref!r}")
    return adapter


def _built_on(session: Session, base: object, model: ResolvedModel) -> bool:
    """Whether an adapter whose config names `base` fits `model`. A base the adapter does
    not name, or that names nothing this machine knows, is given the benefit of the
    doubt (vLLM refuses weights that do not fit); one naming another model is not."""
    if not isinstance(base, str) or not base:
        return True
    if base in (model.ref, model.load):
        return True
    if os.path.isdir(base):
        return os.path.isdir(model.load) and os.path.samefile(base, model.load)
    named, ours = find_model(session, base), find_model(session, model.ref)
    if named is not None:
        return ours is not None and named.id == ours.id
    # A Hub id the catalog does not know: it fits only a model loaded from that id.
    return not (ours is not None and ours.repo_id and ours.repo_id != base)


def _unique_labels(candidates: list[Candidate], job_path: Path) -> None:
    seen: dict[str, Candidate] = {}
    for c in candidates:
        if (first := seen.get(c.label)) is not None:
            raise SpecError(f"{job_path}: {c.where}: its label {c.label!r} is already "
                            f"{first.where}'s: give one of them a `label`")
        seen[c.label] = c


def engine_groups(candidates: list[Candidate]) -> list[EngineGroup]:
    """Candidates sharing a model, revision and engine options share one engine, with
    LoRA enabled for as many adapters as they bring, at their largest rank."""
    by_key: dict[tuple[str, str | None, EngineOptions], list[Candidate]] = {}
    for c in candidates:
        by_key.setdefault((c.model.load, c.model.load_revision, c.engine), []).append(c)
    groups = []
    for i, ((load, revision, options), members) in enumerate(by_key.items()):
        adapters = {c.adapter.path: c.adapter.rank for c in members if c.adapter}
        target = EngineTarget.make(load, revision, options,
                                   max(adapters.values()) if adapters else None,
                                   len(adapters) if adapters else None)
        groups.append(EngineGroup(i, target, members))
    return groups


def route(name: str | None, candidates: list[Candidate]) -> list[Candidate] | None:
    """The candidates an OpenAI batch line's `body.model` names: a label; else the
    candidates with that adapter; else those running that model without an adapter.
    No name: every candidate. A name none of them answers to: None."""
    if name is None:
        return list(candidates)
    for test in (lambda c: c.label == name,
                 lambda c: name in (c.adapter_ref, c.adapter and c.adapter.catalog_ref),
                 lambda c: c.adapter is None and name in (c.model.ref, c.model.load)):
        found = [c for c in candidates if test(c)]
        if found:
            return found
    return None
