"""A job's [score] table, checked once: the metric, its options, the reference template
compiled, and the scorer digest that tells stored scores from stale ones.

The job schema has already checked the table's shape (`schemas/job.schema.json`,
`score`); what is left here is what a schema cannot say: options that belong to
another metric, templates and patterns that do not compile.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import jinja2

from batch.run.spec.errors import SpecError
from batch.run.spec.sandbox import RenderError, bounded_environment, compile_bounded, render_row

if TYPE_CHECKING:  # the spec loader pulls in the run room's settings: annotations only
    import re2

    from batch.run.spec.job import JobSpec

METRICS = ("exact", "normalized", "contains", "regex", "json", "numeric", "chrf", "judge")
# The options each metric takes; any other option set is a mistake worth a message.
OPTIONS: dict[str, frozenset[str]] = {
    "exact": frozenset(),
    "normalized": frozenset(),
    "contains": frozenset({"case_sensitive"}),
    "regex": frozenset({"case_sensitive", "pattern", "full_match"}),
    "json": frozenset({"schema", "field"}),
    "numeric": frozenset({"tolerance", "relative_tolerance"}),
    "chrf": frozenset({"char_order", "word_order", "beta"}),
    "judge": frozenset({"judge"}),
}
JUDGE_MAX_TOKENS = 16
# The memory RE2 may give one compiled pattern (its own default): a pattern that needs
# more is refused, never run. RE2 matches in time linear in the text: no pattern hangs.
PATTERN_MEMORY = 8 << 20


class RowError(ValueError):
    """A row that cannot be scored (its reference does not render, or is not what the
    metric needs): its score is an error with this reason, not a zero."""


def compile_template(where: str, source: str) -> jinja2.Template:
    """A score's template, compiled in the bounded sandbox prompts render in
    (batch.run.spec.sandbox): a reference may no more loop, recurse or allocate without
    end than a prompt may, and a misspelt field fails the row instead of comparing with
    "". Raises SpecError naming `where`."""
    return compile_bounded(bounded_environment(), where, source)


class Reference:
    """The reference template, compiled once. The common `{{ field }}` is read straight
    from the row, with what Jinja would render: a hundredfold faster on big jobs."""

    def __init__(self, source: str) -> None:
        self.template = compile_template("score.reference", source)
        plain = _PLAIN_FIELD.fullmatch(source)
        self.field = plain.group(1) if plain and plain.group(1) != "row" else None

    def render(self, fields: dict[str, Any]) -> str:
        if self.field is None:
            return render(self.template, {**fields, "row": fields})
        if self.field not in fields:
            raise RowError(f"template error: '{self.field}' is undefined")
        return str(fields[self.field])


_PLAIN_FIELD = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """The template over one row, within the sandbox's bounds; RowError says why it
    could not be rendered (a row over a bound cannot be scored, and says which)."""
    try:
        return render_row(template, variables)
    except RenderError as exc:
        raise RowError(str(exc)) from None


@dataclass(frozen=True)
class JudgeSpec:
    """[score.judge]: the judge model, how it reads a prediction, what its answers are worth."""

    model: str
    choice: dict[str, float]
    template: str | None = None
    messages: list[dict[str, str]] | None = None
    revision: str | None = None
    adapter: str | None = None
    max_tokens: int = JUDGE_MAX_TOKENS
    engine: dict[str, Any] | None = None  # None: the job's own engine options


@dataclass(frozen=True)
class ScoreSpec:
    metric: str
    reference: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    judge: JudgeSpec | None = None

    @cached_property
    def scorer(self) -> str:
        """A digest of the metric, its options and the reference template: scores stored
        under another digest were made by another scorer and are computed again."""
        blob = json.dumps({"metric": self.metric, "options": self.options,
                           "reference": self.reference}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def metric_name(self) -> str:
        """The metric as the catalog records it: a judge's scores are the judge's own."""
        return f"judge:{self.judge.model}" if self.judge else self.metric

    @classmethod
    def of(cls, spec: JobSpec) -> ScoreSpec | None:
        """The job's [score] table, or None when the job has none. Raises SpecError naming
        the job file and the field."""
        if not spec.score:
            return None
        try:
            return cls.from_mapping(spec.score)
        except SpecError as exc:
            raise SpecError(f"{spec.path}: {exc}") from None

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> ScoreSpec:
        metric = raw.get("metric")
        if metric not in METRICS:
            raise SpecError(f"score.metric: {metric!r} is not one of {', '.join(METRICS)}")
        options = {k: v for k, v in raw.items() if k not in ("metric", "reference")}
        for name in sorted(options):
            if name not in OPTIONS[metric]:
                takers = [m for m in METRICS if name in OPTIONS[m]]
                raise SpecError(f"score.{name}: not an option of the {metric} metric "
                                f"(it is one of {', '.join(takers) or 'no metric'})")
        reference = raw.get("reference")
        if reference is not None:
            compile_template("score.reference", reference)
        if metric == "regex" and "pattern" in options:
            _check_pattern(options["pattern"], bool(options.get("case_sensitive")))
        if metric == "json" and "schema" in options:
            _check_schema(options["schema"])
        judge = _judge(options["judge"]) if metric == "judge" else None
        return cls(metric, reference, options, judge)


class PatternError(ValueError):
    """A pattern RE2 does not take (its syntax, or over its memory bound)."""


@lru_cache(maxsize=4096)
def compile_pattern(source: str, case_sensitive: bool) -> re2._Regexp:
    """A score's regular expression, compiled by RE2 (the engine `--where` runs too):
    matching takes time linear in the text, whatever the pattern, so a catastrophic
    pattern cannot hang scoring. RE2's syntax: no backreferences or lookaround."""
    import re2

    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = PATTERN_MEMORY
    options.log_errors = False  # the error is ours to word, not RE2's log line on stderr
    try:
        return re2.compile(source, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(f"not a valid regular expression (RE2): {reason}") from None
    except UnicodeEncodeError:
        raise PatternError("not a valid regular expression (RE2): not Unicode text") from None


def _check_pattern(pattern: str, case_sensitive: bool) -> None:
    try:
        compile_pattern(pattern, case_sensitive)
    except PatternError as exc:
        raise SpecError(f"score.pattern: {exc}") from None


def _check_schema(schema: dict[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SpecError(f"score.schema: not a valid JSON Schema: {exc.message}") from None


def _judge(raw: dict[str, Any]) -> JudgeSpec:
    if raw.get("template") is not None:
        compile_template("score.judge.template", raw["template"])
    for i, message in enumerate(raw.get("messages") or []):
        compile_template(f"score.judge.messages[{i}].content", message["content"])
    choice = {str(k): float(v) for k, v in raw["choice"].items()}
    for answer, value in choice.items():
        if not math.isfinite(value):  # a score must be a number a mean can be taken of
            raise SpecError(f"score.judge.choice.{answer}: {value} is not a finite number")
    return JudgeSpec(model=raw["model"], choice=choice, template=raw.get("template"),
                     messages=raw.get("messages"), revision=raw.get("revision"),
                     adapter=raw.get("adapter"),
                     max_tokens=int(raw.get("max_tokens", JUDGE_MAX_TOKENS)),
                     engine=raw.get("engine"))
