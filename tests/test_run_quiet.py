"""Quiet by default: a run shows Almanac's own lines and progress, and keeps the engine's
output (Python logging, warnings, tqdm bars, and what native code writes straight to
file descriptor 2) in the home's logs/<job>-<run>.log, named in the summary.

The capture works on file descriptors, so its checks run in processes of their own:
pytest's capture replaces sys.stderr in this one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.engine_support import TINY_MODEL, almanac, write_job

ROOT = Path(__file__).resolve().parent.parent
# Almanac's lines: its logger's (a timestamp and a level) and the progress line.
ALMANAC_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) "
                          r"|^hush: [\d,]+/[\d,]+ rows, [\d,.]+ rows/s, [\d,]+ output tokens/s, ETA ")


def _python(code: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False, **kwargs)


def test_a_default_run_prints_no_engine_line_and_its_log_keeps_them(
        home: Path, tmp_path: Path, tiny_model: Path) -> None:
    added = almanac(home, "models", "add", "--path", str(tiny_model), "--name", TINY_MODEL)
    assert added.returncode == 0, added.stderr
    job = write_job(tmp_path, "hush", [{"id": f"r{i}", "word": f"w{i}"} for i in range(24)])
    done = almanac(home, "run", str(job))  # not a terminal: log lines, no bar
    assert done.returncode == 0, done.stderr
    for line in done.stderr.splitlines():
        assert ALMANAC_LINE.match(line), f"not Almanac's: {line!r}\n{done.stderr}"
    assert "hush: 24 rows to generate; the engine's output goes to" in done.stderr

    (run,) = json.loads(almanac(home, "runs", "--json").stdout)
    log = home / "logs" / f"hush-{run['id']}.log"
    assert f"the engine's output: {log}" in done.stdout.splitlines()[1]
    kept = log.read_text()
    assert re.search(r"^\(MainProcess pid=\d+\) (INFO|WARNING) ", kept, re.M)  # vLLM's logging
    assert "Loading safetensors checkpoint shards" in kept  # a tqdm bar
    assert "FutureWarning" in kept  # a Python warning raised inside a library
    assert re.search(r"^\[W\d{4} ", kept, re.M)  # c10's format: torch's C++ code, on fd 2
    assert "rows to generate" not in kept  # Almanac's own lines are not in it

    again = almanac(home, "run", str(job))  # nothing missing: no engine, no log
    assert again.returncode == 0 and again.stderr == ""
    assert sorted(p.name for p in (home / "logs").iterdir()) == [log.name]


CAPTURE = """
    import os, sys, warnings
    from pathlib import Path
    from batch.run.console import EngineOutput, console

    engine = EngineOutput(Path(sys.argv[1]))
    with engine:
        os.write(2, b"native stderr\\n")
        os.write(1, b"native stdout\\n")
        print("python stderr", file=sys.stderr)
        print("python stdout")
        warnings.warn("a library's warning", FutureWarning)
        print("almanac's own line", file=console())
    print("after", flush=True)
    print("after, on stderr", file=sys.stderr)
    print(engine.path)
"""


def test_the_capture_takes_native_and_python_output_and_leaves_almanacs_line(
        tmp_path: Path) -> None:
    log = tmp_path / "logs" / "job-run.log"
    done = _python(CAPTURE, str(log))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"after\n{log}\n"
    assert done.stderr == "almanac's own line\nafter, on stderr\n"
    kept = log.read_text()
    for said in ("native stderr", "native stdout", "python stderr", "python stdout",
                 "FutureWarning: a library's warning"):
        assert said in kept


FAILURE = """
    import os, sys
    from pathlib import Path
    from batch.run.console import EngineFailed, EngineOutput
    from schemas.errors import UsageError

    quiet = EngineOutput(Path(sys.argv[1]) / "quiet.log")
    with quiet:
        pass
    print("nothing said:", quiet.path)
    try:
        with EngineOutput(Path(sys.argv[1]) / "usage.log"):
            raise UsageError("a refusal of ours, as it was")
    except UsageError as exc:
        print("passed through:", exc)
    try:
        with EngineOutput(Path(sys.argv[1]) / "failed.log"):
            os.write(2, b"what the engine said before it failed\\n")
            raise RuntimeError("Engine core initialization failed\\nsecond line")
    except EngineFailed as exc:
        print("failed:", exc, exc.exit_code)
"""


def test_a_failure_inside_is_one_line_naming_the_log_that_keeps_its_traceback(
        tmp_path: Path) -> None:
    done = _python(FAILURE, str(tmp_path))
    assert done.returncode == 0, done.stderr
    log = tmp_path / "failed.log"
    assert done.stdout.splitlines() == [
        "nothing said: None",  # an empty log is not kept
        "passed through: a refusal of ours, as it was",
        f"failed: RuntimeError: Engine core initialization failed (the traceback and the "
        f"engine's log: {log}) 1"]
    assert done.stderr == ""
    kept = log.read_text()
    assert kept.startswith("what the engine said before it failed\nTraceback")
    assert "RuntimeError: Engine core initialization failed\nsecond line" in kept
    assert not (tmp_path / "quiet.log").exists()


PROGRESS = """
    import fcntl, os, select, struct, sys, termios, time
    from batch.run.progress import Progress

    if sys.argv[1] == "terminal":  # a real terminal, 120 columns wide
        leader, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        os.dup2(follower, 2)
    progress = Progress(1000, "fruit", interval=0)
    progress.update(3, 0, answered=False)  # refused before the engine: no clock yet
    for _ in range(4):
        time.sleep(0.15)  # tqdm redraws at most every 0.1 s
        progress.update(100, 800)
    progress.close()
    if sys.argv[1] == "terminal":
        sys.stderr.flush()
        drawn = b""
        while select.select([leader], [], [], 1.0)[0]:  # until the terminal has it all
            drawn += os.read(leader, 65536)
        print(drawn.decode("utf-8", "replace").replace("\\r", "<CR>"))
"""


def test_progress_is_a_line_without_a_terminal_and_one_bar_on_one() -> None:
    lines = _python(PROGRESS, "pipe")
    assert lines.returncode == 0, lines.stderr
    said = lines.stderr.splitlines()
    assert len(said) == 3  # the first answer starts the clock; a line for each after it
    assert said[-1].startswith("fruit: 403/1,000 rows, ")
    for line in said:
        assert re.fullmatch(r"fruit: [\d,]+/1,000 rows, [\d,.]+ rows/s, [\d,]+ output tokens/s, "
                            r"ETA (\d+ min )?\d+ s", line), line

    bar = _python(PROGRESS, "terminal")
    assert bar.returncode == 0, bar.stderr
    drawn = bar.stdout.strip("\n")
    assert re.search(r"<CR>fruit:  40%\|.*\| 403/1000 rows, [\d,.]+ rows/s, [\d,]+ output "
                     r"tokens/s, ETA \d\d:\d\d<CR>", drawn), drawn
    assert "\n" not in drawn  # redrawn in place (carriage returns): one bar


def test_verbose_captures_nothing(tmp_path: Path) -> None:
    from batch.run import console

    try:
        console.configure(tmp_path / "logs")
        assert console.log_path("job", "run") == tmp_path / "logs" / "job-run.log"
        console.configure(tmp_path / "logs", verbose=True)
        assert console.log_path("job", "run") is None
    finally:
        console.configure(None)
    assert console.log_path("job", "run") is None  # a library caller: nothing captured
