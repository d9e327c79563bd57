"""`almanac curate`: cached predictions that pass a filter, without duplicates, as a
chat fine-tuning dataset that `datasets` reads as it is, with provenance, a
deterministic split and a dataset card (no engine: the cache is written directly)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from almanac.cli import cli
from batch.data.curate import CurateError, curate
from batch.data.curated_set import curated_data_files
from catalog.db import Catalog
from catalog.models import upsert_model
from catalog.records import ModelEntry
from schemas.errors import ExitCode
from tests.cache_support import key_for, record, write
from tests.data_support import answers, recorded, run, scores, write_job

CHAT = [{"role": "system", "content": "Name the fruit's family."},
        {"role": "user", "content": 'Fruit: "plum"'}]


@pytest.fixture
def predictions(home: Path) -> Path:
    return home / "predictions"


def teacher(predictions: Path, n: int = 40, *, chat: bool = False) -> None:
    """Job `teacher`: n answers, every third one repeated word for word, one failure;
    scored 1 on even rows and 0 on odd ones."""
    records = []
    for i in range(n):
        prompt = json.dumps([*CHAT[:1], {"role": "user", "content": f"Fruit {i % 3 if i % 3 == 0 else i}"}],
                            ensure_ascii=False) if chat else f"Fruit {i if i % 3 else 0}:"
        records.append(record(f"r{i:02d}", job="teacher", prompt=prompt, output=f"family {i % 3 == 0 or i}",
                              model="big", candidate="big"))
    records.append(record("bad", job="teacher", error="too long", model="big", candidate="big"))
    write(predictions, records, job="teacher")
    scores(predictions, "teacher", {f"r{i:02d}": float(i % 2 == 0) for i in range(n)}, candidate="big")


def cli_curate(*args: str) -> object:
    return CliRunner().invoke(cli, ["curate", *args])


def split_file(directory: Path, split: str, fmt: str = "parquet") -> Path:
    """The file of `split` the set's card names (`train-<digest>.parquet`)."""
    [path] = curated_data_files(directory, fmt)[split]
    return path


def rows_of(directory: Path) -> list[dict]:
    return [r for paths in curated_data_files(directory).values() for p in paths
            for r in pq.read_table(p).to_pylist()]


def test_a_dataset_datasets_and_trainers_read_as_it_is(predictions: Path, tmp_path: Path) -> None:
    teacher(predictions, chat=True)
    out = tmp_path / "sft"
    report = curate(predictions, "teacher", out, command="almanac curate teacher -o sft",
                    where="score >= 1", split=0.75)
    assert report.counts == [("latest predictions", 41), ("succeeded", 40),
                             ("--where score >= 1", 20)]
    assert report.split_rows["train"] + report.split_rows["validation"] == 20
    train, validation = report.split_files["train"], report.split_files["validation"]
    assert sorted(report.files) == sorted(["README.md", f"{train}.jsonl", f"{train}.parquet",
                                           f"{validation}.jsonl", f"{validation}.parquet"])
    assert sorted(p.name for p in out.iterdir()) == sorted(report.files)
    assert curated_data_files(out) == {"train": [out / f"{train}.parquet"],
                                       "validation": [out / f"{validation}.parquet"]}

    loaded = datasets.load_dataset(str(out))
    assert set(loaded) == {"train", "validation"}
    assert loaded["train"].num_rows == report.split_rows["train"]
    row = loaded["train"][0]
    # Chat form: the job's system turn, the user turn as the model saw it, the answer.
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][0]["content"] == CHAT[0]["content"]
    first = record(row["input_id"], job="teacher")
    assert row["key"] == first["key"] == key_for(row["input_id"])
    assert (row["model"], row["revision"], row["run"], row["score"]) == \
        ("big", "sha256:abc", first["run_id"], 1.0)
    # The JSON Lines twin holds the same rows, and loads too.
    lines = [json.loads(line) for line in split_file(out, "train", "jsonl").read_text().splitlines()]
    assert lines == pq.read_table(split_file(out, "train")).to_pylist()
    as_json = datasets.load_dataset("json", data_files={"train": str(split_file(out, "train", "jsonl"))})
    assert as_json["train"]["messages"] == loaded["train"]["messages"]


def test_a_template_job_becomes_user_and_assistant_turns(predictions: Path, tmp_path: Path) -> None:
    teacher(predictions)
    curate(predictions, "teacher", tmp_path / "sft", command="c", split=1)
    rows = pq.read_table(split_file(tmp_path / "sft", "train")).to_pylist()
    assert len(rows) == 40 and set(curated_data_files(tmp_path / "sft")) == {"train"}
    assert not list((tmp_path / "sft").glob("validation*"))
    assert rows[1]["messages"] == [{"role": "user", "content": "Fruit 1:"},
                                   {"role": "assistant", "content": "family 1"}]


