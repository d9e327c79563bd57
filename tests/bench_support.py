"""Running a benchmark at smoke size, in this process or as `python -m bench.X`, and
reading what it reported: the figures it prints on stdout are the ones it writes to
--output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench_main(main: Callable[[list[str]], int], args: Sequence[str], out: Path,
               capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A benchmark's `main` in this process (its figures need no fresh interpreter)."""
    assert main([*args, "--output", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == figures
    return figures


def bench_process(module: str, args: Sequence[str], out: Path) -> tuple[dict[str, Any], str]:
    """`python -m bench.X` in its own process (start-up cost is part of what it measures,
    or it starts engines this process must not hold): its figures and the table it
    printed on stderr."""
    proc = subprocess.run([sys.executable, "-m", module, *args, "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert json.loads(proc.stdout) == figures
    return figures, proc.stderr
