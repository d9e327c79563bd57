"""The judge metric: another catalog model reads each prediction through a template and
answers one of a fixed set of choices, each worth a score.

The judge's calls are predictions like any other: a derived job (`<job>.judge`) runs
through the normal runner, so every answer is cached by content and a second scoring
of unchanged predictions plans everything as cached and never starts the engine.
Its rows are the scored job's rows with `output`, `reference`, `prompt`, `candidate`
and `input_id` set for the template.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.cache.reader import Predictions
from batch.run.spec.job import JobSpec, spec_from_dict
from batch.score.settings import JudgeSpec

if TYPE_CHECKING:  # the runner (and through it the engine module) only for annotations
    from batch.run.result import RunResult
    from batch.run.runner import Runner

ID_FIELD = "judge_row"
CHUNK = 2000  # answers read per lookup
_MAX_NAME = 128


def judge_job_name(job: str) -> str:
    """The derived job's name: `<job>.judge`, shortened with a digest past the limit."""
    name = f"{job}.judge"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(job.encode()).hexdigest()[:8]
    return f"{job[: _MAX_NAME - len(digest) - len('-.judge')]}-{digest}.judge"


def judge_row_id(candidate: str, input_id: str) -> str:
    # JSON, not a separator: labels and ids may hold any character.
    return json.dumps([candidate, input_id], ensure_ascii=False)


@dataclass(frozen=True)
class Verdict:
    key: str | None  # the judge's record, part of the score's basis
    value: float | None
    error: str | None


class JudgeRows:
    """The rows a judge reads, written to a JSONL file as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = path.open("w", encoding="utf-8")
        self.count = 0

    def add(self, candidate: str, input_id: str, fields: dict[str, Any], record: dict[str, Any],
            reference: str | None) -> None:
        row = {**fields, "output": record.get("output"), "reference": reference,
               "prompt": record.get("prompt"), "candidate": candidate, "input_id": input_id,
               ID_FIELD: judge_row_id(candidate, input_id)}
        self._fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()


@contextmanager
def judge_rows() -> Iterator[JudgeRows]:
    with tempfile.TemporaryDirectory(prefix="almanac-judge-") as tmp:
        rows = JudgeRows(Path(tmp) / "rows.jsonl")
        try:
            yield rows
        finally:
            rows.close()


def judge_spec(job: JobSpec, judge: JudgeSpec, rows: Path) -> JobSpec:
    """The derived job, built from a job file's shape so that the schema checks it."""
    data: dict[str, Any] = {
        "name": judge_job_name(job.name),
        "model": judge.model,
        "input": {"path": str(rows), "format": "jsonl", "id_field": ID_FIELD},
        "prompt": {"template": judge.template} if judge.template is not None
        else {"messages": judge.messages},
        "sampling": {"max_tokens": judge.max_tokens, "temperature": 0.0,
                     "choice": list(judge.choice)},
        "engine": judge.engine if judge.engine is not None else job.engine.as_dict(),
    }
    if judge.revision:
        data["revision"] = judge.revision
    if judge.adapter:
        data["adapter"] = judge.adapter
    # The job file's directory: a judge adapter given as a relative path resolves there.
    return spec_from_dict(data, job.path.parent / f"{data['name']}.toml")


def run_judge(runner: Runner, job: JobSpec, judge: JudgeSpec, rows: JudgeRows,
              ) -> tuple[RunResult, dict[tuple[str, str], Verdict]]:
    """Run the judge over `rows` (only what it has not answered before reaches the
    engine) and read each answer back as a verdict, by (candidate, input id)."""
    rows.close()
    spec = judge_spec(job, judge, rows.path)
    result = runner.run(spec)
    ids: list[tuple[str, str]] = []
    with rows.path.open(encoding="utf-8") as fh:
        for line in fh:
            candidate, input_id = json.loads(json.loads(line)[ID_FIELD])
            ids.append((candidate, input_id))
    verdicts: dict[tuple[str, str], Verdict] = {}
    with Predictions.at(runner.store.root, spec.name) as answers:
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            found = answers.get_many([judge_row_id(c, n) for c, n in chunk])
            for pair in chunk:
                verdicts[pair] = verdict(judge, found.get(judge_row_id(*pair)))
    return result, verdicts


def verdict(judge: JudgeSpec, record: dict[str, Any] | None) -> Verdict:
    if record is None:
        return Verdict(None, None, "judge: no answer recorded")
    if record.get("error"):
        return Verdict(record["key"], None, f"judge: {record['error']}")
    answer = (record.get("output") or "").strip()
    if answer not in judge.choice:
        return Verdict(record["key"], None,
                       f"judge: answered {answer!r}, not one of {', '.join(map(repr, judge.choice))}")
    return Verdict(record["key"], judge.choice[answer], None)