def test_the_split_is_by_row_and_does_not_move_when_rows_are_added(predictions: Path,
                                                                   tmp_path: Path) -> None:
    teacher(predictions, 200)
    curate(predictions, "teacher", tmp_path / "a", command="c", split=0.8)
    curate(predictions, "teacher", tmp_path / "b", command="c", split=0.8)
    assert curated_data_files(tmp_path / "a", "jsonl")["train"][0].name == \
        curated_data_files(tmp_path / "b", "jsonl")["train"][0].name
    for split in ("train", "validation"):
        for fmt in ("jsonl", "parquet"):
            assert split_file(tmp_path / "a", split, fmt).read_bytes() == \
                split_file(tmp_path / "b", split, fmt).read_bytes()
    cards = [(tmp_path / d / "README.md").read_text().replace(str(tmp_path / d), "DIR") for d in "ab"]
    assert cards[0] == cards[1]
    before = {r["input_id"] for r in pq.read_table(split_file(tmp_path / "a", "validation")).to_pylist()}
    assert 20 <= len(before) <= 60  # about a fifth of 200
    answers(predictions, "teacher", {f"s{i}": "more" for i in range(50)}, candidate="big")
    curate(predictions, "teacher", tmp_path / "c", command="c", split=0.8)
    after = {r["input_id"] for r in pq.read_table(split_file(tmp_path / "c", "validation")).to_pylist()}
    assert before <= after and not (after - before) - {f"s{i}" for i in range(50)}


def test_dedupe_exact_and_near(predictions: Path, tmp_path: Path) -> None:
    texts = {"a": "The plum is a drupe with one stone.", "b": "The plum is a drupe with one stone.",
             "c": "The plum is a drupe with one stone!", "d": "A pear is a pome."}
    write(predictions, [record(i, job="facts", prompt="Tell me a fact.", output=t, model="m",
                               candidate="m") for i, t in texts.items()], job="facts")
    exact = curate(predictions, "facts", tmp_path / "e", command="c", dedupe_by="exact", split=1)
    assert exact.counts[-1] == ("--dedupe exact", 3)
    near = curate(predictions, "facts", tmp_path / "n", command="c", dedupe_by="near", split=1)
    assert near.counts[-1] == ("--dedupe near", 2)
    kept = [r["input_id"] for r in pq.read_table(split_file(tmp_path / "n", "train")).to_pylist()]
    assert kept == ["a", "d"]  # the first of each, in input id order


def test_a_chained_job_names_its_sources_and_drops_rows_of_a_stale_upstream(
        predictions: Path, tmp_path: Path) -> None:
    facts = write_job(tmp_path, "facts", rows=[{"id": f, "fact": f"Fact {f}."} for f in "ab"])
    answers(predictions, "facts", {"a": '["a one", "a two"]', "b": '["b one"]'})
    recorded(predictions, facts)
    chain = write_job(tmp_path, "items", upstream="facts", explode=True, template="{{ output }}")
    run(predictions, chain)
    report = curate(predictions, "items", tmp_path / "sft", command="c", split=0.5)
    assert report.upstream == ["facts"]
    assert [(s.job, s.rows) for s in report.sources] == [("items", 3), ("facts", None)]
    rows = rows_of(tmp_path / "sft")
    assert sorted((r["input_id"], r["source_job"], r["source_input_id"], r["source_key"])
                  for r in rows) == [("a#0", "facts", "a", key_for("a")),
                                     ("a#1", "facts", "a", key_for("a")),
                                     ("b#0", "facts", "b", key_for("b"))]
    # Both items of one fact land in the same split: its augmentations never straddle it.
    split_of = {r["input_id"]: split for split, paths in curated_data_files(tmp_path / "sft").items()
                for r in pq.read_table(paths[0]).to_pylist()}
    assert split_of["a#0"] == split_of["a#1"]
    assert "Chained from: `items` ← `facts`" in (tmp_path / "sft" / "README.md").read_text()

    # Upstream, `a` now says something else; until `items` runs again its rows for `a`
    # were made from what `facts` no longer holds, and are left out.
    answers(predictions, "facts", {"a": '["a three"]'}, version=2)
    run(predictions, chain)
    stale = curate(predictions, "items", tmp_path / "sft2", command="c", split=1)
    assert ("made from the current upstream rows", 2) in stale.counts  # a#0 (new), b#0


