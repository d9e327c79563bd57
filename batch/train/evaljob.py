"""Jobs derived from another job's file: the same prompt, sampling, engine, [score] and
[cost], with other candidates and (optionally) only some of its rows. `almanac distill`
measures its student this way, on the teacher's validation rows; the demo makes its
teacher's job this way from the demo job. Written beside their rows as ordinary TOML
job files (`almanac run`/`compare` take them as they are), and only when they change."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomli_w

from batch.run.inputs import read_rows
from batch.run.spec.job import JobSpec
from batch.train.errors import TrainError

ROWS = "rows.jsonl"
MAX_NAME = 128  # schemas/job.schema.json's name pattern


def job_name(*parts: str) -> str:
    """A job name from parts (an adapter's ORG/NAME among them), within the name's limit."""
    name = "-".join(p.replace("/", "-") for p in parts if p)
    return name[:MAX_NAME].rstrip("-.")


def check_file_input(spec: JobSpec) -> None:
    """Rows can be picked from a job reading a file (not a chain, not OpenAI batch lines)."""
    if spec.input.path is None or spec.input.format == "openai-batch":
        kind = "another job's predictions" if spec.input.path is None else "OpenAI batch lines"
        raise TrainError(f"{spec.path}: input: it reads {kind}; distill measures its student "
                         "on a job reading a file of rows (jsonl, csv or parquet)")


def derive_job(source: JobSpec, directory: Path, *, name: str, candidates: list[dict[str, Any]],
               row_ids: Iterable[str] | None = None) -> Path:
    """Write `directory/<name>.toml`: `source`'s job with these candidates, over the rows
    whose ids are in `row_ids` (written to `directory/rows.jsonl`), or all its rows."""
    data = tomllib.loads(source.path.read_text("utf-8"))
    for key in ("model", "revision", "adapter", "candidates"):
        data.pop(key, None)
    data["name"] = name
    data["candidates"] = candidates
    prompt = data.get("prompt", {})
    if cf := prompt.get("context_file"):
        prompt["context_file"] = str((source.path.parent / cf).resolve())
    directory.mkdir(parents=True, exist_ok=True)
    if row_ids is None:
        data["input"] = {**data["input"], "path": str(source.input.path)}
    else:
        wanted = set(row_ids)
        id_field = source.input.id_field
        lines = [json.dumps({**(row.fields or {}), id_field: row.id}, ensure_ascii=False,
                            sort_keys=True, default=str)
                 for row in read_rows(source.input) if row.id in wanted and row.error is None]
        _write_if_changed(directory / ROWS, "".join(line + "\n" for line in lines))
        data["input"] = {"path": ROWS, "id_field": id_field}
    path = directory / f"{name}.toml"
    header = (f"# Made by Almanac from {source.path} (job {source.name}): the same prompt, "
              "sampling and [score],\n# other candidates. Written again when they change.\n")
    _write_if_changed(path, header + tomli_w.dumps(data))
    return path


def _write_if_changed(path: Path, text: str) -> None:
    """Unchanged content is left alone: a rerun with nothing new writes nothing."""
    try:
        if path.read_text("utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, "utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
