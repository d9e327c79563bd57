"""`curate --where`: a small filter language over a job's predictions, parsed here and
run as Arrow compute expressions. User text is never evaluated as Python.

    score >= 0.5 and finish_reason == "stop"
    output_tokens < 200 and not (output contains "I cannot")
    len(output) > 20 and row.topic in ["botany", "history"]
    score is null or output matches "^[A-Z]"

Names are the columns curate knows (`COLUMNS`) and the input's fields as `row.NAME`.
Operators: `or`, `and`, `not`; comparisons `== != < <= > >=`; `in [...]` and
`not in [...]`; `is null`, `is not null`; `contains` (a substring) and `matches` (an
RE2 regular expression: linear time, no backtracking); `+ - * /` on numbers;
functions `len(text)` and `lower(text)`. Literals: numbers, 'single' or "double"
quoted text, true, false, null. A comparison with a null value is unknown, and a row
whose filter is unknown is left out (`score >= 0.5` drops unscored rows).

Errors name what does not parse (with its column) or the unknown name: `WhereError`
(a UsageError, exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.errors import UsageError

if TYPE_CHECKING:  # pyarrow.compute loads only when a filter runs
    import pyarrow.compute as pc

# The columns a filter may name, and their kinds.
COLUMNS: dict[str, str] = {
    "score": "number", "finish_reason": "text", "prompt_tokens": "number",
    "output_tokens": "number", "prompt_length": "number", "output_length": "number",
    "output": "text", "prompt": "text", "candidate": "text", "model": "text",
    "revision": "text", "adapter": "text", "input_id": "text", "key": "text",
    "run_id": "text",
}
_TOKEN = re.compile(r"""\s*(?:
    (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<text>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.|\+|-|\*|/)
)""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false", "contains", "matches"}
_FUNCTIONS = {"len": ("text", "number"), "lower": ("text", "text")}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


