"""The house rules, checked: the room graph (import-linter contracts in pyproject.toml),
lint (ruff), small modules, and one reader of the environment's home."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("almanac", "catalog", "batch", "tui", "schemas")
MAX_LINES = 400


def _tool(name: str) -> str:
    """The tool installed beside this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run ./scripts/setup"
    return found


def test_import_contracts_hold() -> None:
    proc = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", proc.stdout)
    assert kept and int(kept.group(1)) >= 5, proc.stdout[-2000:]


def test_ruff_is_clean() -> None:
    proc = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _sources() -> list[Path]:
    return sorted(p for room in ROOMS for p in (ROOT / room).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_in_the_rooms_is_over_the_size_limit() -> None:
    sources = _sources()
    assert any(p.name == "runner.py" for p in sources)
    over = {str(p.relative_to(ROOT)): n for p in sources
            if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES}
    assert over == {}


def test_only_the_front_door_reads_the_home_from_the_environment() -> None:
    readers = [str(p.relative_to(ROOT)) for p in _sources()
               if re.search(r"environ(\.get)?\(?\[?[\"']ALMANAC_HOME", p.read_text("utf-8"))
               or re.search(r"getenv\([\"']ALMANAC_HOME", p.read_text("utf-8"))]
    assert "almanac/paths.py" not in readers  # it reads it through its ENV_HOME constant
    assert readers == []
    paths = (ROOT / "almanac" / "paths.py").read_text("utf-8")
    assert 'ENV_HOME = "ALMANAC_HOME"' in paths and "os.environ.get(ENV_HOME)" in paths
    others = [str(p.relative_to(ROOT)) for p in _sources()
              if "ENV_HOME" in p.read_text("utf-8") and p != ROOT / "almanac" / "paths.py"]
    assert others == []
