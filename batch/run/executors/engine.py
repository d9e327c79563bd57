"""The vLLM engine in this process: the only module that imports vllm, and only when
rows need generating (the local executor's engine, batch.run.executors.local).

Requests go in through `LLM.enqueue` and come back through the engine's
`step()` loop as they finish, so results stream into Parquet shards while
the scheduler's batch stays full — not one small `generate` call per shard.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batch.run.executors.base import Completion, stdout_to_stderr
from batch.run.executors.target import (
    ENGINE_ENVIRONMENT,
    EngineTarget,
    llm_kwargs,
    sampling_kwargs,
)
from batch.run.executors.tokens import Prompt, token_ids, token_ids_many
from batch.run.spec.settings import Sampling

if TYPE_CHECKING:  # importing vLLM takes seconds: only a run with rows to generate pays it
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest
    from vllm.outputs import RequestOutput
    from vllm.tokenizers import TokenizerLike

# our id, prompt token ids, sampling, and the LoRA adapter's directory (None: the base)
EngineRequest = tuple[str, list[int], Sampling, str | None]


@dataclass
class EngineStats:
    """Where a stream's time went inside vLLM, measured as it runs."""

    enqueue_s: float = 0.0  # handing requests to the engine (LLM.enqueue)
    step_s: float = 0.0  # engine steps: scheduling, the forward passes, detokenizing
    steps: int = 0


@dataclass
class Engine:
    target: EngineTarget
    llm: LLM | None
    start_seconds: float
    max_model_len: int
    llm_kwargs: dict[str, Any] = field(default_factory=dict)
    _params: dict[Sampling, SamplingParams] = field(default_factory=dict)
    _loras: dict[str, LoRARequest] = field(default_factory=dict)
    _lora_ids: int = 0

    @classmethod
    def start(cls, target: EngineTarget) -> Engine:
        """Import vLLM and load the model; the time reported covers both, as that is
        what a run waits for before its first token."""
        began = time.perf_counter()
        for name, value in ENGINE_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        from vllm import LLM

        kwargs = llm_kwargs(target, on_cpu=_on_cpu())
        with stdout_to_stderr():
            llm = LLM(**kwargs)
        seconds = time.perf_counter() - began
        return cls(target, llm, seconds, llm.llm_engine.model_config.max_model_len, kwargs)

    @property
    def _live(self) -> LLM:
        if self.llm is None:
            raise RuntimeError("the engine was closed")
        return self.llm

    @property
    def tokenizer(self) -> TokenizerLike:
        return self._live.get_tokenizer()

    def token_ids(self, prompt: Prompt) -> list[int]:
        return token_ids(self.tokenizer, prompt)

    def token_ids_many(self, prompts: list[Prompt]) -> list[list[int]]:
        """Plain prompts go through the fast tokenizer as one batch; chats one by one."""
        return token_ids_many(self.tokenizer, prompts)

    def sampling_params(self, sampling: Sampling) -> SamplingParams:
        """vllm.SamplingParams for sampling settings, built once per distinct set."""
        if sampling not in self._params:
            from vllm import SamplingParams
            from vllm.sampling_params import StructuredOutputsParams

            kwargs = sampling_kwargs(sampling)
            structured = kwargs.pop("structured_outputs")
            self._params[sampling] = SamplingParams(
                **kwargs,
                structured_outputs=StructuredOutputsParams(**structured) if structured else None)
        return self._params[sampling]

    def lora(self, path: str | None) -> LoRARequest | None:
        """The LoRARequest for an adapter directory: one id per adapter while it is
        loaded, so vLLM loads each adapter once and keeps it."""
        if path is None:
            return None
        if path not in self._loras:
            from vllm.lora.request import LoRARequest

            self._lora_ids += 1
            self._loras[path] = LoRARequest(f"adapter-{self._lora_ids}", self._lora_ids, path)
        return self._loras[path]

    def use_adapters(self, paths: Iterable[str]) -> None:
        """Unload the adapters earlier jobs left that these requests do not use, so the
        loaded ones never reach the slot kept empty (see `llm_kwargs`)."""
        keep = set(paths)
        for path in [p for p in self._loras if p not in keep]:
            self._live.llm_engine.remove_lora(self._loras.pop(path).lora_int_id)

    def stream(
        self,
        requests: Iterable[EngineRequest],
        *,
        window: int | None = None,
        stats: EngineStats | None = None,
    ) -> Iterator[tuple[str, Completion]]:
        """Yield (our id, completion) as requests finish, in completion order.

        Requests are fed `window` at a time and topped up whenever half have
        finished, so the scheduler always has more work queued than it can
        batch, while memory stays bounded on million-row jobs. Each request may
        name a LoRA adapter: requests of several adapters (and of the base) share
        the scheduler's batches. `stats` (if given) adds up the time spent
        enqueueing and stepping."""
        from vllm import RequestOutput
        from vllm.inputs import TokensPrompt

        llm = self._live
        stats = stats if stats is not None else EngineStats()
        max_seqs = llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        window = window or max(4 * max_seqs, 1024)
        pending = iter(requests)
        ours: dict[str, str] = {}
        engine = llm.llm_engine

        rejected: list[tuple[str, Completion]] = []
        exhausted = False

        def enqueue(batch: list[EngineRequest]) -> None:
            began = time.perf_counter()
            try:
                ids = llm.enqueue(
                    [TokensPrompt(prompt_token_ids=tokens) for _, tokens, _, _ in batch],
                    [self.sampling_params(s) for _, _, s, _ in batch],
                    lora_request=[self.lora(path) for _, _, _, path in batch], use_tqdm=False,
                )
            finally:
                stats.enqueue_s += time.perf_counter() - began
            for (our_id, _, _, _), vllm_id in zip(batch, ids, strict=True):
                ours[_external_id(vllm_id)] = our_id

        def top_up(count: int) -> None:
            nonlocal exhausted
            batch = [r for _, r in zip(range(count), pending, strict=False)]
            exhausted = len(batch) < count
            if not batch:
                return
            try:
                enqueue(batch)
            except Exception:
                # Find the bad request(s) one by one; the rest still run.
                for request in batch:
                    try:
                        enqueue([request])
                    except Exception as exc:
                        message = f"rejected by the engine: {type(exc).__name__}: {exc}"
                        rejected.append((request[0], Completion([], None, len(request[1]), 0,
                                                                error=message.splitlines()[0])))

        while True:
            if len(ours) < window // 2:
                top_up(window - len(ours))
            while rejected:
                yield rejected.pop()
            if not ours:
                if exhausted:
                    break
                continue  # a whole batch was rejected; enqueue the next one
            began = time.perf_counter()
            outputs = engine.step()
            stats.step_s += time.perf_counter() - began
            stats.steps += 1
            for output in outputs:
                # Outputs of requests vLLM aborted while rejecting a batch are not ours;
                # pooling outputs never come from a generating model.
                if not isinstance(output, RequestOutput):
                    continue
                if output.finished and (our_id := ours.pop(output.request_id, None)) is not None:
                    yield our_id, _completion(output)

    def close(self) -> None:
        if self.llm is not None:
            with contextlib.suppress(AttributeError):
                self.llm.llm_engine.engine_core.shutdown()
        self.llm = None


