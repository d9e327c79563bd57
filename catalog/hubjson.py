"""The Hub's answers checked before they are read: a model's JSON against
`schemas/hub-model.schema.json`, then huggingface_hub's own `ModelInfo`.

An answer that does not fit (no `id`, `safetensors` without `total`, `tags` as one string,
a card's languages written as one string) is a `Garbled` naming the field, never a
traceback; what the Hub added that we do not read is ignored.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import schemas

if TYPE_CHECKING:  # the validators and huggingface_hub load when the first answer is checked
    from huggingface_hub.hf_api import ModelInfo
    from jsonschema.protocols import Validator

SCHEMA = "hub-model"


class Garbled(ValueError):
    """An answer from the Hub that cannot be read; the message says what was wrong."""


@cache
def _schema(definition: str | None) -> dict[str, Any]:
    schema = schemas.load(SCHEMA)
    if definition is None:
        return schema
    # One of its $defs on its own, e.g. a whole config.json.
    return {"$schema": schema["$schema"], "$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}


@cache
def _fast(definition: str | None = None) -> Any:
    """The Rust validator: a listing of 10,000 models is checked in a tenth of a second,
    where jsonschema takes milliseconds per item. It only says yes or no."""
    import jsonschema_rs

    return jsonschema_rs.validator_for(_schema(definition))


@cache
def _explaining(definition: str | None = None) -> Validator:
    """jsonschema, for the answers that do not fit: its errors carry the schema that
    failed, and with it our own wording (`x-messages`)."""
    import jsonschema

    schema = _schema(definition)
    return jsonschema.validators.validator_for(schema)(schema)


def problems(instance: Any, definition: str | None = None) -> list[str]:
    """What is wrong with `instance`, each naming its field first (`tags: 'x' is not a list
    of strings`); empty when it fits."""
    if _fast(definition).is_valid(instance):
        return []
    out = []
    for err in sorted(_explaining(definition).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err.absolute_path)
        path = path.replace(".[", "[")
        if err.validator == "required" and isinstance(err.instance, dict):
            missing = [k for k in err.validator_value if k not in err.instance]
            out.append(f"{path}{' has no ' if path else 'no '}{', '.join(f'`{k}`' for k in missing)}")
            continue
        custom = err.schema.get("x-messages", {}) if isinstance(err.schema, dict) else {}
        if err.validator in custom:
            out.append(f"{path or 'the answer'}: {short(err.instance)} {custom[err.validator]}")
        else:
            message = err.message if len(err.message) <= 160 else err.message[:157] + "..."
            out.append(f"{path or 'the answer'}: {message}")
    return out


def model_info(data: Any, *, where: str) -> ModelInfo:
    """A model's JSON as huggingface_hub's ModelInfo, or Garbled naming `where` (the model,
    or the listing item) and what was wrong."""
    from huggingface_hub.hf_api import ModelInfo

    if not isinstance(data, dict):
        raise Garbled(f"{where}: the Hub's answer is {type(data).__name__} {short(data)}, not a JSON object")
    name = data["id"] if isinstance(data.get("id"), str) and data["id"] else where
    if found := problems(data):
        raise Garbled(f"{name}: the Hub's answer does not fit: {'; '.join(found)}")
    if "siblings" not in data:
        data = {**data, "siblings": None}  # as list_models does: a listing item has none
    try:
        return ModelInfo(**data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a shape the schema does not cover
        raise Garbled(f"{name}: huggingface_hub cannot read the Hub's answer: "
                      f"{type(exc).__name__}: {exc}") from None


def config(data: Any, *, where: str) -> dict[str, Any]:
    """A repo's config.json, checked in the fields the mapping reads."""
    if not isinstance(data, dict):
        raise Garbled(f"{where}: config.json is {type(data).__name__} {short(data)}, not a JSON object")
    if found := problems(data, "config"):
        raise Garbled(f"{where}: config.json does not fit: {'; '.join(found)}")
    return data


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
