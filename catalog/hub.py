"""Hub metadata mapped onto catalog entries: the API's ModelInfo, model cards, config.json.

Where a fact lives on the Hub is this module's business; what a Hub tag or
card language means for our domains and languages is `catalog.taxonomy`'s. No I/O here:
`catalog.hubapi` asks the Hub, `catalog.localmodels` reuses the card and config mapping
for directories on disk.
"""

from __future__ import annotations

import re
from typing import Any

from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.repocard_data import ModelCardData

from catalog import taxonomy
from catalog.records import EvalRecord, ModelEntry

# Hub relation names (card `base_model_relation`, `baseModels.relation`, the
# `base_model:<relation>:<id>` tags and the model tree's headings) → ours.
RELATIONS = {
    "finetune": "finetune", "finetunes": "finetune", "fine-tune": "finetune",
    "finetuned": "finetune",
    "adapter": "adapter", "adapters": "adapter", "lora": "adapter",
    "quantized": "quantized", "quantization": "quantized", "quantizations": "quantized",
    "merge": "merge", "merges": "merge", "merged": "merge",
}

# safetensors dtype names → the torch names config.json uses.
_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
}

# config.json keys that hold the context length, most specific first (transformers names
# it max_position_embeddings; GPT-2 and its kin n_positions or n_ctx, others the rest).
# schemas/hub-model.schema.json checks each of them.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "max_seq_len",
                 "seq_length", "n_ctx")

# The YAML block at the top of a card, as huggingface_hub.repocard matches it.
FRONT_MATTER = re.compile(r"\A\s*---[\r\n]+[\s\S]*?[\r\n]+---(?:\r\n|\n|\Z)")

# The model tree's tags: `base_model:<relation>:<repo id>` (next to a bare `base_model:<id>`).
BASE_MODEL_TAG = re.compile(r"^base_model:([a-z_-]+):(.+)$")


def entry_from_model_info(info: ModelInfo, *, card_text: str = "",
                          config: dict[str, Any] | None = None) -> ModelEntry:
    """Map what the Hub API says about a model onto a catalog entry (no I/O). `config`:
    the repo's config.json when it was read (the API's `config` is trimmed: no context
    length, no dtype)."""
    entry = ModelEntry(
        ref=info.id,
        repo_id=info.id,
        name=info.id.rsplit("/", 1)[-1],
        source="hub",
        revision=info.sha,
        gated=bool(info.gated),
        downloads=info.downloads,
        likes=info.likes,
    )
    card = info.card_data or ModelCardData()
    apply_card(entry, card, card_text)
    apply_config(entry, {**(info.config or {}), **(config or {})})

    hub_tags = info.tags or []
    # Hub tags are a superset of the card's; key:value tags (license:, region:,
    # base_model:, arxiv:) are machine data and language codes have their own
    # column, so neither is kept as a tag.
    card_languages = set(_as_list(card.language))
    entry.tags = _unique([
        *entry.tags, *(t for t in hub_tags if ":" not in t and t not in card_languages)
    ])
    entry.task = info.pipeline_tag or entry.task
    entry.domains = taxonomy.hub_domains([*hub_tags, *_as_list(card.tags)], entry.task)
    entry.license = entry.license or _tag_value(hub_tags, "license")

    # The Hub's lineage names the base by its id today (a card may still say a renamed
    # repo's old id); the card's stands where the Hub says nothing.
    base, relation = hub_lineage(info)
    if base:
        entry.base_model, entry.relation = base, relation or entry.relation

    if info.safetensors is not None:
        entry.parameters = info.safetensors.total
        entry.dtype = entry.dtype or dtype_from_counts(info.safetensors.parameters)
    elif info.gguf:
        entry.parameters = info.gguf.get("total")
        entry.context_length = entry.context_length or info.gguf.get("context_length")
    entry.evals = [*entry.evals, *_hub_evals(info)]
    infer_relation(entry, info.config or {}, gguf=bool(info.gguf) and info.safetensors is None)
    return entry


def lineage_unsaid(info: ModelInfo) -> bool:
    """Whether the card names a base model but the Hub's listing says nothing of how the
    model derives from it (no `base_model:<relation>:` tag, no `baseModels`): the one case
    where `model_info` for this model alone is worth asking."""
    card = info.card_data
    return bool(card is not None and card.base_model) and hub_lineage(info) == (None, None)


