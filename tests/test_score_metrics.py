"""The metrics of `[score]`, its settings, and the bootstrap behind compare's intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batch.run.spec.errors import SpecError
from batch.run.spec.job import spec_from_dict
from batch.score.judge import judge_job_name, verdict
from batch.score.metrics import first_number, make_metric, normalize
from batch.score.settings import JudgeSpec, Reference, RowError, ScoreSpec, compile_template, render
from batch.score.stats import mean_interval, pareto_front
from schemas import is_job_name


def metric(**raw):
    return make_metric(ScoreSpec.from_mapping(raw))


def test_exact_trims_surrounding_whitespace_only() -> None:
    m = metric(metric="exact", reference="x")
    assert m(" drupe\n", "drupe") == 1.0
    assert m("Drupe", "drupe") == 0.0
    assert m("drupe.", "drupe") == 0.0


def test_normalized_folds_case_whitespace_and_punctuation() -> None:
    m = metric(metric="normalized", reference="x")
    assert m("  The   DRUPE. ", "the drupe") == 1.0
    assert m("¡Hola, señor!", "hola señor") == 1.0
    assert m("the drupes", "the drupe") == 0.0
    assert normalize("E-mail,\tplease") == "email please"


def test_contains_folds_case_unless_asked_not_to() -> None:
    assert metric(metric="contains", reference="x")("It is a Drupe, surely", "drupe") == 1.0
    strict = metric(metric="contains", reference="x", case_sensitive=True)
    assert strict("It is a Drupe", "drupe") == 0.0
    with pytest.raises(RowError, match="empty"):
        strict("anything", "  ")


def test_regex_from_the_reference_or_a_fixed_pattern() -> None:
    per_row = metric(metric="regex", reference="{{ p }}")
    assert per_row("answer: 42", r"\d+") == 1.0
    assert per_row("answer: none", r"\d+") == 0.0
    with pytest.raises(RowError, match="not a valid regular expression"):
        per_row("x", "(")
    full = metric(metric="regex", pattern=r"(yes|no)", full_match=True)
    assert full(" Yes \n", None) == 1.0
    assert full("yes, sure", None) == 0.0


@pytest.mark.timeout(60)  # Python's backtracking `re` takes longer than the universe on these
def test_a_catastrophic_regex_cannot_hang_scoring() -> None:
    text = "a" * 5_000 + "!"
    per_row = metric(metric="regex", reference="{{ p }}")
    assert per_row(text, r"(a+)+$") == 0.0
    assert per_row(text, r"^(a|aa)*$") == 0.0
    assert metric(metric="regex", pattern=r"(a|a)*b", full_match=True)(text, None) == 0.0
    assert per_row("L'ÉTÉ", "été") == 1.0  # case folded beyond ASCII, as before


def test_a_pattern_re2_refuses_is_a_row_that_cannot_be_scored_or_a_bad_spec() -> None:
    per_row = metric(metric="regex", reference="{{ p }}")
    for pattern in (r"(a)\1", r"(?=a)a", "((a{100}){100}){100}"):  # over RE2's memory bound
        with pytest.raises(RowError, match=r"not a valid regular expression \(RE2\)"):
            per_row("aaa", pattern)
    with pytest.raises(SpecError, match=r"score\.pattern: not a valid regular expression \(RE2\)"):
        ScoreSpec.from_mapping({"metric": "regex", "pattern": r"(a)\1"})


@pytest.mark.parametrize(("source", "reason"), [
    ("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}", "recursion too deep"),
    ("{{ 'x' * 10**10 }}", "would make a value of 10,000,000,000"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "loop iterations"),
])
def test_a_reference_that_recurses_or_runs_away_is_a_row_that_cannot_be_scored(
        source: str, reason: str) -> None:
    with pytest.raises(RowError, match=reason):
        Reference(source).render({"family": "drupe"})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_judge_choice_that_is_not_a_finite_number_is_a_bad_spec(tmp_path: Path, value: float) -> None:
    judge = {"model": "m", "template": "{{ output }}", "choice": {"yes": value, "no": 0.0}}
    with pytest.raises(SpecError, match=r"score\.judge\.choice\.yes: .* is not a finite number"):
        ScoreSpec.from_mapping({"metric": "judge", "judge": judge})
    with pytest.raises(SpecError, match=r"score\.judge\.choice\.yes: .* is not a finite number") as caught:
        _job({"metric": "judge", "judge": judge}, tmp_path)
    assert caught.value.exit_code == 2


def test_json_parses_matches_a_schema_and_compares_a_field() -> None:
    parses = metric(metric="json")
    assert parses('{"a": 1}', None) == 1.0
    assert parses("{a: 1}", None) == 0.0
    assert parses("[" * 100_000, None) == 0.0  # too deep for the parser: wrong, not a crash
    schema = metric(metric="json", schema={"type": "object", "required": ["family"]})
    assert schema('{"family": "drupe"}', None) == 1.0
    assert schema('{"kind": "drupe"}', None) == 0.0
    field = metric(metric="json", field="answer.items.1", reference="{{ r }}")
    assert field('{"answer": {"items": ["a", "drupe"]}}', "drupe") == 1.0
    assert field('{"answer": {"items": ["a", 3]}}', "3") == 1.0
    assert field('{"answer": {"items": ["a", true]}}', "1") == 0.0  # true is not 1
    assert field('{"answer": {"items": ["a"]}}', "drupe") == 0.0


def test_numeric_reads_the_first_number_within_tolerance() -> None:
    exact = metric(metric="numeric", reference="x")
    assert exact("The total is 1,234.5 dollars", "1234.5") == 1.0
    assert exact("about 12", "12.0") == 1.0
    assert exact("no idea", "12") == 0.0
    with pytest.raises(RowError, match="not a number"):
        exact("12", "twelve")
    loose = metric(metric="numeric", reference="x", tolerance=0.5, relative_tolerance=0.01)
    assert loose("10.4", "10") == 1.0
    assert loose("1009", "1000") == 1.0
    assert loose("1011", "1000") == 0.0
    assert first_number("-.5e1 and 3") == -5.0


def test_chrf_is_sacrebleus_sentence_score_as_a_fraction() -> None:
    from sacrebleu.metrics import CHRF

    m = metric(metric="chrf", reference="x")
    assert m("the cat sat on the mat", "the cat sat on the mat") == 1.0
    expected = CHRF().sentence_score("the cat sat", ["the cat sat on the mat"]).score / 100
    assert m("the cat sat", "the cat sat on the mat") == pytest.approx(expected)
    plus = metric(metric="chrf", reference="x", word_order=2)
    assert plus("the cat", "the cat sat") != m("the cat", "the cat sat")


@pytest.mark.parametrize(("raw", "message"), [
    ({"metric": "exact", "reference": "x", "tolerance": 1},
     r"score\.tolerance: not an option of the exact metric \(it is one of numeric\)"),
    ({"metric": "exact", "reference": "{{ x"}, r"score\.reference: template syntax error"),
    ({"metric": "regex", "pattern": "("}, r"score\.pattern: not a valid regular expression"),
    ({"metric": "json", "schema": {"type": 3}}, r"score\.schema: not a valid JSON Schema"),
    ({"metric": "judge", "judge": {"model": "m", "template": "{% if %}", "choice": {"y": 1}}},
     r"score\.judge\.template: template syntax error"),
])
def test_settings_the_schema_cannot_check_name_the_field(raw, message) -> None:
    with pytest.raises(SpecError, match=message):
        ScoreSpec.from_mapping(raw)


def _job(score: dict, tmp_path: Path):
    data = {"name": "j", "model": "m", "input": {"path": "in.jsonl"},
            "prompt": {"template": "{{ q }}"}, "score": score}
    return spec_from_dict(data, tmp_path / "j.toml")


def test_an_unknown_metric_fails_the_spec_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"score\.metric: 'bleu' is not one of") as caught:
        _job({"metric": "bleu", "reference": "{{ a }}"}, tmp_path)
    assert caught.value.exit_code == 2


def test_metrics_that_compare_with_a_reference_require_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"score: 'reference' is a required property"):
        _job({"metric": "exact"}, tmp_path)


def test_the_scorer_digest_changes_with_metric_options_and_reference(tmp_path: Path) -> None:
    base = ScoreSpec.of(_job({"metric": "contains", "reference": "{{ a }}"}, tmp_path))
    assert base is not None and base.metric_name == "contains"
    same = ScoreSpec.from_mapping({"metric": "contains", "reference": "{{ a }}"})
    assert same.scorer == base.scorer
    others = [ScoreSpec.from_mapping(r) for r in (
        {"metric": "exact", "reference": "{{ a }}"},
        {"metric": "contains", "reference": "{{ b }}"},
        {"metric": "contains", "reference": "{{ a }}", "case_sensitive": True},
    )]
    assert len({base.scorer, *(o.scorer for o in others)}) == 4
    assert ScoreSpec.of(_job({"metric": "judge", "judge": {
        "model": "judge-model", "template": "{{ output }}", "choice": {"yes": 1, "no": 0}}},
        tmp_path)).metric_name == "judge:judge-model"


def test_a_reference_failing_on_a_row_says_why() -> None:
    template = compile_template("score.reference", "{{ family | upper }}")
    assert render(template, {"family": "drupe"}) == "DRUPE"
    with pytest.raises(RowError, match="'family' is undefined"):
        render(template, {"fruit": "plum"})


@pytest.mark.parametrize("reference", [
    "{{ 'x' * 100000000 }}",  # allocation
    "{% for i in range(2000) %}{% for j in range(2000) %}.{% endfor %}{% endfor %}",  # steps
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",  # recursion
])
def test_a_reference_over_a_bound_is_a_row_that_cannot_be_scored(reference: str) -> None:
    """References render in the bounded sandbox prompts render in: a row past a bound is
    that row's error (could not be scored), never a hundred megabytes compared."""
    with pytest.raises(RowError, match="template error: .*(would make a value|loop "
                                       "iterations|recursion too deep)"):
        Reference(reference).render({"family": "drupe"})