def test_the_card_counts_every_step_and_warns_of_restrictive_licenses(
        predictions: Path, tmp_path: Path, home: Path) -> None:
    teacher(predictions)
    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, ModelEntry(ref="big", name="Big", source="local", license="llama2"))
    catalog.close()
    out = tmp_path / "sft"
    result = cli_curate("teacher", "-o", str(out), "--where", "score >= 1 and len(output) > 3",
                        "--dedupe", "exact", "--split", "0.9")
    assert result.exit_code == 0, result.output
    assert "license warning: big (llama2), answering in job teacher: Llama 2's license forbids" \
        in result.stderr
    card = (out / "README.md").read_text()
    assert "almanac curate teacher -o " + str(out) + " --where 'score >= 1 and len(output) > 3' " \
           "--dedupe exact --split 0.9" in card
    for line in ("| latest predictions | 41 |", "| succeeded | 40 |",
                 "| --where score >= 1 and len(output) > 3 | 20 |", "| --dedupe exact | 14 |",
                 "## License warnings", "| teacher | big | big | sha256:abc |  | llama2 | 14 |"):
        assert line in card
    assert card.startswith("---\nconfigs:\n- config_name: default\n")
    assert "STEP" in result.stdout and "--dedupe exact" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["teacher", "-o", "x", "--where", "scroe > 1"], "--where: unknown column 'scroe'"),
    (["teacher", "-o", "x", "--where", "score >"], "--where: expected a value"),
    (["teacher", "-o", "x", "--where", "row.fruit == 'plum'"],
     "--where: row fields: cannot read the input of job 'teacher' (no run of it recorded"),
    (["teacher", "-o", "x", "--candidate", "small"], "has no candidate 'small'"),
    (["teacher", "-o", "x", "--split", "0"], "--split"),
])
def test_bad_requests_exit_2_naming_the_problem(predictions: Path, tmp_path: Path,
                                                args: list[str], message: str) -> None:
    teacher(predictions, 3)
    result = cli_curate(*args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.output
    assert not (tmp_path / "x").exists()


def test_an_unknown_job_is_not_found_as_for_query_and_compare(predictions: Path,
                                                               tmp_path: Path) -> None:
    teacher(predictions, 3)
    result = cli_curate("nothing", "-o", "x")
    assert result.exit_code == ExitCode.ERROR, result.output
    assert "no cached predictions for job 'nothing'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x").exists()


def test_filters_on_input_fields_read_the_job_s_input(predictions: Path, tmp_path: Path) -> None:
    path = write_job(tmp_path, "quiz", rows=[{"id": f"q{i}", "question": "?", "hard": i > 1}
                                             for i in range(4)])
    answers(predictions, "quiz", {f"q{i}": "yes" for i in range(4)})
    recorded(predictions, path)
    report = curate(predictions, "quiz", tmp_path / "sft", command="c", split=1,
                    where="row.hard == true")
    assert report.counts[-1] == ("--where row.hard == true", 2)
    with pytest.raises(CurateError, match="--split"):
        curate(predictions, "quiz", tmp_path / "sft", command="c", split=1.5)


def test_a_number_field_beyond_int64_is_compared_as_a_number(predictions: Path, tmp_path: Path) -> None:
    # JSON holds integers of any size: 10**30 does not fit Arrow's int64, 10**400 no float.
    path = tmp_path / "jobs"
    write_job(path, "quiz", rows=[{"id": "q0", "question": "?", "big": 10**30},
                                  {"id": "q1", "question": "?", "big": 5},
                                  {"id": "q2", "question": "?", "big": -(10**400)}])
    answers(predictions, "quiz", {f"q{i}": "yes" for i in range(3)})
    recorded(predictions, path / "quiz.toml")
    report = curate(predictions, "quiz", tmp_path / "sft", command="c", split=1,
                    where="row.big > 1")
    assert report.counts[-1] == ("--where row.big > 1", 2)
    result = cli_curate("quiz", "-o", str(tmp_path / "neg"), "--where", "row.big < -1e300")
    assert result.exit_code == 0, result.output
    assert [r["input_id"] for r in rows_of(tmp_path / "neg")] == ["q2"]


@pytest.mark.parametrize(("where", "message"), [
    ("null in []", "`in` takes a value on its left, not null"),
    ('output == "\udcff"', "the filter is not UTF-8 text (at column 12)"),  # argv's \xff byte
])
def test_a_filter_that_cannot_run_is_exit_2_and_writes_nothing(predictions: Path, tmp_path: Path,
                                                               where: str, message: str) -> None:
    teacher(predictions, 3)
    result = cli_curate("teacher", "-o", str(tmp_path / "x"), "--where", where)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_openai_batch_content_parts_become_plain_turns(predictions: Path, tmp_path: Path) -> None:
    parts = json.dumps([{"role": "developer", "content": [{"type": "text", "text": "Be "},
                                                          {"type": "text", "text": "brief."}]},
                        {"role": "user", "content": "plum?"}])
    write(predictions, [record("c1", job="batch", prompt=parts, output="drupe", model="m",
                               candidate="m")], job="batch")
    curate(predictions, "batch", tmp_path / "sft", command="c", split=1)
    row = pq.read_table(split_file(tmp_path / "sft", "train")).to_pylist()[0]
    assert row["messages"] == [{"role": "developer", "content": "Be brief."},
                               {"role": "user", "content": "plum?"},
                               {"role": "assistant", "content": "drupe"}]
    assert json.loads(split_file(tmp_path / "sft", "train", "jsonl").read_text())["messages"] == \
        row["messages"]
