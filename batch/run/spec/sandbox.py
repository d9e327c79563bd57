"""A Jinja2 sandbox with bounds: a template may not recurse, loop or allocate without end.

Jinja's own sandbox stops templates from reaching Python's internals, but not from
asking for `'x' * 10**10`, `range(100000)` nested three deep, `'x'|center(10**9)` or
a macro that calls itself. `BoundedSandbox` adds what a batch run needs to render
millions of rows on a shared machine:

- every value an operator, filter or method makes is checked *before* it is made
  (`*`, `+`, `**`, `%`, `~`, widths and counts passed to filters and methods,
  `join`, `replace`, format specs), and refused over `MAX_VALUE` characters or items;
- each render has a budget of `MAX_STEPS` loop iterations and calls (deterministic:
  the same row fails the same way on any machine) and a wall-clock deadline;
- a filter that walks its input item by item in Python (`wordwrap`, `sort`, `pprint`,
  ...) is charged every item it will walk before it runs: one call is never left to
  take minutes where the deadline, checked between steps, cannot stop it;
- the rendered text stops at `MAX_OUTPUT` characters; recursion and MemoryError become
  errors of the row.

A refusal raises `BoundsError`. Every template a job holds (its prompt and chat
messages, a score's reference, a judge's prompt) is compiled with `compile_bounded`
and rendered with `render_row`, which turns whatever a row's rendering can raise into
one `RenderError` naming why: the prompt renderer reports it as a failed row, scoring
as a row that could not be scored.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Callable, Iterator
from functools import update_wrapper
from typing import Any

import jinja2
from jinja2 import Template, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from batch.run.spec.errors import SpecError

MAX_VALUE = 16_000_000  # characters of a string, items of a list, made by one operation
MAX_OUTPUT = 16_000_000  # characters of a rendered prompt (or chat message)
MAX_STEPS = 1_000_000  # loop iterations and calls per render
MAX_SECONDS = 30.0  # per render: a safety net under the step budget
MAX_INT_BITS = 100_000  # integers a template computes (10**30000 is plenty)
MAX_TEMPLATE = 1_000_000  # characters of a template's source

_ITERATE = "__almanac_iterate"
_CONCAT = "__almanac_concat"
# Widths and precisions inside %-formats and str.format specs: "%999999999d", "{:>9999999}".
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\d*)(?:\.(\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")


class BoundsError(Exception):
    """A template went past a bound; the message says which."""


class RenderError(ValueError):
    """A row the template cannot render (a missing field, a failing filter, a bound)."""


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def _made(what: str, size: int) -> None:
    """Refuse to make a value of `size` characters or items."""
    if size > MAX_VALUE:
        raise BoundsError(f"{what} would make a value of {size:,} characters or items "
                          f"(at most {MAX_VALUE:,})")


def _result(what: str, value: Any) -> Any:
    _made(what, _size(value))
    return value


def _check_format(fmt: str) -> None:
    specs = [d for m in _PERCENT_SPEC.finditer(fmt) for d in m.groups() if d]
    specs += [d for m in _BRACE_SPEC.finditer(fmt) for d in re.findall(r"\d+", m.group(1))]
    for digits in specs:
        if len(digits) > 8 or int(digits) > MAX_VALUE:
            raise BoundsError(f"format width {digits} is over {MAX_VALUE:,}")


def _count(what: str, n: Any) -> None:
    if isinstance(n, int) and not isinstance(n, bool) and n > MAX_VALUE:
        raise BoundsError(f"{what}: {n:,} is over {MAX_VALUE:,}")


def _materialized(items: Any) -> list[Any]:
    """An iterable as a list no longer than MAX_VALUE (a generator is consumed here)."""
    out: list[Any] = []
    for item in items:
        out.append(item)
        if len(out) > MAX_VALUE:
            raise BoundsError(f"more than {MAX_VALUE:,} items")
    return out


def _joined(what: str, items: list[Any], sep: Any) -> None:
    _made(what, sum(len(str(i)) for i in items) + len(str(sep)) * max(len(items) - 1, 0))


def _replaced(what: str, s: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        n = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            n = min(n, count)
        _made(what, len(s) + n * (len(new) - len(old)))


def _filter_checks(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Check the filter call `name(**args)` before it runs; returns the arguments to run it
    with (an iterable it must walk is handed on as the list it was checked as)."""
    value = args.get("value", args.get("s"))
    if name == "join" and "value" in args:
        args["value"] = items = _materialized(args["value"])
        if args.get("attribute") is None:
            _joined("join", items, args.get("d", ""))
    elif name == "center" and isinstance(args.get("width"), int):
        _made("center", max(_size(str(value)), args["width"]))
    elif name == "indent":
        width = args.get("width", 4)
        per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _made("indent", _size(str(value)) + per_line * (str(value).count("\n") + 1))
    elif name == "replace":
        _replaced("replace", args.get("s"), args.get("old"), args.get("new"), args.get("count"))
    elif name == "format" and isinstance(value, str):
        _check_format(value)
    elif name in ("batch", "slice"):
        _count(name, args.get("linecount", args.get("slices")))
    return args


