"""Typed run settings: sampling parameters and engine options, each checked against
its section of schemas/job.schema.json once, where it enters, and immutable after.

`Sampling.as_dict()` is what every cache key hashes and the `params` column holds:
for settings that already have keys its content must never change (tests pin some).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

import schemas
from batch.run.spec.errors import SpecError

if TYPE_CHECKING:  # jsonschema is imported when the first setting is checked, not before
    from jsonschema.protocols import Validator

_FLOATS = ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty",
           "repetition_penalty")
_INTEGERS = ("max_tokens", "top_k", "n", "seed", "logprobs")
# None means "unset" for these; for the rest it is an error. An OpenAI batch line
# may say `"max_tokens": null` (no limit but the context).
_NULLABLE = frozenset({"max_tokens", "seed", "logprobs", "choice", "regex", "json_schema"})
# Greedy decoding ignores these, so equal greedy requests must hash equally.
_GREEDY: dict[str, Any] = {"top_p": 1.0, "top_k": -1, "min_p": 0.0, "seed": None}


@cache
def _validator(section: str) -> Validator:
    import jsonschema

    job = schemas.load("job")
    cls = jsonschema.validators.validator_for(job)
    return cls(job["properties"][section], format_checker=cls.FORMAT_CHECKER)


def check_section(section: str, values: Mapping[str, Any]) -> None:
    """Raise one SpecError naming every problem of `values` against the job schema's
    `section`, each by its field (`temperature: -1 is less than the minimum of 0`)."""
    problems = []
    errors = sorted(_validator(section).iter_errors(values), key=lambda e: list(e.absolute_path))
    for err in errors:
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p)
                         for p in err.absolute_path).replace(".[", "[")
        # The schema words some messages itself, where jsonschema's would echo subschemas.
        custom = err.schema.get("x-messages", {}) if isinstance(err.schema, dict) else {}
        problems.append(f"{where or section}: {custom.get(err.validator, err.message)}")
    if problems:
        raise SpecError("; ".join(problems))


def _integral(value: float | None) -> int | None:
    """5.0 is an integer to JSON Schema (and TOML writers); vLLM rejects it for some fields.
    Called once the schema has said the value is an integer (or unset)."""
    return None if value is None else int(value)


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters, normalized so that equal requests hash equally however
    they were written: floats as floats, `stop` sorted without repeats, and the
    parameters greedy decoding ignores reset at temperature 0."""

    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    choice: tuple[str, ...] | None = None
    regex: str | None = None
    # Not hashed (a dict cannot be); equality still compares it.
    json_schema: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        given = {}
        for name in SAMPLING_NAMES:
            value = getattr(self, name)
            if value is None and name in _NULLABLE:
                continue
            given[name] = list(value) if isinstance(value, tuple) else value
        check_section("sampling", given)
        normal: dict[str, Any] = {name: float(getattr(self, name)) for name in _FLOATS}
        normal.update((name, _integral(getattr(self, name))) for name in _INTEGERS)
        normal["stop"] = tuple(sorted(set(self.stop)))
        if self.choice is not None:
            normal["choice"] = tuple(self.choice)
        if normal["temperature"] == 0.0:
            normal.update(_GREEDY)
        for name, value in normal.items():
            object.__setattr__(self, name, value)  # frozen: normalized once, here

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Sampling:
        """From a job's [sampling] table or an OpenAI batch line's fields."""
        unknown = sorted(set(raw) - set(SAMPLING_NAMES))
        if unknown:
            raise SpecError(f"{unknown[0]}: not a sampling parameter")
        values = dict(raw)
        if "stop" in values and values["stop"] is None:
            values["stop"] = ()
        return cls(**values)

    def overridden(self, overrides: Mapping[str, Any]) -> Sampling:
        """These settings with some replaced (an OpenAI batch line's own), normalized
        again; what these leave unset stays unset."""
        kept = {k: v for k, v in self.as_dict().items() if v is not None}
        return Sampling.from_mapping({**kept, **overrides})

    def as_dict(self) -> dict[str, Any]:
        """Every parameter by name, sequences as lists: what cache keys hash."""
        out = {name: getattr(self, name) for name in SAMPLING_NAMES}
        out["stop"] = list(self.stop)
        if self.choice is not None:
            out["choice"] = list(self.choice)
        return out

    @cached_property
    def params_json(self) -> str:
        """The `params` column: every parameter as JSON (computed once per object)."""
        return json.dumps(self.as_dict(), sort_keys=True)


SAMPLING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Sampling))
_ENGINE_KNOWN = ("max_model_len", "dtype", "tensor_parallel_size", "gpu_memory_utilization",
                 "kv_cache_memory_bytes", "max_num_seqs", "enforce_eager", "seed")


@dataclass(frozen=True)
class EngineOptions:
    """A job's [engine] table: what vllm.LLM gets besides the model. The options the
    schema or the engine code knows are typed; any other vLLM option passes through."""

    max_model_len: int | None = None
    dtype: str | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_memory_bytes: int | None = None
    max_num_seqs: int | None = None
    enforce_eager: bool | None = None
    seed: int | None = None
    # (name, value as JSON text), sorted: hashable, so equal options find the same
    # engine in a pool, and decoded back exactly as written.
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_section("engine", self.as_dict())
        size = self.kv_cache_memory_bytes  # not in the schema: the engine code sets it on CPUs
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise SpecError(f"kv_cache_memory_bytes: {size!r} is not a positive integer")
        for name in ("max_model_len", "tensor_parallel_size", "kv_cache_memory_bytes",
                     "max_num_seqs", "seed"):
            object.__setattr__(self, name, _integral(getattr(self, name)))
        if self.gpu_memory_utilization is not None:
            object.__setattr__(self, "gpu_memory_utilization", float(self.gpu_memory_utilization))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> EngineOptions:
        known = {k: v for k, v in raw.items() if k in _ENGINE_KNOWN}
        extra = []
        for name in sorted(set(raw) - set(_ENGINE_KNOWN)):
            try:
                extra.append((name, json.dumps(raw[name], sort_keys=True)))
            except TypeError:
                raise SpecError(f"{name}: {type(raw[name]).__name__} values cannot be "
                                "passed to the engine") from None
        return cls(**known, extra=tuple(extra))

    def as_dict(self) -> dict[str, Any]:
        """The options as vllm.LLM keyword arguments: those set, and the rest as given."""
        out = {name: value for name in _ENGINE_KNOWN if (value := getattr(self, name)) is not None}
        out.update((name, json.loads(text)) for name, text in self.extra)
        return out
