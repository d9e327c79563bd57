"""One cached prediction in full: prompt, output, model, revision, parameters."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui import format as fmt


def _block(title: str, body: str | None, style: str = "") -> list[RenderableType]:
    return [Text(f"\n{title}", style="bold underline"),
            Text(body if body is not None else "(none)", style=style if body is not None
                 else "dim")]


def render_record(r: dict[str, Any]) -> RenderableType:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim", no_wrap=True)
    facts.add_column(overflow="fold")
    for label, value in (
        ("job", r.get("job")), ("input id", r.get("input_id")),
        # The candidate's full label, which tables cut: said when it is more than the model.
        ("candidate", r.get("candidate") if r.get("candidate") != r.get("model") else None),
        ("model", r.get("model")),
        ("revision", r.get("revision")), ("adapter", r.get("adapter")),
        ("finish", r.get("finish_reason")),
        ("tokens", f"{fmt.count(r.get('prompt_tokens'))} in, "
                   f"{fmt.count(r.get('output_tokens'))} out"),
        ("run", r.get("run_id")), ("created", fmt.when(r.get("created_at"))),
        ("key", r.get("key")),
    ):
        if value:
            facts.add_row(label, str(value))
    parts: list[RenderableType] = [facts]
    if r.get("error"):
        parts += _block("Error", r["error"], "red")
    parts += _block("Prompt", r.get("prompt"))
    parts += _block("Output", r.get("output"), "bold")
    for i, extra in enumerate((r.get("outputs") or [])[1:], start=2):
        parts += _block(f"Output {i}", extra)
    params = r.get("params")
    if params:
        try:
            params = json.dumps(json.loads(params), indent=2, sort_keys=True)
        except ValueError:
            pass  # not JSON after all: shown as stored
    parts += _block("Sampling parameters", params)
    if r.get("logprobs"):
        parts += _block("Log-probabilities", fmt.clip(r["logprobs"], 2000), "dim")
    return Group(*parts)


class RecordView(Static):
    def show(self, record: dict[str, Any]) -> None:
        self.update(render_record(record))
