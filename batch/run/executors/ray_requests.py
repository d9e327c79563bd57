"""What travels to a Ray cluster and back: rows for Ray Data LLM's vLLM stage, made
from a run's requests, and the engine's answers made back into Completions.

The driver tokenizes every prompt as an in-process run does (batch.run.executors.tokens, over
the model's own Hugging Face tokenizer, which is vLLM's), so a replica is handed the
same token ids and, at temperature 0, answers what this machine's engine answers.
Prompts the context cannot fit, and requests the stage cannot express, become
failed rows here, before anything is shipped.

Rows cross Arrow and numpy between Ray Data's stages, which constrains their shape:
- an integer field null in some rows of a batch arrives as a float in the others,
  which vLLM's engine core cannot decode (it stops reading requests). So a nullable
  integer is null in every row of a dataset or in none: where requests differ, a
  null becomes the value that means the same to vLLM (see `_stand_ins`);
- a nested struct that is null in every row of one block and set in another cannot
  be concatenated (Ray 2.60's struct alignment fails), and structured-output
  constraints are such a struct. So requests with a constraint and requests without
  travel in datasets of their own (`PASSES`): a job mixing them starts its replicas
  twice.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from batch.run.executors.base import Completion, Share, Sink, interleaved, refuse, write_answer
from batch.run.executors.target import sampling_kwargs
from batch.run.executors.tokens import Tokenizer, context_error, token_ids_many
from batch.run.plan import Request

if TYPE_CHECKING:  # plain types for annotations
    from batch.run.executors.target import EngineTarget
    from batch.run.result import RunResult
    from batch.run.spec.settings import Sampling

CHUNK_ROWS = 1024  # rows tokenized at a time
# Rows shipped as one block, unless the caller says (the executor ships blocks of the
# replicas' batch size): Ray Data hands a task's answers back only when the whole input
# block is done, so a block is also how many answers arrive at once.
BLOCK_ROWS = 64
NULLABLE = ("max_tokens", "seed", "logprobs")  # integers vLLM takes as None too
NO_LIMIT = 2**31 - 1  # a max_tokens the context always reaches first, as with None
STRUCTURED = pa.struct([("choice", pa.list_(pa.string())), ("regex", pa.string()),
                        ("json", pa.string())])
_SAMPLING_FIELDS = [
    ("n", pa.int64()), ("max_tokens", pa.int64()), ("temperature", pa.float64()),
    ("top_p", pa.float64()), ("top_k", pa.int64()), ("min_p", pa.float64()),
    ("seed", pa.int64()), ("stop", pa.list_(pa.string())), ("logprobs", pa.int64()),
    ("presence_penalty", pa.float64()), ("frequency_penalty", pa.float64()),
    ("repetition_penalty", pa.float64()),
]


def row_schema(constrained: bool) -> pa.Schema:
    """The columns the vLLM stage reads (`rid` is ours: which request a row answers);
    a constrained pass's sampling has the constraint, the other's has no such field."""
    fields = [*_SAMPLING_FIELDS, *([("structured_outputs", STRUCTURED)] if constrained else [])]
    return pa.schema([("rid", pa.int64()), ("tokenized_prompt", pa.list_(pa.int64())),
                      ("model", pa.string()), ("sampling_params", pa.struct(fields))])


def constrained(request: Request) -> bool:
    s = request.sampling
    return s.choice is not None or s.regex is not None or s.json_schema is not None


# Requests without a structured-output constraint, then those with one.
PASSES: tuple[Callable[[Request], bool], ...] = (lambda r: not constrained(r), constrained)
# What the driver keeps of the stage's answer.
ANSWER_COLUMNS = ["rid", "generated_text", "generated_tokens", "num_generated_tokens",
                  "logprobs", "__inference_error__"]


@dataclass
class Shipped:
    """A request sent to the cluster: whose it is, and what the driver knows of it."""

    share: int
    request: Request
    prompt_tokens: int


@dataclass(frozen=True)
class Endings:
    """How a request ended, which Ray Data's answer rows do not say: vLLM stops at an
    end-of-sequence token (the tokenizer's, or the generation config's) first, at a stop
    string next, and otherwise at max_tokens or the context ("length")."""

    eos_ids: frozenset[int]
    tokenizer: Any

    def finish_reason(self, sampling: Sampling, tokens: list[int]) -> str:
        if tokens and tokens[-1] in self.eos_ids:
            return "stop"
        if sampling.stop:
            # The answer's text lost the stop string; the tokens still hold it.
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if any(stop in text for stop in sampling.stop):
                return "stop"
        return "length"


def load_tokenizer(target: EngineTarget) -> tuple[Tokenizer, Endings]:
    """The model's tokenizer as vLLM loads it (transformers' AutoTokenizer, the same
    options), and its end-of-sequence tokens."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    options = target.options.as_dict()
    source = options.get("tokenizer") or target.model
    revision = options.get("tokenizer_revision") or target.revision
    remote = bool(options.get("trust_remote_code", False))
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=remote)
    eos = {tokenizer.eos_token_id}
    try:
        config: Any = GenerationConfig.from_pretrained(target.model, revision=target.revision)
    except OSError:  # no generation_config.json: vLLM falls back to the model's config too
        config = AutoConfig.from_pretrained(target.model, revision=target.revision,
                                            trust_remote_code=remote)
    found = getattr(config, "eos_token_id", None)
    eos.update(found if isinstance(found, list) else [found])
    return tokenizer, Endings(frozenset(i for i in eos if isinstance(i, int)), tokenizer)