def test_a_reference_too_long_to_be_a_template_is_refused_at_the_spec() -> None:
    with pytest.raises(SpecError, match="score.reference: the template is 1,000,001 characters"):
        ScoreSpec.from_mapping({"metric": "exact", "reference": "x" * 1_000_001})


@pytest.mark.parametrize("value", ["drupe", 3, 2.5, None, True, ["a", 1], {"k": "v"}, "  spaced "])
def test_a_plain_field_reference_renders_what_jinja_renders(value) -> None:
    fast, template = Reference("{{ family }}"), compile_template("t", "{{ family }}")
    assert fast.field == "family"
    assert fast.render({"family": value}) == render(template, {"family": value})
    with pytest.raises(RowError, match="'family' is undefined"):
        fast.render({"fruit": "plum"})
    assert Reference("{{ row }}").field is None and Reference("{{ family }}!").field is None


def test_the_bootstrap_interval_is_seeded_and_holds_the_mean() -> None:
    values = [1.0] * 70 + [0.0] * 30
    first, again = mean_interval(values), mean_interval(values)
    assert first == again
    assert first.n == 100 and first.mean == pytest.approx(0.7)
    assert first.low < 0.7 < first.high
    # About the normal approximation's ±1.96·sqrt(p(1-p)/n) = ±0.09.
    assert 0.05 < first.high - first.mean < 0.13 and 0.05 < first.mean - first.low < 0.13
    assert mean_interval([]).mean is None
    assert mean_interval([0.5]) == mean_interval([0.5]) and mean_interval([0.5]).low == 0.5


