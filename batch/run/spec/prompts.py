"""Rendering prompts: sandboxed Jinja2 over a row's fields, few-shot examples and a shared context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

from batch.run.spec.errors import SpecError
from batch.run.spec.sandbox import MAX_TEMPLATE, BoundedSandbox, BoundsError, render_bounded


@dataclass(frozen=True)
class PromptSpec:
    """A job's [prompt] table: a template or chat messages, and what they share."""

    template: str | None = None
    messages: list[dict[str, str]] | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    context: str | None = None  # the context file's text


class RenderError(ValueError):
    """A row the template cannot render (a missing field, a failing filter)."""


class PromptRenderer:
    """Compiles the job's templates once; `render` is then called per row."""

    def __init__(self, prompt: PromptSpec) -> None:
        # StrictUndefined: a misspelt or missing field fails the row instead of
        # silently rendering an empty string into the prompt. Immutable: a template
        # that appended to `examples` would change every later row's prompt. Bounded
        # (batch.run.spec.sandbox): no template may loop, recurse or allocate without end.
        self._env = BoundedSandbox(
            keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False
        )
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
        if len(source) > MAX_TEMPLATE:
            raise SpecError(f"{where}: the template is {len(source):,} characters "
                            f"(at most {MAX_TEMPLATE:,}); put long text in context_file")
        try:
            return self._env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise SpecError(f"{where}: template syntax error at line {exc.lineno}: {exc.message}") from None
        except (RecursionError, MemoryError, SyntaxError) as exc:
            # Nesting deeper than Jinja's parser or Python's compiler can take.
            raise SpecError(f"{where}: the template nests too deeply to compile "
                            f"({type(exc).__name__})") from None

    @property
    def chat(self) -> bool:
        return bool(self._messages)

    def _vars(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {**self._defaults, **fields, **self._shared, "row": fields}

    def render(self, fields: dict[str, Any]) -> str | list[dict[str, str]]:
        """The prompt text, or the chat messages in chat mode."""
        variables = self._vars(fields)
        try:
            if self._template is not None:
                return render_bounded(self._template, variables)
            return [{"role": role, "content": render_bounded(t, variables)}
                    for role, t in self._messages]
        except BoundsError as exc:
            raise RenderError(f"template error: {exc}") from None
        except RecursionError:
            raise RenderError("template error: recursion too deep (a macro calling itself?)") from None
        except MemoryError:
            raise RenderError("template error: out of memory while rendering") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"template error: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from None
