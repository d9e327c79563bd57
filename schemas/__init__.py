"""JSON Schemas shipped with Almanac, found the same way from a checkout and a wheel."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema loads its metaschemas on import: only when validating
    from jsonschema.protocols import Validator


@cache
def load(name: str) -> dict[str, Any]:
    """`load("job")` reads `schemas/job.schema.json`."""
    # Beside this file in a checkout and in an installed wheel alike (importlib.resources
    # would find them there too, after importing zipfile for packages that never are).
    text = (Path(__file__).parent / f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def validator(name: str) -> Validator:
    import jsonschema

    schema = load(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@cache
def job_name_pattern() -> str:
    """The pattern every job name matches, as job.schema.json's `name` states it: the
    one definition, read by whatever checks a job name (the HTTP paths, the cache)."""
    pattern = load("job")["properties"]["name"]["pattern"]
    assert isinstance(pattern, str)
    return pattern


@cache
def job_name_regex() -> re.Pattern[str]:
    return re.compile(job_name_pattern())


def is_job_name(name: str) -> bool:
    """Whether `name` is a valid job name. `fullmatch`: with `match`, the pattern's `$`
    would let a trailing newline through."""
    return job_name_regex().fullmatch(name) is not None


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
