"""Rendering prompts: sandboxed Jinja2 over a row's fields, few-shot examples and a shared context."""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from batch.spec import PromptSpec, SpecError


class RenderError(ValueError):
    """A row the template cannot render (a missing field, a failing filter)."""


class PromptRenderer:
    """Compiles the job's templates once; `render` is then called per row."""

    def __init__(self, prompt: PromptSpec) -> None:
        # StrictUndefined: a misspelt or missing field fails the row instead of
        # silently rendering an empty string into the prompt.
        self._env = SandboxedEnvironment(
            keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False
        )
        self._shared = {"examples": prompt.examples, "context": prompt.context}
        try:
            self._template = self._env.from_string(prompt.template) if prompt.template else None
            self._messages = [
                (m["role"], self._env.from_string(m["content"])) for m in prompt.messages or []
            ]
        except jinja2.TemplateSyntaxError as exc:
            where = "prompt.template" if prompt.template else "prompt.messages"
            raise SpecError(f"{where}: template syntax error at line {exc.lineno}: {exc.message}") from None

    @property
    def chat(self) -> bool:
        return bool(self._messages)

    def _vars(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, **self._shared, "row": fields}

    def render(self, fields: dict[str, Any]) -> str | list[dict[str, str]]:
        """The prompt text, or the chat messages in chat mode."""
        variables = self._vars(fields)
        try:
            if self._template is not None:
                return self._template.render(variables)
            return [{"role": role, "content": t.render(variables)} for role, t in self._messages]
        except jinja2.UndefinedError as exc:
            raise RenderError(f"template error: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from None