def apply_card(entry: ModelEntry, card: ModelCardData, text: str) -> None:
    """Fill an entry from model card metadata and body (shared with local directories)."""
    entry.languages = taxonomy.hub_languages(card.language)
    license_ = card.license
    if isinstance(license_, list):  # a few cards list several; the first is the main one
        license_ = license_[0] if license_ else None
    if license_ == "other" and card.license_name:
        license_ = card.license_name
    entry.license = license_
    entry.tags = _unique(_as_list(card.tags))
    entry.task = card.pipeline_tag
    entry.domains = taxonomy.hub_domains(_as_list(card.tags), card.pipeline_tag)
    base = card.base_model
    entry.base_model = (base[0] if base else None) if isinstance(base, list) else base
    entry.relation = RELATIONS.get(str(card.get("base_model_relation", "")).lower())
    if entry.relation is None and isinstance(base, list) and len(base) > 1:
        entry.relation = "merge"  # several bases can only be a merge
    entry.card = text
    entry.description = card_summary(text)
    entry.evals = card_evals(card)


def apply_config(entry: ModelEntry, config: dict[str, Any]) -> None:
    """Architecture, context length and dtype from a transformers config."""
    # Multimodal configs keep the language model's settings under text_config.
    nested = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    architectures = config.get("architectures") or []
    entry.architecture = architectures[0] if architectures else None
    entry.context_length = next(
        (source[key] for source in (config, nested) for key in _CONTEXT_KEYS
         if isinstance(source.get(key), int)),
        None,
    )
    dtype = config.get("torch_dtype") or config.get("dtype") or nested.get("torch_dtype")
    entry.dtype = str(dtype) if dtype else None


def infer_relation(entry: ModelEntry, config: dict[str, Any], *, gguf: bool = False) -> None:
    """A base model without a stated relation: what the Hub's model tree would assume."""
    if entry.base_model and entry.relation is None:
        entry.relation = "quantized" if gguf or config.get("quantization_config") else "finetune"


def dtype_from_counts(counts: dict[str, int] | None) -> str | None:
    """The weights' dtype when they all share one (`{"BF16": n}` → bfloat16)."""
    if not counts or len(counts) != 1:
        return None
    (name,) = counts
    return _DTYPES.get(name.upper(), name.lower())


def card_evals(card: ModelCardData) -> list[EvalRecord]:
    """The card's model-index results (ModelCardData parses them into EvalResult)."""
    out = []
    for result in card.eval_results or []:
        value = _number(result.metric_value)
        if value is None:
            continue
        benchmark = result.dataset_name or result.dataset_type
        if result.dataset_config and result.dataset_config not in benchmark:
            benchmark = f"{benchmark} ({result.dataset_config})"
        out.append(EvalRecord(
            benchmark=benchmark,
            metric=result.metric_name or result.metric_type,
            value=value,
            source=result.source_url or result.source_name or "model card",
        ))
    return out


def _hub_evals(info: ModelInfo) -> list[EvalRecord]:
    """Results from the Hub's `.eval_results/` files, newer than model-index."""
    out = []
    for result in info.eval_results or []:
        value = _number(result.value)
        if value is None:
            continue
        out.append(EvalRecord(
            benchmark=result.dataset_id,
            metric=result.task_id,
            value=value,
            source=result.source_url or result.source_name or "hub eval results",
        ))
    return out


def hub_lineage(info: ModelInfo) -> tuple[str | None, str | None]:
    """Base model and relation as the Hub worked them out: `baseModels` (asked of one
    model), else the model tree's `base_model:<relation>:<id>` tags (in every listing)."""
    raw = info.base_models
    if isinstance(raw, dict):
        models = [m.get("id") for m in raw.get("models") or [] if isinstance(m, dict)]
        relation = RELATIONS.get(str(raw.get("relation", "")).lower())
        if models and models[0]:
            return models[0], relation
    elif isinstance(raw, list) and raw and isinstance(raw[0], str):
        return raw[0], None
    for tag in info.tags or []:
        if (m := BASE_MODEL_TAG.match(tag)) and (relation := RELATIONS.get(m.group(1))):
            return m.group(2), relation
    return None, None


def card_summary(text: str, limit: int = 300) -> str:
    """The card's first prose paragraph: headings, images, HTML and tables are skipped."""
    for block in re.split(r"\n\s*\n", text or ""):
        lines = [ln.strip() for ln in block.strip().splitlines()]
        if not lines or lines[0].startswith(("#", "!", "<", "|", "```", "---", "[!")):
            continue
        para = " ".join(lines)
        para = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", para)  # keep link text only
        if len(para) > limit:
            para = para[: limit - 1].rsplit(" ", 1)[0] + "…"
        return para
    return ""


def _tag_value(tags: list[str], key: str) -> str | None:
    prefix = key + ":"
    return next((t[len(prefix):] for t in tags if t.startswith(prefix)), None)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # "N/A" and friends appear in real cards; such a row says nothing


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in items if i))
