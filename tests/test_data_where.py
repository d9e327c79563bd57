"""`curate --where`: a filter language parsed into Arrow expressions, never evaluated
as Python; errors name what does not parse or the unknown name."""

from __future__ import annotations

import pyarrow as pa
import pytest

from batch.data.where import WhereError, compile_where
from schemas.errors import ExitCode

TABLE = pa.table({
    "input_id": ["a", "b", "c", "d"],
    "score": pa.array([1.0, 0.25, None, 0.75]),
    "finish_reason": ["stop", "length", "stop", "stop"],
    "output": ["Drupe.", "no idea", "Pome", 'say "hi"'],
    "output_tokens": pa.array([2, 64, 1, 3], pa.int32()),
    "output_length": pa.array([6, 7, 4, 8], pa.int32()),
    "row.topic": ["fruit", "tree", "fruit", None],
    "row.year": pa.array([1612.0, 1700.0, None, 1612.0]),
})
FIELDS = {"topic": "text", "year": "number"}


def kept(source: str) -> list[str]:
    return TABLE.filter(compile_where(source, FIELDS).expression)["input_id"].to_pylist()


@pytest.mark.parametrize(("source", "ids"), [
    ("score >= 0.5", ["a", "d"]),
    ("score >= 0.5 and finish_reason == 'stop'", ["a", "d"]),
    ("score is null", ["c"]),
    ("score is not null and score < 0.5", ["b"]),
    ("score >= 0.5 or score is null", ["a", "c", "d"]),
    ('not (output contains "idea")', ["a", "c", "d"]),
    ('output matches "^[A-Z]"', ["a", "c"]),
    ("len(output) > 4 and output_tokens <= 3", ["a", "d"]),
    ("lower(output) == 'pome'", ["c"]),
    ("finish_reason in ['length', 'error']", ["b"]),
    ("output_tokens not in [1, 2]", ["b", "d"]),
    ("output_tokens / 0 > 1", []),  # null, not an error: the row is left out
    ("output_tokens * 2 + 1 >= 7", ["b", "d"]),
    ("-score < -0.5", ["a", "d"]),
    ("row.topic == 'fruit' and row.year == 1612", ["a"]),
    ('output == "say \\"hi\\""', ["d"]),
    ("true", ["a", "b", "c", "d"]),
])
def test_filters_select_the_rows_they_describe(source: str, ids: list[str]) -> None:
    assert kept(source) == ids


def test_an_empty_list_matches_nothing_whatever_its_left_side() -> None:
    assert kept("output_tokens in []") == kept("output in []") == kept("true in []") == []
    assert kept("score not in []") == ["a", "b", "c", "d"]


def test_the_fields_a_filter_names_are_reported() -> None:
    assert compile_where("row.topic == 'x' or score > 1", FIELDS).fields == {"topic"}


@pytest.mark.parametrize(("source", "message"), [
    ("score >=", "expected a value, a column or `(` at column 9, found the end"),
    ("scroe > 1", "unknown column 'scroe' at column 1"),
    ("row.colour == 'red'", "unknown field row.colour (the input's fields: topic, year)"),
    ("score > 'high'", "`>` compares number with text"),
    ("score == null", "using `is null` or `is not null`, not `== null`"),
    ("score", "is a number, not a condition"),
    ("(score > 1", "expected ')' at column 11"),
    ("score > 1 1", "expected `and`, `or` or the end at column 11, found '1'"),
    ("score = 1", "cannot parse '= 1' at column 7"),
    ("output matches '(a'", "is not a regular expression"),
    ("output matches '(a)\\\\1'", "is not a regular expression"),  # RE2 has no backreferences
    ("len(score) > 1", "len() takes text, not number"),
    ("finish_reason in ['stop', 1]", "a list mixes numbers and text"),
    ("__import__('os').system('true')", "unknown column '__import__'"),
    ("score > 1 ; x", "cannot parse ';"),
])
def test_bad_filters_are_usage_errors_naming_the_problem(source: str, message: str) -> None:
    with pytest.raises(WhereError) as err:
        compile_where(source, FIELDS)
    assert message in str(err.value)
    assert str(err.value).startswith("--where: ")
    assert err.value.exit_code == ExitCode.USAGE


def test_nesting_and_length_are_bounded() -> None:
    with pytest.raises(WhereError, match="nests too deeply"):
        compile_where("(" * 2000 + "score > 1" + ")" * 2000, {})
    with pytest.raises(WhereError, match="over 10,000 characters"):
        compile_where("score > 1 and " * 1000 + "true", {})
