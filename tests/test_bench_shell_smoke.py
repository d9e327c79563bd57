"""`python -m bench.shell --smoke` times whole commands end to end and checks what they
answered (no timing assertions: the figures depend on the machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_shell_benchmark_smoke_run_checks_its_answers(tmp_path: Path) -> None:
    out = tmp_path / "shell.json"
    proc = subprocess.run([sys.executable, "-m", "bench.shell", "--smoke", "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures == json.loads(out.read_text())
    assert set(figures["commands"]) == {"query --input-id", "models list", "almanac --version",
                                        "python -c pass", "click + pyarrow.parquet"}
    assert all(c["n"] == 2 and c["min_ms"] <= c["median_ms"] <= c["max_ms"]
               for c in figures["commands"].values())
    # The import breakdown names what each timed command loaded: pyarrow for the lookup;
    # SQLAlchemy, Alembic and pandas for neither (the listing reads with sqlite3 alone).
    assert "pyarrow" in figures["imports"]["query --input-id"]
    assert "models list" in figures["imports"]
    assert not {"alembic", "pandas", "sqlalchemy"} & {m for i in figures["imports"].values() for m in i}
    assert figures["load_average"]["start"] and "models list" in proc.stderr