class Outbox:
    """A group's requests of one pass as blocks of rows for the vLLM stage, each kept
    by row id."""

    def __init__(self, shares: list[Share], tokenizer: Tokenizer, target: EngineTarget,
                 model_source: str, picks: Callable[[Request], bool],
                 block_rows: int = BLOCK_ROWS) -> None:
        self.shares, self.tokenizer, self.model_source = shares, tokenizer, model_source
        self.picks, self.block_rows = picks, max(1, block_rows)
        self.max_model_len = target.options.max_model_len
        self.shipped: list[Shipped] = []
        self._mixed = _mixed_nulls([r for _, r in self._pending()])

    def _pending(self) -> Iterator[tuple[int, Request]]:
        return ((i, r) for i, r in interleaved(self.shares) if self.picks(r))

    def blocks(self, out: Sink, result: RunResult) -> Iterator[pa.Table]:
        """Tokenize in chunks; write a failed row for each request that cannot go, and
        yield the rest as tables of `row_schema`, `block_rows` rows each (the last of a
        chunk may hold fewer)."""
        pending = self._pending()
        while chunk := list(islice(pending, CHUNK_ROWS)):
            with _timed(result, "tokenize_s"):
                ids = token_ids_many(self.tokenizer, [r.prompt for _, r in chunk])
            columns: dict[str, list[Any]] = {name: [] for name in ("rid", "tokenized_prompt",
                                                                   "model", "sampling_params")}
            for (i, request), tokens in zip(chunk, ids, strict=True):
                error = context_error(len(tokens), self.max_model_len) \
                    or _inexpressible(request.sampling)
                if error is not None:
                    refuse(self.shares[i], request, error, len(tokens), out, result)
                    continue
                share = self.shares[i]
                columns["rid"].append(len(self.shipped))
                columns["tokenized_prompt"].append(tokens)
                columns["model"].append(share.adapter_path or self.model_source)
                columns["sampling_params"].append(self._sampling(request.sampling, len(tokens)))
                self.shipped.append(Shipped(i, request, len(tokens)))
            if columns["rid"]:
                schema = row_schema(constrained(self.shipped[-1].request))
                for start in range(0, len(columns["rid"]), self.block_rows):
                    # Each block with buffers of its own (a slice of one table would
                    # reference, and may ship, the whole chunk's).
                    yield pa.Table.from_pydict(
                        {k: v[start:start + self.block_rows] for k, v in columns.items()},
                        schema=schema)

    def _sampling(self, sampling: Sampling, prompt_tokens: int) -> dict[str, Any]:
        kwargs = sampling_kwargs(sampling)
        kwargs["stop"] = kwargs["stop"] or []
        structured = kwargs.pop("structured_outputs")
        if structured is not None:
            # A JSON schema as text: as an Arrow struct, schemas of different shapes
            # would be filled out with nulls into one shape.
            if isinstance(structured.get("json"), dict):
                structured = {"json": json.dumps(structured["json"])}
            kwargs["structured_outputs"] = structured
        for name, value in _stand_ins(sampling, prompt_tokens, self.max_model_len).items():
            if name in self._mixed:
                kwargs[name] = value
        return kwargs


