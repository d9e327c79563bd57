"""Curated rows as SFT examples, and `train --where` over them.

A row is a conversation whose last assistant turn is the answer to learn; the turns
before it are the prompt. How the prompt reaches the model decides the example's form:

- `text`: the prompt as plain text, the answer as its completion (TRL's
  prompt-completion form: the completion alone is in the loss, EOS after it). A job
  with a prompt template sends its rendered text to the model this way, and a model
  without a chat template can only be asked this way.
- `chat`: the turns through the model's chat template (TRL's conversational
  prompt-completion form), as a job with `messages` asks a model.
- `auto`: `chat` when the base has a chat template and the rows are chats (a system
  turn, several turns before the answer, or conversational prompt columns); else `text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from batch.data.where import COLUMNS, compile_where
from batch.train.dataset import CuratedSet
from batch.train.errors import TrainError

Example = dict[str, Any]


@dataclass
class Examples:
    """What the trainer gets: each split's examples in one form, and what was left out."""

    form: str  # text or chat
    train: list[Example]
    validation: list[Example] = field(default_factory=list)
    without_answer: int = 0  # rows with no assistant turn to learn


def choose_form(requested: str, tables: dict[str, pa.Table], *, has_chat_template: bool,
                base: str) -> str:
    if requested == "chat" and not has_chat_template:
        raise TrainError(f"--format chat: the base {base} has no chat template "
                         "(train it on text: --format text)")
    if requested != "auto":
        return requested
    return "chat" if has_chat_template and any(_chat_like(t) for t in tables.values()) else "text"


def filtered(curated: CuratedSet, where: str | None) -> dict[str, pa.Table]:
    """Each split's rows that `where` holds for (curate's filter language over the set's
    columns: score, candidate, model, …, and prompt, output and their lengths)."""
    if not where:
        return dict(curated.tables)
    compiled = compile_where(where, {})
    if compiled.fields:
        raise TrainError(f"--where: row.{sorted(compiled.fields)[0]}: a curated set keeps no "
                         "input fields; filter on them with `almanac curate --where`")
    out: dict[str, pa.Table] = {}
    for split, table in curated.tables.items():
        wide = _with_text_columns(table)
        try:
            out[split] = table.take(wide.filter(compiled.expression)["__row"])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            known = ", ".join(sorted(set(wide.column_names) & set(COLUMNS)))
            missing = re.search(r"FieldRef\.Name\((\w+)\)", str(exc))
            why = f"{missing.group(1)} is not a column of the curated set" if missing \
                else _first_line(exc)
            raise TrainError(f"--where {where!r}: {why} (its columns: {known})") from None
    if not out.get("train") or not out["train"].num_rows:
        counts = "; ".join(f"{s}: 0 of {curated.rows(s):,}" if s == "train" else
                           f"{s}: {out[s].num_rows:,} of {curated.rows(s):,}" for s in out)
        raise TrainError(f"--where {where!r}: no train rows left ({counts})")
    return out


def to_examples(tables: dict[str, pa.Table], form: str) -> Examples:
    out = Examples(form, [])
    for split in ("train", "validation"):
        table = tables.get(split)
        if table is None:
            continue
        examples, missing = _examples(table, form)
        out.without_answer += missing
        setattr(out, split, examples)
    if not out.train:
        raise TrainError("--data: no train row has an answer to learn (an assistant turn last)")
    return out


def _examples(table: pa.Table, form: str) -> tuple[list[Example], int]:
    examples, missing = [], 0
    if "messages" in table.column_names:
        for turns in table["messages"].to_pylist():
            split = _split_turns(turns)
            if split is None:
                missing += 1
                continue
            prompt, answer = split
            examples.append(_example(prompt, answer, form))
        return examples, missing
    for prompt, completion in zip(table["prompt"].to_pylist(), table["completion"].to_pylist(),
                                  strict=True):
        if prompt is None or completion is None:
            missing += 1
            continue
        turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        answer = completion if isinstance(completion, str) else \
            "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
        examples.append(_example(turns, answer, form))
    return examples, missing


def _split_turns(turns: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], str] | None:
    """(the turns before the last assistant turn, its content), or None without one."""
    for i in range(len(turns or []) - 1, -1, -1):
        assert turns is not None
        if isinstance(turns[i], dict) and turns[i].get("role") == "assistant":
            return turns[:i], str(turns[i].get("content") or "")
    return None


def _example(prompt: list[dict[str, Any]], answer: str, form: str) -> Example:
    turns = [{"role": str(t.get("role")), "content": str(t.get("content") or "")} for t in prompt]
    if form == "chat":
        return {"prompt": turns, "completion": [{"role": "assistant", "content": answer}]}
    return {"prompt": "\n\n".join(t["content"] for t in turns), "completion": answer}


def _chat_like(table: pa.Table) -> bool:
    if "messages" not in table.column_names:
        return pa.types.is_list(table.schema.field("prompt").type) \
            if "prompt" in table.column_names else False
    for turns in table["messages"].to_pylist():
        split = _split_turns(turns)
        if split is not None and (len(split[0]) > 1
                                  or any(t.get("role") == "system" for t in split[0])):
            return True
    return False


def _with_text_columns(table: pa.Table) -> pa.Table:
    """The set with a row number, and the prompt and answer as text beside their
    lengths, as curate's filter knows them."""
    prompts, outputs = [], []
    if "messages" in table.column_names:
        for turns in table["messages"].to_pylist():
            split = _split_turns(turns)
            prompts.append("\n\n".join(str(t.get("content") or "") for t in split[0])
                           if split else None)
            outputs.append(split[1] if split else None)
    else:
        prompts = [p if isinstance(p, str) or p is None else
                   "\n\n".join(str(t.get("content") or "") for t in p)
                   for p in table["prompt"].to_pylist()]
        outputs = [c if isinstance(c, str) or c is None else
                   "".join(str(t.get("content") or "") for t in c)
                   for c in table["completion"].to_pylist()]
    wide = table.drop_columns([c for c in ("prompt", "output") if c in table.column_names])
    prompt, output = pa.array(prompts, pa.string()), pa.array(outputs, pa.string())
    return wide.append_column("prompt", prompt).append_column("output", output) \
        .append_column("prompt_length", pc.utf8_length(prompt)) \
        .append_column("output_length", pc.utf8_length(output)) \
        .append_column("__row", pa.array(range(table.num_rows), pa.int64()))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
