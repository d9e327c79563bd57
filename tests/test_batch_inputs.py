"""Reading a job's dataset row by row: a row that cannot be read becomes an InputRow
with an error (the run records it as failed and goes on); only a dataset that
cannot be read at all raises InputError."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.run.inputs import InputError, InputRow, content_id, read_rows
from batch.run.spec.job import InputSpec


def read(path: Path, fmt: str, id_field: str = "id") -> list[InputRow]:
    return list(read_rows(InputSpec(path, fmt, id_field)))


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- JSONL ------------------------------------------------------------------------------------


def test_jsonl_rows_keep_their_fields_ids_and_line_numbers_skipping_blank_lines(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.jsonl",
                       b'{"id": "a", "fruit": "peach"}\n\n   \n{"id": 7, "fruit": "apple"}\n')
    rows = read(path, "jsonl")
    assert [(r.position, r.id, r.fields, r.error) for r in rows] == [
        (1, "a", {"id": "a", "fruit": "peach"}, None),
        (4, "7", {"id": 7, "fruit": "apple"}, None),
    ]


def test_jsonl_broken_line_becomes_an_error_row_naming_the_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.jsonl",
                       b'{"id": "a"}\n{"id": "b", \n{"id": "c"}\n')
    rows = read(path, "jsonl")
    assert [r.id for r in rows] == ["a", "<row 2>", "c"]
    broken = rows[1]
    assert broken.fields is None and broken.position == 2
    assert broken.error is not None and broken.error.startswith("line 2: invalid JSON")
    assert rows[0].error is None and rows[2].error is None


@pytest.mark.parametrize(("line", "kind"), [(b"[1, 2]", "list"), (b'"peach"', "str"), (b"3", "int")])
def test_jsonl_line_that_is_not_an_object_is_an_error_row(tmp_path: Path, line: bytes, kind: str) -> None:
    path = write_bytes(tmp_path / "in.jsonl", b'{"id": "a"}\n' + line + b"\n")
    rows = read(path, "jsonl")
    assert rows[1].error == f"line 2: expected a JSON object, got {kind}"


def test_jsonl_invalid_utf8_spoils_only_its_own_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.jsonl",
                       b'{"id": "a", "fruit": "p\xc3\xaache"}\n{"id": "b", "fruit": "\xff\xfe"}\n'
                       b'{"id": "c", "fruit": "fig"}\n')
    rows = read(path, "jsonl")
    assert [r.id for r in rows] == ["a", "<row 2>", "c"]
    assert rows[0].fields == {"id": "a", "fruit": "p\u00eache"}
    assert rows[1].error is not None and rows[1].error.startswith("line 2: not UTF-8")
    assert rows[2].fields == {"id": "c", "fruit": "fig"}


def test_rows_without_an_id_get_a_stable_content_hash(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.jsonl",
                       b'{"fruit": "peach", "n": 1}\n{"n": 1, "fruit": "peach"}\n'
                       b'{"fruit": "apple", "n": 1}\n{"id": "", "fruit": "fig"}\n'
                       b'{"id": null, "fruit": "fig"}\n')
    rows = read(path, "jsonl")
    assert rows[0].id == content_id({"fruit": "peach", "n": 1})
    assert rows[0].id.startswith("h") and len(rows[0].id) == 17
    assert rows[0].id == rows[1].id  # key order does not matter
    assert rows[2].id != rows[0].id
    assert rows[3].id.startswith("h") and rows[4].id.startswith("h")  # empty / null ids


def test_a_custom_id_field_names_the_rows(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.jsonl", b'{"sku": "X-1", "id": "ignored"}\n')
    assert [r.id for r in read(path, "jsonl", id_field="sku")] == ["X-1"]


# -- CSV --------------------------------------------------------------------------------------


def test_csv_rows_are_dicts_of_strings_numbered_by_file_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.csv",
                       b'id,fruit,note\na,peach,"two\nlines"\n\nb,apple,\n')
    rows = read(path, "csv")
    assert [(r.position, r.id, r.fields) for r in rows] == [
        (3, "a", {"id": "a", "fruit": "peach", "note": "two\nlines"}),
        (5, "b", {"id": "b", "fruit": "apple", "note": ""}),
    ]


def test_csv_row_with_extra_values_is_an_error_row(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.csv", b"id,fruit\na,peach\nb,apple,surplus\nc,fig\n")
    rows = read(path, "csv")
    assert [r.id for r in rows] == ["a", "<row 3>", "c"]
    assert rows[1].error == "line 3: more values than header columns"
    assert rows[1].fields is None


def test_csv_row_with_missing_values_is_an_error_row_not_a_none_field(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.csv", b"id,fruit\na,peach\nb\n")
    rows = read(path, "csv")
    assert rows[1].error == "line 3: fewer values than header columns"
    assert rows[1].fields is None


def test_csv_byte_order_mark_does_not_hide_the_id_column(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.csv", b"\xef\xbb\xbfid,fruit\na,peach\n")
    rows = read(path, "csv")
    assert rows[0].id == "a" and rows[0].fields == {"id": "a", "fruit": "peach"}


# -- Parquet ----------------------------------------------------------------------------------


def test_parquet_rows_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", None, "c"], "fruit": ["peach", "apple", "fig"],
                             "weight": [150, 180, None]}), path, row_group_size=2)
    rows = read(path, "parquet")
    assert [r.position for r in rows] == [1, 2, 3]
    assert rows[0].id == "a" and rows[0].fields == {"id": "a", "fruit": "peach", "weight": 150}
    assert rows[1].id == content_id({"id": None, "fruit": "apple", "weight": 180})
    assert rows[2].fields == {"id": "c", "fruit": "fig", "weight": None}


def test_damaged_parquet_is_an_input_error(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.parquet", b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="cannot read Parquet file"):
        read(path, "parquet")


def test_missing_input_file_is_an_input_error(tmp_path: Path) -> None:
    for fmt in ("jsonl", "csv", "parquet", "openai-batch"):
        with pytest.raises(InputError, match="input file not found"):
            read(tmp_path / "missing.data", fmt)


# -- OpenAI batch files -----------------------------------------------------------------------


def batch_line(custom_id: str | None, body: object = None, url: str = "/v1/chat/completions",
               **extra: object) -> str:
    line: dict[str, object] = {"method": "POST", "url": url, **extra}
    if custom_id is not None:
        line["custom_id"] = custom_id
    if body is not None:
        line["body"] = body
    return json.dumps(line)


def test_openai_batch_lines_run_as_given(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "Family of peach?"}]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join([
        batch_line("req-1", {"model": "x", "messages": messages, "max_tokens": 5,
                             "temperature": 0, "stop": "\n"}),
        batch_line("req-2", {"model": "x", "prompt": "Peach:", "max_tokens": 9,
                             "top_p": 0.5, "seed": 3, "stop": ["a", "b"], "user": "u1"},
                   url="/v1/completions"),
    ]) + "\n")
    first, second = read(path, "openai-batch")
    assert first.id == "req-1" and first.error is None
    assert first.messages == messages and first.prompt is None
    assert first.sampling == {"max_tokens": 5, "temperature": 0, "stop": ["\n"]}
    assert second.id == "req-2"
    assert second.prompt == "Peach:" and second.messages is None
    assert second.sampling == {"max_tokens": 9, "top_p": 0.5, "seed": 3, "stop": ["a", "b"]}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (batch_line("req-1"), "missing body"),
        (batch_line("req-1", "not an object"), "missing body"),
        (batch_line(None, {"prompt": "p"}, "/v1/completions"), "missing custom_id"),
        (batch_line("", {"prompt": "p"}, "/v1/completions"), "missing custom_id"),
        (batch_line("req-1", {"model": "x"}), "body has no messages"),
        (batch_line("req-1", {"model": "x"}, "/v1/completions"), "body has no prompt"),
        ('{"custom_id": "req-1", "body": ', "invalid JSON"),
    ],
)
def test_openai_batch_line_without_a_request_is_an_error_row(tmp_path: Path, line: str,
                                                             problem: str) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(batch_line("ok", {"prompt": "p"}, "/v1/completions") + "\n" + line + "\n")
    ok, bad = read(path, "openai-batch")
    assert ok.error is None
    assert bad.error is not None and bad.error.startswith("line 2: ") and problem in bad.error
    assert bad.messages is None and bad.prompt is None and bad.sampling is None