def test_the_bootstrap_over_many_distinct_values_resamples_rows() -> None:
    rng = np.random.default_rng(7)
    values = list(rng.random(5000))
    est = mean_interval(values, resamples=500)
    assert est == mean_interval(values, resamples=500)
    assert mean_interval(values, resamples=500, seed=1) != est
    assert est.low < est.mean < est.high
    half = 1.96 * np.std(values) / np.sqrt(len(values))
    assert est.high - est.low == pytest.approx(2 * half, rel=0.2)


def test_the_pareto_front_keeps_what_no_other_beats_on_both() -> None:
    points = [(0.9, 2.0), (0.8, 1.0), (0.7, 1.5), (0.9, 3.0), (None, 0.1), (0.95, None), (0.6, 0.5)]
    assert pareto_front(points) == [True, True, False, False, None, None, True]


def test_a_judges_answer_maps_through_its_choice() -> None:
    judge = JudgeSpec(model="j", choice={"yes": 1.0, "partly": 0.5, "no": 0.0}, template="t")
    assert verdict(judge, {"key": "k", "output": " partly\n", "error": None}).value == 0.5
    wrong = verdict(judge, {"key": "k", "output": "maybe", "error": None})
    assert wrong.value is None and wrong.error == "judge: answered 'maybe', not one of 'yes', 'partly', 'no'"
    failed = verdict(judge, {"key": "k", "output": None, "error": "prompt is 300 tokens"})
    assert failed.value is None and failed.error == "judge: prompt is 300 tokens"
    assert verdict(judge, None).error == "judge: no answer recorded"
    assert judge_job_name("fruits") == "fruits.judge"
    long = judge_job_name("j" * 128)
    assert len(long) == 128 and long.endswith(".judge") and long != judge_job_name("j" * 127 + "k")
    assert is_job_name(long)
