"""Runs the examples in the project's Markdown files against a demo home, so the
documentation cannot drift from the code. What each fenced block means is written in
docs/DEVELOPMENT.md; this module reads the blocks, runs them and compares what they show.
"""

from __future__ import annotations

import contextlib
import doctest
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
DOC_PORT = "8765"  # the port the documents show; each run serves on a free one instead
SHELL = {"console", "sh"}
PYTHON = {"python", "pycon"}
# Why a block may be left out, by the name its tag gives (`console norun=cluster`).
NOT_RUN = {
    "setup": "./scripts/* install or reinstall the environment",
    "hub": "asks the Hugging Face Hub over the network",
    "cluster": "needs a Ray cluster beyond this machine",
    "public": "listens on an address other machines reach",
    "engine": "generates with the engine for minutes",
    "training": "trains a model: a minute or more on a CPU",
    "terminal": "a full-screen app: needs a terminal",
    "source-tree": "writes into the source tree",
    "bench": "a full benchmark: minutes to hours",
    "gpu": "needs an NVIDIA GPU",
}
# `./scripts/demo` is the session's demo run (after setup): its output is compared
# with what that run printed.
DEMO_COMMAND = "./scripts/demo"
# How the documents write the scratch directory and the default home.
SHOWN_PATHS = {"/home/you/.local/share/almanac": "<home>", "/home/you/work": "<dir>"}
# Subcommands that run a job, an engine or a server: in a process of their own.
_OWN_PROCESS = {"run", "demo", "serve", "tui", "train", "distill"}