def _external_id(request_id: str) -> str:
    """enqueue() returns the engine's internal id ("7-1a2b3c4d"); outputs carry the
    caller-facing one ("7"), which LLM assigns from a counter."""
    head, _, tail = request_id.rpartition("-")
    return head if head.isdigit() and len(tail) == 8 else request_id


def _completion(output: RequestOutput) -> Completion:
    outs = output.outputs
    logprobs = None
    if outs and outs[0].logprobs is not None:
        # Per step: the chosen token first, then the alternatives vLLM returned (as many
        # as the request's `logprobs` asked for), each with its text and rank.
        logprobs = [
            [_logprob_entry(chosen, step[chosen]),
             *(_logprob_entry(tid, lp) for tid, lp in step.items() if tid != chosen)]
            for step, chosen in zip(outs[0].logprobs, outs[0].token_ids, strict=True)
        ]
    return Completion(
        texts=[o.text for o in outs],
        finish_reason=outs[0].finish_reason if outs else None,
        prompt_tokens=len(output.prompt_token_ids or []),
        output_tokens=sum(len(o.token_ids) for o in outs),
        logprobs=logprobs,
    )


def _logprob_entry(token_id: int, lp: Any) -> dict[str, Any]:
    """One token of the `logprobs` column; -inf (a token the sampler could never pick)
    is kept as None: JSON has no infinity."""
    value = lp.logprob if lp.logprob != float("-inf") else None
    return {"token_id": token_id, "token": lp.decoded_token, "logprob": value, "rank": lp.rank}


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class EnginePool:
    """Engines kept for the life of a process: one `almanac run a.toml b.toml`
    with the same model, or a test session, starts the engine once."""

    def __init__(self) -> None:
        self._engines: dict[EngineTarget, Engine] = {}
        self.starts = 0

    def get(self, target: EngineTarget) -> Engine:
        if target in self._engines:
            return self._engines[target]
        for have, engine in self._engines.items():
            # An engine with LoRA enabled serves requests without an adapter as well,
            # and adapters up to its rank, as many at once as it has room for.
            if have.serves(target):
                return engine
        # Two engines rarely fit in memory beside each other.
        self.close()
        self._engines[target] = Engine.start(target)
        self.starts += 1
        return self._engines[target]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
