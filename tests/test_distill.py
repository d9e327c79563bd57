"""`almanac distill`, end to end on the session's engine: a teacher (the tiny model with
an adapter) answers a job, its answers are curated and split, a LoRA student of the
tiny model is trained on the train split, and the validation rows alone are run with
the teacher, the student's base and the student, scored with the teacher job's [score]
and compared. A rerun with nothing new generates, curates into and trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from almanac.cli import cli
from batch.run.runner import Runner
from batch.train.distill import Distillation, DistillRequest
from batch.train.settings import TrainSettings
from batch.train.train import Places
from tests.engine_support import TINY_MODEL, write_job

WORDS = ["plum", "pear", "lemon", "peach", "apple", "cherry", "quince", "apricot", "fig", "lime",
         "grape", "kiwi", "mango", "melon", "olive", "date", "guava", "papaya", "banana", "orange"]
STUDENT = "me/word-student"
SETTINGS = TrainSettings(rank=4, steps=4, lr=5e-3, batch_size=4, max_length=64)
SCORED = '\n[score]\nreference = "{{ word }}"\nmetric = "exact"\n\n[cost]\nusd_per_hour = 1.0\n'


def teacher_job(directory: Path, adapter: Path | None = None, *, score: bool = True) -> Path:
    rows = [{"id": f"w{i:02d}", "word": w} for i, w in enumerate(WORDS)]
    path = write_job(directory, "teach-words", rows, adapter=str(adapter) if adapter else None)
    path.write_text(path.read_text() + (SCORED if score else ""))
    return path


def distillation(runner: Runner, home: Path, job: Path, lines: list[str]) -> Distillation:
    request = DistillRequest(job, TINY_MODEL, STUDENT, split=0.7, settings=SETTINGS)
    places = Places(home / "models", home / "training", home / "predictions", home / "locks")
    return Distillation(runner, places, home / "distill", request, say=lines.append)


@pytest.mark.engine
def test_distill_trains_a_student_and_measures_it_on_validation_rows_only_then_reruns_idle(
        runner: Runner, home: Path, tmp_path: Path, lora_adapter: Path) -> None:
    job = teacher_job(tmp_path / "jobs", lora_adapter)
    lines: list[str] = []
    first = distillation(runner, home, job, lines).run()
    assert first.teacher == TINY_MODEL
    assert first.teacher_run is not None and first.teacher_run["generated"] == len(WORDS)
    assert first.train is not None and first.train["status"] == "trained"
    split = first.curate["split_rows"] if first.curate else {}
    assert split["train"] + split["validation"] == len(WORDS) and split["validation"] > 0
    # The evaluation job holds the validation rows alone: the ones the student never saw.
    evaluation = Path(first.eval_job or "")
    rows = [json.loads(line)["id"] for line in (evaluation.parent / "rows.jsonl").open()]
    assert len(rows) == split["validation"] == len(WORDS) - first.train["train_rows"]
    run = first.eval_run or {}
    labels = [c["label"] for c in run["candidates"]]
    assert labels == [TINY_MODEL, f"{TINY_MODEL} (base)", f"{TINY_MODEL}+{STUDENT}"]
    by_label = {c["label"]: c for c in run["candidates"]}
    assert by_label[TINY_MODEL]["copied"] == len(rows)  # the teacher's answers, from its job
    assert by_label[f"{TINY_MODEL}+{STUDENT}"]["generated"] == len(rows)
    assert run["engine_starts"] <= 1  # one base, its adapters beside it (the session's engine)
    compared = {e["label"]: e for e in first.compare}
    assert set(compared) == set(labels) and all(e["n"] == len(rows) for e in compared.values())
    assert {e["metric"] for e in compared.values()} == {"exact"}
    assert first.summary.startswith(f"{TINY_MODEL}+{STUDENT}: ")
    assert f"on {len(rows)} validation rows, against teacher {TINY_MODEL} " in first.summary
    assert "per 1k rows against the teacher's" in first.summary
    shown = CliRunner().invoke(cli, ["models", "show", STUDENT, "--json"])
    lineage = json.loads(shown.stdout)["training"]
    assert lineage["distilled_from"] == f"teach-words (teacher {TINY_MODEL} + {lora_adapter})"
    written = evaluation.stat().st_mtime_ns

    again = distillation(runner, home, job, lines).run()
    assert again.teacher_run is not None and again.teacher_run["generated"] == 0
    assert again.teacher_run["engine_started"] is False
    assert again.train is not None and again.train["status"] == "reused"
    assert again.eval_run is not None and again.eval_run["generated"] == 0
    assert evaluation.stat().st_mtime_ns == written
    assert [(e["label"], e["score"]) for e in again.compare] == \
        [(e["label"], e["score"]) for e in first.compare]


def distill_cli(home: Path, job: Path, *args: str) -> object:
    return CliRunner().invoke(cli, ["distill", str(job), "--student", TINY_MODEL, "--name",
                                    STUDENT, *args])


@pytest.mark.parametrize(("case", "says"), [
    ("no-score", "score: distill measures the student with the job's [score], and the job "
                 "has none"),
    ("chained", "input: it reads another job's predictions; distill measures its student on "
                "a job reading a file of rows"),
    ("candidates", "the job has several candidates: name the teacher with --teacher LABEL"),
])
def test_a_teacher_job_distill_cannot_use_is_one_line_and_exit_2(
        home: Path, tmp_path: Path, case: str, says: str) -> None:
    job = teacher_job(tmp_path / "jobs", score=case != "no-score")
    text = job.read_text()
    if case == "chained":
        text = text.replace('path = "teach-words.jsonl"', 'job = "upstream"')
    if case == "candidates":
        text = text.replace(f'model = "{TINY_MODEL}"\n', "") + \
            f'\n[[candidates]]\nmodel = "{TINY_MODEL}"\n\n[[candidates]]\nmodel = "other"\n'
    job.write_text(text)
    result = distill_cli(home, job)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {job.resolve()}: {says}"), lines
    assert not (home / "models").exists()