@dataclass(frozen=True)
class DemoHome:
    """The home `almanac demo` left, and what it printed on stdout."""

    path: Path
    output: str

    def copy(self, to: Path) -> Path:
        shutil.copytree(self.path, to, symlinks=True)
        return to


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its options (`norun=REASON`, `file=NAME`)."""

    source: Path
    line: int
    lang: str
    options: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line}"


@dataclass
class Command:
    """A shell command and the output the document shows for it (None: not shown)."""

    text: str
    line: int
    expected: list[str] | None = field(default_factory=list)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    found = []
    for token in MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8")):
        if token.type != "fence":
            continue
        lang, *words = token.info.split() or [""]
        options = dict(w.split("=", 1) if "=" in w else (w, "") for w in words)
        line = (token.map[0] + 1) if token.map else 0
        found.append(Block(path, line, lang, options, token.content))
    return found


def commands(block: Block) -> list[Command]:
    """`console`: `$ ` lines are commands, the lines after one its output. `sh`: every
    line is a command (comments and blank lines aside), its output not shown. A line
    ending in a backslash, or inside a quotation, goes on into the next."""
    found: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        number, line = block.line + 1 + i, lines[i]
        prompt = block.lang == "console" and line.startswith("$ ")
        if prompt or (block.lang == "sh" and line.strip() and not line.lstrip().startswith("#")):
            text = [line[2:] if prompt else line]
            while (text[-1].endswith("\\") or _open_quote("\n".join(text))) \
                    and i + 1 < len(lines):
                i += 1
                text.append(lines[i])
            found.append(Command("\n".join(text), number,
                                 [] if block.lang == "console" else None))
        elif block.lang == "console":
            if not found:
                raise AssertionError(f"{block.where}: output before any `$ ` command")
            assert found[-1].expected is not None
            found[-1].expected.append(line)
        i += 1
    return found


def _open_quote(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return True
    return False


# What may differ from one run to the next and is masked on both sides: durations,
# rates, dates, run ids, content keys, the home's path, and the cells of timing columns.
_MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?"),
     "<date>"),
    (re.compile(r"part-\d{8}T\d+-[0-9a-f]+-\d+"), "part-<shard>"),
    (re.compile(r"\b\d[\d,]*(?:\.\d+)?(?= (?:output )?(?:tokens|rows)/s\b)"), "<n>"),
    (re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?(?:ms|s)\b"), "<t>"),
    (re.compile(r"\b1\d{9}\b"), "<epoch>"),
    (re.compile(r"(?<=USD )[\d.]+|(?<=the teacher's )[\d.]+"), "<cost>"),
    # Run ids, content keys and their beginnings, curated files' digests: a LoRA
    # adapter's files and a run's id differ from one demo to the next.
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{12,}\b"), "<hex>"),
    # Sizes of files that hold dates and ids.
    (re.compile(r"\b\d[\d,]* bytes\b"), "<n> bytes"),
]
_TIMING_COLUMNS = {"TOK/S", "START S", "ENGINE S", "USD/1K ROWS", "CREATED", "STARTED",
                   "FINISHED", "DURATION", "FIRST SEEN", "LAST SEEN", "SECONDS"}
_HEADER_CELL = re.compile(r"\S+(?: \S+)*")
# A run's progress line (every 5 s when stderr is not a terminal): a timing, not a result.
_PROGRESS = re.compile(r"^\S+: [\d,]+/[\d,]+ rows, ")


def _mask_tables(lines: list[str]) -> list[str]:
    """Cells under a timing column's header, masked: tables are left-aligned, so each
    cell starts where its header does."""
    out: list[str] = []
    columns: list[tuple[int, int | None]] | None = None
    starts: list[int | None] = []
    marker = 0  # the Pareto front's `*` before a costed table's rows follows the timings
    for line in lines:
        cells = [(m.start(), m.group()) for m in _HEADER_CELL.finditer(line)]
        names = [name for _, name in cells]
        if len(cells) >= 2 and all(n.upper() == n and re.search("[A-Z]", n) for n in names) \
                and _TIMING_COLUMNS & set(names):
            starts = [s for s, _ in cells] + [None]
            columns = [(starts[k], starts[k + 1]) for k, n in enumerate(names)
                       if n in _TIMING_COLUMNS]
            marker = cells[0][0] if "USD/1K ROWS" in names else 0
        elif not line.strip():
            columns = None
        elif columns and any(s and len(line) > s and line[s - 1] != " " for s in starts[:-1]):
            columns = None  # not a row of the table: text that follows it
        elif columns:
            for start, end in reversed(columns):
                if len(line) > start:
                    tail = line[end:] if end is not None and len(line) > end else ""
                    line = line[:start] + "<t>  " + tail
            line = line[marker:]
        out.append(line)
    return out


def normalize(text: str, replace: dict[str, str]) -> list[str]:
    for old, new in replace.items():
        text = text.replace(old, new)
    lines = [line for line in text.splitlines() if not _PROGRESS.match(line)]
    lines = _mask_tables(lines)
    for pattern, mask in _MASKS:
        lines = [pattern.sub(mask, line) for line in lines]
    lines = [re.sub(r"\s+", " ", line).strip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; a line `...` in the expected output stands for any lines."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if line == "..." else re.escape(line) + r"\n"
                      for line in expected)
    return re.fullmatch(pattern, "".join(f"{line}\n" for line in actual)) is not None


class _Checker(doctest.OutputChecker):
    def __init__(self, replace: dict[str, str]) -> None:
        self.replace = replace

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return matches(normalize(want, {}), normalize(got, self.replace))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DocumentRun:
    """One document's examples, in order, in a scratch directory with its own copy of
    the demo home; a command ending in `&` runs in the background until the end."""

    def __init__(self, path: Path, demo: DemoHome, scratch: Path) -> None:
        self.path, self.demo_output = path, demo.output
        self.workdir = scratch / "work"
        self.workdir.mkdir(parents=True)
        self.home = demo.copy(scratch / "home")
        self.port = str(free_port())
        self.replace = {str(self.home): "<home>", str(demo.path): "<home>",
                        str(self.workdir): "<dir>", f":{self.port}": f":{DOC_PORT}"}
        self.settings = {"ALMANAC_HOME": str(self.home), "HF_HUB_OFFLINE": "1",
                         "HF_HOME": str(scratch / "hf"), "NO_COLOR": "1", "TERM": "dumb",
                         # what a terminal shows: stdout and stderr in the order written
                         "PYTHONUNBUFFERED": "1"}
        # The tree under test, whichever one the environment's `almanac` was installed from.
        self.env = {**os.environ, **self.settings, "PYTHONPATH": str(ROOT),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        (scratch / "hf" / "hub").mkdir(parents=True)  # an empty Hugging Face cache
        (self.workdir / ".venv").symlink_to(Path(sys.executable).parent.parent)
        self.background: list[subprocess.Popen[str]] = []
        self.globals: dict[str, object] = {"__name__": "__doc_example__"}
        self.failures: list[str] = []

    def run(self) -> list[str]:
        try:
            for block in blocks(self.path):
                self._block(block)
        finally:
            self._stop_background()
        return self.failures

    def _block(self, block: Block) -> None:
        reason = block.options.get("norun")
        if reason is not None:
            if reason not in NOT_RUN:
                self.failures.append(f"{block.where}: norun={reason} is none of {sorted(NOT_RUN)}")
            elif block.lang == "console":
                self._demo_transcript(block)
            return
        if "file" in block.options:
            (self.workdir / block.options["file"]).write_text(block.text, encoding="utf-8")
        if block.lang == "toml":
            try:
                tomllib.loads(block.text)
            except tomllib.TOMLDecodeError as exc:
                self.failures.append(f"{block.where}: not TOML: {exc}")
        elif block.lang in SHELL:
            for command in commands(block):
                self._shell(block, command)
        elif block.lang in PYTHON:
            self._python(block)
        elif block.lang in {"bash", "shell", "py"}:
            self.failures.append(f"{block.where}: say `console`, `sh`, `python` or `pycon`")

    def _demo_transcript(self, block: Block) -> None:
        """A not-run transcript of `./scripts/demo` shows what the session's demo printed."""
        for command in commands(block):
            if command.text == DEMO_COMMAND and command.expected:
                self._compare(block, command, self.demo_output)

    def _shell(self, block: Block, command: Command) -> None:
        text = command.text.replace(DOC_PORT, self.port)
        if text.rstrip().endswith("&"):
            self._start_background(block, command, text.rstrip()[:-1])
            return
        args = _in_process(text)
        if args is not None:
            code, output = self._invoke(args)
        else:
            done = subprocess.run(["bash", "-o", "pipefail", "-c", text], cwd=self.workdir,
                                  env=self.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=600)
            code, output = done.returncode, done.stdout
        if code != 0:
            self.failures.append(f"{block.where}:{command.line}: `{command.text}` exited "
                                 f"{code}:\n{output[-3000:]}")
        elif command.expected:
            self._compare(block, command, output)

    def _invoke(self, args: list[str]) -> tuple[int, str]:
        """The command line in this process: stdout and stderr as a terminal shows them."""
        from almanac.cli import cli

        with self._inside():
            result = CliRunner().invoke(cli, args)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            trace = "".join(traceback.format_exception(result.exception))
            return 1, result.output + trace
        return result.exit_code, result.output

    def _compare(self, block: Block, command: Command, output: str) -> None:
        assert command.expected is not None
        want = normalize("\n".join(command.expected), SHOWN_PATHS)
        got = normalize(output, self.replace)
        if not matches(want, got):
            self.failures.append(f"{block.where}:{command.line}: `{command.text}` showed\n"
                                 + "\n".join(got) + "\n-- the document shows --\n"
                                 + "\n".join(want))

    def _start_background(self, block: Block, command: Command, text: str) -> None:
        log = (self.workdir.parent / f"background-{len(self.background)}.log").open("w")
        process = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=self.workdir,
                                   env=self.env, stdout=log, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        self.background.append(process)
        assert process.stderr is not None
        # A server says where it listens once its socket is bound: requests wait from then.
        for line in process.stderr:
            log.write(line)
            if "running on http" in line:  # the rest goes on to the log, never filling a pipe
                threading.Thread(target=shutil.copyfileobj, args=(process.stderr, log),
                                 daemon=True).start()
                return
        self.failures.append(f"{block.where}:{command.line}: `{command.text}` ended: "
                             f"exit {process.wait()}")

    def _stop_background(self) -> None:
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)

    @contextlib.contextmanager
    def _inside(self) -> Iterator[None]:
        """This process in the scratch directory, with the document's environment."""
        previous, environ = Path.cwd(), dict(os.environ)
        os.chdir(self.workdir)
        os.environ.update(self.settings)
        try:
            yield
        finally:
            os.chdir(previous)
            os.environ.clear()
            os.environ.update(environ)

    def _python(self, block: Block) -> None:
        source = block.text.replace(DOC_PORT, self.port)
        try:
            with self._inside():
                self._run_python(block, source)
        except Exception as exc:
            self.failures.append(f"{block.where}: {type(exc).__name__}: {exc}")

    def _run_python(self, block: Block, source: str) -> None:
        if block.lang == "pycon":
            test = doctest.DocTestParser().get_doctest(
                source, self.globals, block.where, str(block.source), block.line)
            runner = doctest.DocTestRunner(checker=_Checker(self.replace),
                                           optionflags=doctest.REPORT_NDIFF)
            report: list[str] = []
            runner.run(test, out=report.append, clear_globs=False)
            if runner.failures:
                self.failures.append("".join(report))
        else:
            exec(compile(source, block.where, "exec"), self.globals)


def _in_process(text: str) -> list[str] | None:
    """A plain `almanac ARGS` (no shell syntax, no job, engine or server) as its
    arguments; None for anything bash must run."""
    lexer = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:
        return None
    if not words or words[0] != "almanac" or any(
            set(w) <= set(lexer.punctuation_chars) or re.search(r"[$`*?~]", w) for w in words):
        return None
    command = [w for w in words[1:] if not w.startswith("-")][:2]
    if not command or command[0] in _OWN_PROCESS or command == ["misses", "run"]:
        return None
    return words[1:]