_CHECKED_FILTERS = frozenset({"join", "center", "indent", "replace", "format", "batch", "slice"})
# Filters that walk their input in Python, an item (or a character) at a time: each costs a
# step per item, charged before the call (`("x" * 10**6)|wordwrap(1)` would make a million
# lines, `|sort` a million keys, in one call that no deadline between steps can stop).
_WALKING = frozenset({"wordwrap", "title", "urlize", "urlencode", "pprint", "tojson", "sort",
                      "dictsort", "unique", "groupby", "min", "max", "sum", "xmlattr", "batch",
                      "slice", "map", "select", "reject", "selectattr", "rejectattr", "items"})
_NESTED = frozenset({"pprint", "tojson"})  # these walk nested values too
_INPUT = ("value", "s", "iterable", "d")  # what the walking filters call their input


def _nested_items(value: Any, limit: int) -> int:
    """Items a walk of `value` meets, nested lists and dicts included (a list repeated
    inside another counts each time), counted until past `limit`."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        children = item.values() if isinstance(item, dict) else \
            item if isinstance(item, list | tuple) else None
        if children is None:
            continue
        count += len(children)
        if count > limit:
            break
        # Which kinds of values it holds, asked at C speed: most hold no containers at all.
        if any(issubclass(kind, dict | list | tuple) for kind in set(map(type, children))):
            stack.extend(c for c in children if isinstance(c, dict | list | tuple))
    return max(count, 1)


def _walk_cost(name: str, args: dict[str, Any], limit: int) -> int:
    """The items the filter `name(**args)` will walk (0 when it cannot tell: an iterator is
    charged as it is consumed instead)."""
    value = next((args[k] for k in _INPUT if k in args), None)
    if name in _NESTED:
        return _nested_items(value, limit)
    if not hasattr(value, "__len__"):
        return 0
    size = len(value)
    width = args.get("width", 79)
    if name == "wordwrap" and isinstance(value, str) and isinstance(width, int) and size <= limit:
        return size + _wrap_cost(value, max(width, 1))
    return size


def _wrap_cost(text: str, width: int) -> int:
    """Steps textwrap takes beyond reading `text`: some twenty Python operations per line
    it makes, and a copy of what is left of a word longer than `width` for each line cut
    from it (quadratic in the word: `"x" * 300000` cut one character a line copies 45 GB),
    a step per 2 KiB copied."""
    longest = max(map(len, text.split()), default=0)
    copied = longest * longest // (2 * width) if longest > width else 0
    return 16 * (len(text) // width) + copied // 2048
_STR_WIDTH = frozenset({"center", "ljust", "rjust", "zfill"})


class _Budget(NodeTransformer):
    """Every loop's iterable goes through the step budget; every `~` through the size check."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name(_ITERATE, "load"), [node.iter], [], None, None,
                               lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.Name(_CONCAT, "load"), node.nodes, [], None, None,
                          lineno=node.lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with the bounds this module describes."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: self._bounded_filter(name, f) for name, f in self.filters.items()}
        self.globals.pop("lipsum", None)  # lipsum(n=10**9): text without end, of no use here
        # Held once, so that `call` knows its own helpers by identity and skips its checks.
        self._helpers = (self._iterate, self._concat)
        self.globals[_ITERATE], self.globals[_CONCAT] = self._helpers
        self._steps = 0
        self._deadline = math.inf

    # -- per render ------------------------------------------------------------------------

    def start(self) -> None:
        """Call before each render: a fresh budget of steps and time."""
        self._steps = 0
        self._deadline = time.monotonic() + MAX_SECONDS

    def _step(self) -> None:
        self._steps += 1
        if self._steps > MAX_STEPS:
            raise BoundsError(f"more than {MAX_STEPS:,} loop iterations and calls")
        if self._steps % 1024 == 0 and time.monotonic() > self._deadline:
            raise BoundsError(f"rendering took more than {MAX_SECONDS:.0f} s")

    def _charge(self, what: str, items: int) -> None:
        """Steps for work one call does in a loop of its own, charged before it starts."""
        if items <= 0:
            return
        self._steps += items
        if self._steps > MAX_STEPS:
            raise BoundsError(f"{what} would take more than {MAX_STEPS:,} loop iterations "
                              "and calls")
        if time.monotonic() > self._deadline:
            raise BoundsError(f"rendering took more than {MAX_SECONDS:.0f} s")

    def _iterate(self, iterable: Any) -> Iterator[Any]:
        for item in iterable:
            self._step()
            yield item

    def _concat(self, *parts: Any) -> str:
        texts = [str(p) for p in parts]
        _made("~", sum(map(len, texts)))
        return "".join(texts)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Budget().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree

    # -- operators, calls and filters ------------------------------------------------------

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self._step()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if _size(seq) and isinstance(n, int):
                    _made("*", _size(seq) * max(n, 0))
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise BoundsError(f"an integer of more than {MAX_INT_BITS:,} bits")
        elif operator == "+" and _size(left) and _size(right):
            _made("+", _size(left) + _size(right))
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) \
                and right > 0 and abs(left) > 1 and right * abs(left).bit_length() > MAX_INT_BITS:
            raise BoundsError(f"an integer of more than {MAX_INT_BITS:,} bits")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return _result(operator, super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is __self._helpers[0] or __obj is __self._helpers[1]:
            return __obj(*args)
        __self._step()
        # The sandbox hands out str.format wrapped (its `__wrapped__` is the bound method).
        method = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", "call")
        if isinstance(owner, str):
            if name in _STR_WIDTH and args:
                _count(name, args[0])
            elif name == "expandtabs":
                size = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(size, int):
                    _made(name, len(owner) + owner.count("\t") * size)
            elif name in ("format", "format_map"):
                _check_format(owner)
            elif name == "replace" and len(args) >= 2:
                _replaced(name, owner, *args[:3])
            elif name == "join" and args:
                items = _materialized(args[0])
                _joined(name, items, owner)
                args = (items, *args[1:])
        return _result(name, super().call(__context, __obj, *args, **kwargs))

    def _bounded_filter(self, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(f)

        walking = name in _WALKING

        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._step()
            if name not in _CHECKED_FILTERS and not walking:
                return _result(name, f(*args, **kwargs))
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return f(*args, **kwargs)  # let the filter say what is wrong with its call
            arguments = dict(bound.arguments)
            if walking:
                self._charge(name, _walk_cost(name, arguments, MAX_STEPS - self._steps))
                key = next((k for k in _INPUT if k in arguments), None)
                if key is not None and not hasattr(arguments[key], "__len__") \
                        and hasattr(arguments[key], "__iter__"):
                    arguments[key] = self._iterate(arguments[key])  # a step per item
            if name in _CHECKED_FILTERS:
                arguments = _filter_checks(name, arguments)
            bound.arguments.update(arguments)
            return _result(name, f(*bound.args, **bound.kwargs))

        return update_wrapper(bounded, f)  # keeps jinja's pass_context / pass_eval_context marks


def render_bounded(template: Template, variables: dict[str, Any]) -> str:
    """Render a BoundedSandbox's `template` within the step, time and output bounds."""
    env = template.environment
    if isinstance(env, BoundedSandbox):
        env.start()
    out: list[str] = []
    total = 0
    for chunk in template.generate(variables):
        total += len(chunk)
        if total > MAX_OUTPUT:
            raise BoundsError(f"the rendered prompt is over {MAX_OUTPUT:,} characters")
        out.append(chunk)
    return "".join(out)


def bounded_environment() -> BoundedSandbox:
    """The sandbox every job template renders in. StrictUndefined: a misspelt or missing
    field fails the row instead of silently rendering an empty string. Immutable: a
    template that appended to `examples` would change every later row's output."""
    return BoundedSandbox(keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
                          autoescape=False)


def compile_bounded(env: BoundedSandbox, where: str, source: str) -> Template:
    """`source` compiled in `env`; a template too long, malformed or nested too deeply is a
    SpecError naming `where` (its field in the job file)."""
    if len(source) > MAX_TEMPLATE:
        raise SpecError(f"{where}: the template is {len(source):,} characters "
                        f"(at most {MAX_TEMPLATE:,}); put long text in context_file")
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise SpecError(f"{where}: template syntax error at line {exc.lineno}: {exc.message}") from None
    except (RecursionError, MemoryError, SyntaxError) as exc:
        # Nesting deeper than Jinja's parser or Python's compiler can take.
        raise SpecError(f"{where}: the template nests too deeply to compile "
                        f"({type(exc).__name__})") from None


def render_row(template: Template, variables: dict[str, Any]) -> str:
    """One row's rendering within the bounds; RenderError says why it could not be made."""
    try:
        return render_bounded(template, variables)
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
