"""JSON Schemas shipped with Almanac, found the same way from a checkout and a wheel."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    """`load("job")` reads `schemas/job.schema.json`."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def validator(name: str):  # noqa: ANN201 - jsonschema's validator class is dynamic
    import jsonschema

    schema = load(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def problems(name: str, instance: Any) -> list[str]:
    """Every problem with `instance`, each naming the field path first."""
    out = []
    for err in sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = ".".join(
            f"[{p}]" if isinstance(p, int) else str(p) for p in err.absolute_path
        ).replace(".[", "[")
        # A schema may word its own messages per keyword (`x-messages`), where
        # jsonschema's would print the instance and the subschema back.
        custom = err.schema.get("x-messages", {}) if isinstance(err.schema, dict) else {}
        out.append(f"{path or '(top level)'}: {custom.get(err.validator, err.message)}")
    return out