class WhereError(UsageError, ValueError):
    """A filter that does not parse, names an unknown column or field, or compares
    values of different kinds."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, text, name, op, end
    value: str
    column: int  # 1-based, for messages


@dataclass
class Compiled:
    """A parsed filter: the Arrow expression, and the input fields it names."""

    expression: pc.Expression
    fields: set[str]


def _tokens(source: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            col = pos + len(source[pos:]) - len(source[pos:].lstrip()) + 1
            raise WhereError(f"--where: cannot parse {source[col - 1:col + 9]!r} at column {col}")
        kind = m.lastgroup or "op"
        out.append(_Tok(kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    out.append(_Tok("end", "", len(source) + 1))
    return out


class _Parser:
    """Recursive descent: or > and > not > comparison > sum > product > unary > atom.
    Each rule returns (expression, kind); kinds are number, text, bool, null, list."""

    def __init__(self, source: str, fields: dict[str, str]) -> None:
        import pyarrow.compute as pc

        self.pc = pc
        self.source = source
        self.toks = _tokens(source)
        self.i = 0
        self.known_fields = fields
        self.fields: set[str] = set()

    # -- tokens -------------------------------------------------------------------------------

    def peek(self, *values: str) -> bool:
        tok = self.toks[self.i]
        return tok.kind in ("op", "name") and tok.value in values

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        if not self.peek(value):
            self.fail(f"expected {value!r}")
        self.i += 1

    def fail(self, what: str) -> None:
        tok = self.toks[self.i]
        found = "the end" if tok.kind == "end" else repr(tok.value)
        raise WhereError(f"--where: {what} at column {tok.column}, found {found}")

    # -- rules --------------------------------------------------------------------------------

    def parse(self) -> Compiled:
        expr, kind = self.or_()
        if self.toks[self.i].kind != "end":
            self.fail("expected `and`, `or` or the end")
        if kind != "bool":
            raise WhereError(f"--where: {self.source!r} is a {kind}, not a condition "
                             "(compare it: `score >= 0.5`)")
        return Compiled(expr, self.fields)

    def or_(self) -> tuple[Any, str]:
        left, kind = self.and_()
        while self.peek("or"):
            self.take()
            right, rkind = self.and_()
            self._bools("or", kind, rkind)
            left, kind = left | right, "bool"
        return left, kind

    def and_(self) -> tuple[Any, str]:
        left, kind = self.not_()
        while self.peek("and"):
            self.take()
            right, rkind = self.not_()
            self._bools("and", kind, rkind)
            left, kind = left & right, "bool"
        return left, kind

    def not_(self) -> tuple[Any, str]:
        if self.peek("not"):
            self.take()
            expr, kind = self.not_()
            self._bools("not", kind, "bool")
            return ~expr, "bool"
        return self.comparison()

    def comparison(self) -> tuple[Any, str]:
        pc = self.pc
        left, kind = self.sum_()
        if self.peek("==", "!=", "<", "<=", ">", ">="):
            op = self.take().value
            right, rkind = self.sum_()
            if "null" in (kind, rkind):
                raise WhereError(f"--where: compare with null using `is null` or `is not null`, "
                                 f"not `{op} null`")
            self._same(op, kind, rkind)
            funcs = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
                     ">": pc.greater, ">=": pc.greater_equal}
            return funcs[op](left, right), "bool"
        if self.peek("is"):
            self.take()
            negate = self.peek("not")
            if negate:
                self.take()
            self.expect("null")
            test = pc.is_null(left)
            return (~test if negate else test), "bool"
        if self.peek("in") or (self.peek("not") and self.toks[self.i + 1].value == "in"):
            negate = self.take().value == "not"
            if negate:
                self.take()
            values, vkind = self.literal_list()
            if kind == "null":
                raise WhereError("--where: `in` takes a value on its left, not null "
                                 "(use `is null` or `is not null`)")
            if values:
                self._same("in", kind, vkind)
            typed = left.cast(_arrow(kind)) if kind == "number" else left
            test = pc.is_in(typed, value_set=_array(values, kind))
            return (~test if negate else test), "bool"
        if self.peek("contains", "matches"):
            op = self.take().value
            tok = self.take()
            if tok.kind != "text":
                self.i -= 1
                self.fail(f"`{op}` takes a quoted text")
            self._same(op, kind, "text")
            pattern = _unquote(tok.value)
            if op == "contains":
                return pc.match_substring(left, pattern), "bool"
            _check_regex(pattern)
            return pc.match_substring_regex(left, pattern), "bool"
        return left, kind

    def sum_(self) -> tuple[Any, str]:
        left, kind = self.product()
        while self.peek("+", "-"):
            op = self.take().value
            right, rkind = self.product()
            self._numbers(op, kind, rkind)
            left = (self.pc.add if op == "+" else self.pc.subtract)(left, right)
        return left, kind

    def product(self) -> tuple[Any, str]:
        left, kind = self.unary()
        while self.peek("*", "/"):
            op = self.take().value
            right, rkind = self.unary()
            self._numbers(op, kind, rkind)
            if op == "/":  # a float quotient, and null rather than an error for x / 0
                pc = self.pc
                import pyarrow as pa

                nothing = pc.scalar(pa.scalar(None, _arrow("number")))
                divisor = pc.if_else(pc.equal(right, 0), nothing, right.cast(_arrow("number")))
                left = pc.divide(left.cast(_arrow("number")), divisor)
            else:
                left = self.pc.multiply(left, right)
        return left, kind

    def unary(self) -> tuple[Any, str]:
        if self.peek("-"):
            self.take()
            expr, kind = self.unary()
            self._numbers("-", kind, "number")
            return self.pc.negate(expr), kind
        return self.atom()

    def atom(self) -> tuple[Any, str]:
        pc = self.pc
        tok = self.take()
        if tok.kind == "number":
            return pc.scalar(float(tok.value)), "number"
        if tok.kind == "text":
            return pc.scalar(_unquote(tok.value)), "text"
        if tok.kind == "op" and tok.value == "(":
            expr = self.or_()
            self.expect(")")
            return expr
        if tok.kind == "name":
            if tok.value in ("true", "false"):
                return pc.scalar(tok.value == "true"), "bool"
            if tok.value == "null":
                return pc.scalar(None), "null"
            if tok.value in _FUNCTIONS and self.peek("("):
                return self.call(tok.value)
            if tok.value == "row" and self.peek("."):
                self.take()
                name = self.take()
                if name.kind != "name":
                    self.i -= 1
                    self.fail("expected a field name after `row.`")
                return self.field(name.value)
            if tok.value in COLUMNS:
                return pc.field(tok.value), COLUMNS[tok.value]
            if tok.value not in _KEYWORDS:
                raise WhereError(f"--where: unknown column {tok.value!r} at column {tok.column} "
                                 f"(columns: {', '.join(COLUMNS)}; input fields as row.NAME)")
        self.i -= 1
        self.fail("expected a value, a column or `(`")
        raise AssertionError("unreachable")

    def call(self, name: str) -> tuple[Any, str]:
        self.expect("(")
        arg, kind = self.or_()
        self.expect(")")
        wants, gives = _FUNCTIONS[name]
        if kind != wants:
            raise WhereError(f"--where: {name}() takes {wants}, not {kind}")
        kernel = {"len": self.pc.utf8_length, "lower": self.pc.utf8_lower}[name]
        return kernel(arg), gives

    def field(self, name: str) -> tuple[Any, str]:
        if name not in self.known_fields:
            known = ", ".join(sorted(self.known_fields)) or "none"
            raise WhereError(f"--where: unknown field row.{name} (the input's fields: {known})")
        self.fields.add(name)
        return self.pc.field(f"row.{name}"), self.known_fields[name]

    def literal_list(self) -> tuple[list[Any], str]:
        self.expect("[")
        values: list[Any] = []
        kinds = set()
        while not self.peek("]"):
            tok = self.take()
            if tok.kind == "number":
                values.append(float(tok.value))
                kinds.add("number")
            elif tok.kind == "text":
                values.append(_unquote(tok.value))
                kinds.add("text")
            else:
                self.i -= 1
                self.fail("expected a number or a quoted text in the list")
            if not self.peek("]"):
                self.expect(",")
        self.take()
        if len(kinds) > 1:
            raise WhereError("--where: a list mixes numbers and text")
        return values, kinds.pop() if kinds else "list"

    # -- kinds --------------------------------------------------------------------------------

    def _same(self, op: str, left: str, right: str) -> None:
        if left != right:
            raise WhereError(f"--where: `{op}` compares {left} with {right}")

    def _numbers(self, op: str, left: str, right: str) -> None:
        if left != "number" or right != "number":
            raise WhereError(f"--where: `{op}` takes numbers, not {left} and {right}")

    def _bools(self, op: str, left: str, right: str) -> None:
        if left != "bool" or right != "bool":
            raise WhereError(f"--where: `{op}` joins conditions, not {left} and {right}")


def compile_where(source: str, fields: dict[str, str]) -> Compiled:
    """Parse `source` into an Arrow expression over the columns curate makes (`COLUMNS`,
    and `row.NAME` for each of `fields`: {name: number | text | bool})."""
    if len(source) > 10_000:
        raise WhereError("--where: the filter is over 10,000 characters")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as exc:  # bytes the command line could not decode (`\xff`)
        raise WhereError(f"--where: the filter is not UTF-8 text (at column {exc.start + 1})") \
            from None
    try:
        return _Parser(source, fields).parse()
    except RecursionError:
        raise WhereError("--where: the filter nests too deeply") from None


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1])


def _check_regex(pattern: str) -> None:
    """RE2's own verdict (Python's `re` takes patterns RE2 refuses, as backreferences)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except pa.ArrowInvalid as exc:
        raise WhereError(f"--where: {pattern!r} is not a regular expression: {exc}") from None


def _arrow(kind: str) -> Any:
    import pyarrow as pa

    return {"number": pa.float64(), "text": pa.string(), "bool": pa.bool_()}.get(kind, pa.null())


def _array(values: list[Any], kind: str) -> Any:
    import pyarrow as pa

    return pa.array(values, _arrow(kind) if kind in ("number", "text", "bool") else pa.string())