def answer(row: dict[str, Any], shipped: Shipped, endings: Endings) -> Completion:
    """The engine's answer to one shipped request, as an in-process engine gives it."""
    error = row.get("__inference_error__") or None
    if error is not None:
        return Completion([], None, shipped.prompt_tokens, 0,
                          error=f"rejected by the engine: {error}".splitlines()[0])
    sampling = shipped.request.sampling
    tokens = [int(t) for t in row["generated_tokens"] or []]
    logprobs = None
    if sampling.logprobs is not None and row.get("logprobs") is not None:
        logprobs = [_logprob_step(step, chosen)
                    for step, chosen in zip(row["logprobs"], tokens, strict=True)]
    return Completion([row["generated_text"] or ""], endings.finish_reason(sampling, tokens),
                      shipped.prompt_tokens, int(row["num_generated_tokens"]), logprobs)


def write_answers(block: pa.Table, outbox: Outbox, endings: Endings, shares: list[Share],
                  out: Sink, result: RunResult, work: list[int]) -> int:
    """Write one block of the vLLM stage's answers through the run's sink and count
    them; adds each share's tokens to `work`. Returns the rows written. This is all a
    driver does per answer (bench.ray times it alone, without an engine)."""
    rows = 0
    for row in block.to_pylist():
        shipped = outbox.shipped[row["rid"]]
        completion = answer(row, shipped, endings)
        work[shipped.share] += write_answer(shares[shipped.share], shipped.request, completion,
                                            out, result)
        rows += len(shipped.request.input_ids)
    return rows


def _logprob_step(step: Any, chosen: int) -> list[dict[str, Any]]:
    """One token of the `logprobs` column: the chosen token first, then the others
    vLLM returned, each with its text and rank; -inf kept as None (JSON has none)."""
    entries = {int(tid): lp for tid, lp in _items(step)}

    def entry(tid: int) -> dict[str, Any]:
        lp = entries[tid]
        value = lp["logprob"]
        value = None if value is None or value == float("-inf") else float(value)
        return {"token_id": tid, "token": lp["decoded_token"], "logprob": value,
                "rank": None if lp["rank"] is None else int(lp["rank"])}

    return [entry(chosen), *(entry(tid) for tid in entries if tid != chosen)]


def _items(step: Any) -> list[tuple[Any, Any]]:
    # A mapping of token id to its logprob; Arrow may hand it over as (key, value) pairs.
    return list(step.items()) if hasattr(step, "items") else [tuple(pair) for pair in step]


def _inexpressible(sampling: Sampling) -> str | None:
    if sampling.n > 1:
        return ("n > 1 cannot run on Ray: Ray Data's vLLM stage returns one completion per "
                "row (run this job without --ray)")
    return None


def _mixed_nulls(requests: list[Request]) -> set[str]:
    """The nullable integers that are null in some requests and set in others."""
    seen: dict[str, set[bool]] = {name: set() for name in NULLABLE}
    for sampling in {r.sampling for r in requests}:
        for name in NULLABLE:
            seen[name].add(getattr(sampling, name) is None)
    return {name for name, kinds in seen.items() if len(kinds) > 1}


def _stand_ins(sampling: Sampling, prompt_tokens: int,
               max_model_len: int | None) -> dict[str, int]:
    """For each null integer, a value that means the same to vLLM: no max_tokens is
    up to the end of the context; no seed is any seed (and greedy ignores it); no
    logprobs asks for none, so asking for the chosen token's and dropping it is equal."""
    out: dict[str, int] = {}
    if sampling.max_tokens is None:
        out["max_tokens"] = max_model_len - prompt_tokens if max_model_len else NO_LIMIT
    if sampling.seed is None:
        out["seed"] = secrets.randbits(63)
    if sampling.logprobs is None:
        out["logprobs"] = 0
    return out


class _timed:
    """Adds the time spent inside to one of the run's phases."""

    def __init__(self, result: RunResult, phase: str) -> None:
        self.result, self.phase = result, phase

    def __enter__(self) -> None:
        self.began = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        phases = self.result.phases
        setattr(phases, self.phase, getattr(phases, self.phase) + time.perf_counter() - self.began)
