"""`python -m bench.shell --smoke` times whole commands end to end and checks what they
answered (no timing assertions: the figures depend on the machine)."""

from __future__ import annotations

from pathlib import Path

from tests.bench_support import bench_process


def test_shell_benchmark_smoke_run_checks_its_answers(tmp_path: Path) -> None:
    out = tmp_path / "shell.json"
    figures, table = bench_process("bench.shell", ["--smoke"], out)
    assert set(figures["commands"]) == {"query --input-id", "models list", "almanac --version",
                                        "python -c pass", "click + pyarrow.parquet"}
    assert all(c["n"] == 2 and c["min_ms"] <= c["median_ms"] <= c["max_ms"]
               for c in figures["commands"].values())
    # The import breakdown names what each timed command loaded: pyarrow for the lookup;
    # SQLAlchemy, Alembic and pandas for neither (the listing reads with sqlite3 alone).
    assert "pyarrow" in figures["imports"]["query --input-id"]
    assert "models list" in figures["imports"]
    assert not {"alembic", "pandas", "sqlalchemy"} & {m for i in figures["imports"].values() for m in i}
    assert figures["load_average"]["start"] and "models list" in table
