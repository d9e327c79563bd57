"""Chained jobs without the engine: `[input] job` reads another job's latest predictions
as rows, explodes answers into items, plans only what is new or changed upstream
(without even rendering the rest), and keeps each row's lineage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from almanac.cli import cli
from batch.data import chain_rows
from batch.data.chains import UpstreamError, UpstreamReader
from batch.data.lineage import LineageStore
from batch.run.inputs import read_rows
from batch.run.spec.job import InputSpec, load_spec
from schemas.errors import ExitCode
from tests.cache_support import key_for
from tests.data_support import answers, plan, recorded, run, scores, write_job

QUESTIONS = [{"id": f"q{i}", "question": f"What is {i}?", "topic": "sums"} for i in range(4)]


@pytest.fixture
def predictions(home: Path) -> Path:
    return home / "predictions"


@pytest.fixture
def teacher(tmp_path: Path, predictions: Path) -> Path:
    """An upstream job that answered q0..q2 (q3 failed), with scores; run from its file."""
    path = write_job(tmp_path, "teacher", rows=QUESTIONS)
    answers(predictions, "teacher", {"q0": "zero", "q1": "one", "q2": "two"}, failed=("q3",))
    scores(predictions, "teacher", {"q0": 1.0, "q1": 0.0, "q2": 0.5})
    recorded(predictions, path)
    return path


def rows_of(predictions: Path, spec_path: Path) -> list[tuple[str, dict]]:
    return [(r.id, r.fields or {"error": r.error})
            for r in UpstreamReader(predictions).rows(load_spec(spec_path))]


def test_rows_are_the_upstream_fields_with_its_answer_score_id_and_key(
        tmp_path: Path, predictions: Path, teacher: Path) -> None:
    chain = write_job(tmp_path, "student", upstream="teacher")
    rows = rows_of(predictions, chain)
    # The failed q3 does not flow down; it will once the teacher answers it.
    assert [i for i, _ in rows] == ["q0", "q1", "q2"]
    assert rows[0][1] == {"id": "q0", "question": "What is 0?", "topic": "sums", "output": "zero",
                          "score": 1.0, "input_id": "q0", "key": key_for("q0")}
    assert rows[1][1]["score"] == 0.0


def test_a_job_with_several_candidates_needs_one_named(tmp_path: Path, predictions: Path,
                                                       teacher: Path) -> None:
    answers(predictions, "teacher", {"q0": "nil"}, candidate="big", version=2)
    chain = write_job(tmp_path, "student", upstream="teacher")
    with pytest.raises(UpstreamError, match=r"input.candidate: job 'teacher' has 2 candidates "
                                            r"\((big, tiny|tiny, big)\): name one"):
        rows_of(predictions, chain)
    chain = write_job(tmp_path, "student", upstream="teacher", candidate="big")
    assert [(i, f["output"]) for i, f in rows_of(predictions, chain)] == [("q0", "nil")]
    chain = write_job(tmp_path, "student", upstream="teacher", candidate="huge")
    with pytest.raises(UpstreamError, match="has no candidate 'huge'"):
        rows_of(predictions, chain)


def test_explode_makes_a_row_per_item_with_its_position(tmp_path: Path, predictions: Path) -> None:
    path = write_job(tmp_path, "facts", rows=[{"id": f, "fact": f.upper()} for f in "abcde"])
    answers(predictions, "facts", {"a": json.dumps(["a1", "a2"]), "b": '{"not": "a list"}',
                                   "c": "[unfinished", "d": "[]"})
    answers(predictions, "facts", {"e": "first"}, version=2, outputs=["first", "second"])
    recorded(predictions, path)
    chain = write_job(tmp_path, "items", upstream="facts", explode=True,
                      template="{{ fact }} {{ position }}: {{ output }}")
    rows = rows_of(predictions, chain)
    assert [i for i, _ in rows] == ["a#0", "a#1", "b", "c", "e#0", "e#1"]  # d's list is empty
    assert rows[1][1]["output"] == "a2" and rows[1][1]["position"] == 1
    assert rows[1][1]["input_id"] == "a" and rows[1][1]["fact"] == "A"
    assert rows[2][1] == {"error": "input.explode: the answer of facts/b is a JSON object, not a list"}
    assert rows[3][1]["error"].startswith("input.explode: the answer of facts/c is not JSON (")
    assert [f["output"] for i, f in rows if i.startswith("e#")] == ["first", "second"]  # n > 1

    planned = plan(predictions, chain)
    assert sorted(r.prompt for r in planned.requests.values()) == \
        ["A 0: a1", "A 1: a2", "E 0: first", "E 1: second"]
    # An answer that should be a list and is not: a failed row saying why.
    assert {f.input_id: f.error for f in planned.failures} == {
        "b": rows[2][1]["error"], "c": rows[3][1]["error"]}


def test_only_new_or_changed_upstream_rows_make_requests_and_the_rest_is_not_rendered(
        tmp_path: Path, predictions: Path, teacher: Path) -> None:
    chain = write_job(tmp_path, "student", upstream="teacher",
                      template="Q: {{ question }} A: {{ output }} ({{ score }})")
    first = run(predictions, chain)
    assert len(first.requests) == 3 and first.rendered == 3

    again = plan(predictions, chain)
    assert again.summary()["cached"] == 3 and not again.requests
    assert again.rendered == 0  # the memo knew every row's key: nothing was rendered

    # The teacher answers q3 and changes its answer to q1; q0 and q2 stay as they were.
    answers(predictions, "teacher", {"q3": "three"})
    answers(predictions, "teacher", {"q1": "uno"}, version=2)
    later = run(predictions, chain)
    assert sorted(i for r in later.requests.values() for i in r.input_ids) == ["q1", "q3"]
    assert later.cached == 2 and later.rendered == 2

    # Rescored rows change their prompts (the template shows the score): asked again.
    scores(predictions, "teacher", {"q0": 0.0, "q1": 0.0, "q2": 0.5, "q3": 1.0})
    rescored = plan(predictions, chain)
    assert rescored.rendered == 2  # q0 (1 -> 0) and q3 (unscored -> 1)
    assert sorted(i for r in rescored.requests.values() for i in r.input_ids) == ["q0", "q3"]
    # A changed template is a new digest: every row is rendered, none remembered.
    chain = write_job(tmp_path, "student", upstream="teacher", template="{{ output }}")
    assert plan(predictions, chain).rendered == 4


def test_lineage_names_the_upstream_record_of_every_row(tmp_path: Path, predictions: Path,
                                                        teacher: Path) -> None:
    chain = write_job(tmp_path, "student", upstream="teacher")
    done = run(predictions, chain)
    with LineageStore.open_readonly(predictions) as store:
        sources = store.sources("student", "tiny")
        plans = store.plans("student")
        assert store.job_file("student") == chain.resolve()
    assert {i: (s.up_input_id, s.up_key) for i, s in sources.items()} == {
        f"q{i}": (f"q{i}", key_for(f"q{i}")) for i in range(3)}
    assert {i: s.key for i, s in sources.items()} == \
        {i: k for r in done.requests.values() for i in r.input_ids for k in [r.key]}
    assert plans["tiny"].upstream == "teacher" and plans["tiny"].upstream_candidate == "tiny"

    # q1 is gone from the teacher's input: its lineage goes with the next full planning.
    write_job(tmp_path, "teacher", rows=[q for q in QUESTIONS if q["id"] != "q1"])
    run(predictions, chain)
    with LineageStore.open_readonly(predictions) as store:
        assert sorted(store.sources("student", "tiny")) == ["q0", "q2"]


def test_a_chain_of_chains_carries_the_first_job_s_fields(tmp_path: Path, predictions: Path,
                                                          teacher: Path) -> None:
    middle = write_job(tmp_path, "middle", upstream="teacher", template="{{ output }}")
    run(predictions, middle)
    last = write_job(tmp_path, "last", upstream="middle")
    rows = rows_of(predictions, last)
    assert [i for i, _ in rows] == ["q0", "q1", "q2"]
    assert rows[0][1]["question"] == "What is 0?"  # from the teacher's input
    assert rows[0][1]["output"] == "re: zero"  # the middle job's answer


def test_the_upstream_job_file_is_found_beside_the_chain(tmp_path: Path, predictions: Path) -> None:
    write_job(tmp_path, "teacher", rows=QUESTIONS)  # never run through a runner: not recorded
    answers(predictions, "teacher", {"q0": "zero"})
    chain = write_job(tmp_path, "student", upstream="teacher")
    assert [i for i, _ in rows_of(predictions, chain)] == ["q0"]
    lonely = write_job(tmp_path / "elsewhere", "student", upstream="teacher")
    with pytest.raises(UpstreamError, match="cannot find the job file of 'teacher' "
                                            r"\(no run of it recorded its job file"):
        rows_of(predictions, lonely)


def test_a_loop_is_refused(tmp_path: Path, predictions: Path) -> None:
    answers(predictions, "ping", {"a": "x"})
    answers(predictions, "pong", {"a": "y"})
    write_job(tmp_path, "ping", upstream="pong")
    pong = write_job(tmp_path, "pong", upstream="ping")
    with pytest.raises(UpstreamError, match=r"the chain loops \(pong -> ping -> pong\)"):
        rows_of(predictions, pong)


def test_an_upstream_job_that_does_not_exist_exits_2(tmp_path: Path, home: Path,
                                                     predictions: Path) -> None:
    chain = write_job(tmp_path, "student", upstream="teacher")
    with pytest.raises(UpstreamError) as err:
        rows_of(predictions, chain)
    assert err.value.exit_code == ExitCode.USAGE
    assert str(err.value) == f"{chain}: input.job: no job 'teacher' in the cache (run it first)"

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(model / "model.safetensors"))
    added = CliRunner().invoke(cli, ["models", "add", "--path", str(model), "--name", "tiny"])
    assert added.exit_code == 0, added.output
    result = CliRunner().invoke(cli, ["run", "--dry-run", str(chain)])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "input.job: no job 'teacher' in the cache (run it first)" in result.output


@pytest.mark.parametrize("lines", [
    ['{"id": "a", "x": 1}', "", "   ", '{"id": "b"}\r', '{"x": 3}', '{"id": ""}', '{"id": "c"}'],
    ['{"id": 1}', '{"id": 22}'],
])
def test_arrow_reads_a_jsonl_input_as_the_row_reader_does(tmp_path: Path,
                                                          lines: list[str]) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    spec = InputSpec(path, "jsonl", "id")
    read = chain_rows.jsonl_lines(spec)
    assert read is not None
    assert list(zip(read.positions.to_pylist(), read.ids.to_pylist(), strict=True)) == \
        [(r.position, r.id) for r in read_rows(spec)]


@pytest.mark.parametrize("text", [b'{"id": 1.5}\n', b'{"id": "a"}\n{"id": 2}\n', b"[1]\n",
                                  b'{"id": "a"}\n\xff\n', b'{"id": NaN}\n'])
def test_what_arrow_would_read_otherwise_is_left_to_the_row_reader(tmp_path: Path,
                                                                   text: bytes) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(text)
    assert chain_rows.jsonl_lines(InputSpec(path, "jsonl", "id")) is None
