"""The metrics: how one output compares with its reference, as a number in [0, 1].

A metric answers 1.0 or 0.0 (chrF: a fraction) for whatever the model wrote; an
output that does not parse, match or contain a number is simply wrong. Only a
reference the metric cannot use (not a number, a pattern that does not compile)
raises RowError: that is the data's problem, not the candidate's, so the row's
score becomes an error instead of a zero.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from batch.score.settings import PatternError, RowError, ScoreSpec, compile_pattern

if TYPE_CHECKING:  # sacrebleu and jsonschema load with the first row that needs them
    from jsonschema.protocols import Validator
    from sacrebleu.metrics import CHRF

Metric = Callable[[str, "str | None"], float]

# A number as people write it: 1,234.5 with thousands separators, 12, -0.5, .5, 1e-3.
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")


def normalize(text: str) -> str:
    """Case, whitespace and punctuation folded: "  The Drupe." and "the drupe" agree."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(text.split())


def first_number(text: str) -> float | None:
    found = _NUMBER.search(text)
    return float(found.group().replace(",", "")) if found else None


def make_metric(spec: ScoreSpec) -> Metric:
    """The function scoring (output, reference) for `spec` (every metric but the judge,
    which asks a model: batch.score.judge)."""
    builders: dict[str, Callable[[dict[str, Any]], Metric]] = {
        "exact": lambda _o: _exact,
        "normalized": lambda _o: _normalized,
        "contains": _contains,
        "regex": _regex,
        "json": _json,
        "numeric": _numeric,
        "chrf": _chrf,
    }
    if spec.metric not in builders:
        raise ValueError(f"{spec.metric} is not scored by a local metric")
    return builders[spec.metric](spec.options)


def _needed(reference: str | None) -> str:
    if reference is None:  # the schema requires a reference for these metrics
        raise RowError("no reference")
    return reference


def _exact(output: str, reference: str | None) -> float:
    return float(output.strip() == _needed(reference).strip())


def _normalized(output: str, reference: str | None) -> float:
    return float(normalize(output) == normalize(_needed(reference)))


def _contains(options: dict[str, Any]) -> Metric:
    fold = not options.get("case_sensitive", False)

    def contains(output: str, reference: str | None) -> float:
        wanted = _needed(reference).strip()
        if not wanted:
            raise RowError("the reference is empty: every output would contain it")
        if fold:
            return float(wanted.casefold() in output.casefold())
        return float(wanted in output)

    return contains


def _regex(options: dict[str, Any]) -> Metric:
    case_sensitive = bool(options.get("case_sensitive", False))
    fixed = options.get("pattern")
    full = bool(options.get("full_match", False))

    def regex(output: str, reference: str | None) -> float:
        # RE2 (batch.score.settings.compile_pattern): linear time, whatever the pattern; one
        # RE2 refuses (its syntax, its memory bound) leaves the row unscored, with why.
        try:
            pattern = compile_pattern(fixed if fixed is not None else _needed(reference),
                                      case_sensitive)
        except PatternError as exc:
            raise RowError(f"the reference is {exc}") from None
        found = pattern.fullmatch(output.strip()) if full else pattern.search(output)
        return float(found is not None)

    return regex


_MISSING = object()


def _at(value: Any, path: str) -> Any:
    """The value at a dotted path (`answer.items.0`): keys of objects, indexes of arrays."""
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _equal(value: Any, wanted: str) -> bool:
    """A JSON value against a reference: as text, or as the JSON the reference spells
    ("3" is the number 3, "true" the boolean; but true is not 1)."""
    if isinstance(value, str) and value == wanted:
        return True
    try:
        expected = json.loads(wanted)
    except ValueError:
        return False
    return isinstance(value, bool) == isinstance(expected, bool) and value == expected


def _json(options: dict[str, Any]) -> Metric:
    schema: dict[str, Any] | None = options.get("schema")
    path: str | None = options.get("field")
    validator: Validator | None = None
    if schema is not None:
        import jsonschema

        validator = jsonschema.validators.validator_for(schema)(schema)

    def json_metric(output: str, reference: str | None) -> float:
        try:
            parsed = json.loads(output)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            return 0.0
        if validator is not None and not validator.is_valid(parsed):
            return 0.0
        if path is not None:
            value = _at(parsed, path)
            wanted = _needed(reference)
            return float(value is not _MISSING and _equal(value, wanted))
        return 1.0

    return json_metric


def _numeric(options: dict[str, Any]) -> Metric:
    tolerance = float(options.get("tolerance", 0.0))
    relative = float(options.get("relative_tolerance", 0.0))

    def numeric(output: str, reference: str | None) -> float:
        text = _needed(reference).strip()
        wanted = first_number(text)
        if wanted is None or _NUMBER.fullmatch(text) is None:
            raise RowError(f"the reference {text!r} is not a number")
        got = first_number(output)
        if got is None or math.isnan(got):
            return 0.0
        return float(abs(got - wanted) <= max(tolerance, relative * abs(wanted)))

    return numeric


@lru_cache(maxsize=8)
def _chrf_metric(char_order: int, word_order: int, beta: float) -> CHRF:
    from sacrebleu.metrics import CHRF

    return CHRF(char_order=char_order, word_order=word_order, beta=beta)


def _chrf(options: dict[str, Any]) -> Metric:
    chrf = _chrf_metric(int(options.get("char_order", 6)), int(options.get("word_order", 0)),
                        float(options.get("beta", 2)))

    def chrf_metric(output: str, reference: str | None) -> float:
        return chrf.sentence_score(output, [_needed(reference)]).score / 100.0

    return chrf_metric
