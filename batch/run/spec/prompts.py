"""Rendering prompts: sandboxed Jinja2 over a row's fields, few-shot examples and a shared context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

from batch.run.spec.sandbox import RenderError, bounded_environment, compile_bounded, render_row

__all__ = ["PromptRenderer", "PromptSpec", "RenderError"]


@dataclass(frozen=True)
class PromptSpec:
    """A job's [prompt] table: a template or chat messages, and what they share."""

    template: str | None = None
    messages: list[dict[str, str]] | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    context: str | None = None  # the context file's text


class PromptRenderer:
    """Compiles the job's templates once; `render` is then called per row."""

    def __init__(self, prompt: PromptSpec) -> None:
        # Bounded (batch.run.spec.sandbox): no template may loop, recurse or allocate
        # without end, nor read a field it was not given.
        self._env = bounded_environment()
        # What the job sets wins over a row field of the same name; what it leaves
        # unset must not hide one (a QA dataset's own `context` column).
        self._defaults = {"examples": [], "context": None}
        self._shared: dict[str, Any] = {}
        if prompt.examples:
            self._shared["examples"] = prompt.examples
        if prompt.context is not None:
            self._shared["context"] = prompt.context
        self._template = self._compile("prompt.template", prompt.template) if prompt.template else None
        self._messages = [
            (m["role"], self._compile(f"prompt.messages[{i}].content", m["content"]))
            for i, m in enumerate(prompt.messages or [])
        ]

    def _compile(self, where: str, source: str) -> jinja2.Template:
        return compile_bounded(self._env, where, source)

    @property
    def chat(self) -> bool:
        return bool(self._messages)

    def _vars(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {**self._defaults, **fields, **self._shared, "row": fields}

    def render(self, fields: dict[str, Any]) -> str | list[dict[str, str]]:
        """The prompt text, or the chat messages in chat mode."""
        variables = self._vars(fields)
        if self._template is not None:
            return render_row(self._template, variables)
        return [{"role": role, "content": render_row(t, variables)} for role, t in self._messages]
