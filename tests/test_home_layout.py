"""A home whose parts are not what they should be: a home that cannot be made, `locks/`
read-only or a file, a file where a job's shards belong, a catalog in a read-only
directory. Every command answers with one line naming what is wrong and the right exit
code, and writes nothing half-way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from almanac.cli import cli
from tests.cache_support import index_table, record, write
from tests.test_job_spec import make_local_model


def _almanac(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args])


def _as_user(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`almanac` bound by file permissions: root runs it without the capabilities that
    let it write any file (as tests/test_catalog_hardening.py)."""
    command = [sys.executable, "-m", "almanac", "--home", str(home), *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot bind")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _one_line(code: int, exit_code: int, output: str, *words: str) -> None:
    assert exit_code == code, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), output


def _fails(result: Result, code: int, *words: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    _one_line(code, result.exit_code, result.output, *words)


@pytest.fixture
def fruits(tmp_path: Path) -> tuple[Path, Path]:
    """A home with job `fruits` cached (five rows), its catalog model, and its job file."""
    home = tmp_path / "home"
    model = make_local_model(tmp_path / "tiny-model")
    assert _almanac(home, "models", "add", "--path", str(model), "--name", "tiny").exit_code == 0
    (tmp_path / "fruits.jsonl").write_text("".join(
        json.dumps({"id": f"in-{i}", "fruit": f"f{i}", "family": "drupe"}) + "\n" for i in range(5)))
    job = tmp_path / "job.toml"
    job.write_text('name = "fruits"\nmodel = "tiny"\n[input]\npath = "fruits.jsonl"\n'
                   '[prompt]\ntemplate = "{{ fruit }}:"\n'
                   '[score]\nmetric = "exact"\nreference = "{{ family }}"\n')
    write(home / "predictions", [record(f"in-{i}", model="tiny") for i in range(5)])
    return home, job


def test_a_home_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    for command in (["runs"], ["models", "list"]):
        # /proc/self is a directory in which nothing can be made.
        _fails(_almanac(Path("/proc/self"), *command), 1, "cannot create its predictions/ directory")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    proc = _as_user(locked / "new", "init")
    _one_line(1, proc.returncode, proc.stderr, f"home {locked / 'new'}: cannot create its directory",
              "Permission denied")
    assert not (locked / "new").exists()


def test_a_locks_directory_that_is_read_only_or_a_file_is_one_line(fruits: tuple[Path, Path]) -> None:
    home, _ = fruits
    before = index_table(home / "predictions", "shards")
    locks = home / "locks"
    locks.chmod(0o555)
    for command in (["cache", "repair"], ["cache", "gc"]):
        proc = _as_user(home, *command)
        _one_line(1, proc.returncode, proc.stderr, "job 'fruits': cannot take its lock",
                  "Permission denied", "nothing was written")
    locks.rmdir()
    locks.write_text("not a directory")
    for command in (["cache", "repair"], ["cache", "gc"]):
        _fails(_almanac(home, *command), 1, "cannot take its lock", "locks/ is not a directory")
    _fails(_almanac(home, "runs"), 1, "cannot create its locks/ directory (a file is in its place)")
    assert index_table(home / "predictions", "shards") == before


def test_a_file_where_a_jobs_shards_belong_is_one_line(fruits: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    home, job = fruits
    directory = home / "predictions" / "fruits"
    shutil.rmtree(directory)
    directory.write_text("not a directory")
    before = index_table(home / "predictions", "shards")
    for command in (["cache", "repair"], ["cache", "repair", "--dry-run"], ["cache", "gc"],
                    ["run", "--dry-run", str(job)], ["run", str(job)],
                    ["export", "fruits", "--format", "jsonl", "-o", str(tmp_path / "out.jsonl")],
                    ["curate", "fruits", "-o", str(tmp_path / "sft")]):
        _fails(_almanac(home, *command), 1, "is not a directory", "move it aside")
    for command in (["query", "fruits"], ["score", str(job)]):
        _fails(_almanac(home, *command), 1, "job 'fruits'")
    for command in (["models", "list"], ["runs"], ["compare", "fruits"]):
        assert _almanac(home, *command).exit_code == 0, command
    verify = _almanac(home, "cache", "verify")
    assert verify.exit_code == 1 and "not-a-directory" in verify.output, verify.output
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "sft").exists()
    assert index_table(home / "predictions", "shards") == before
    # Moved aside, as the message says: repair drops the shards, the next run plans them.
    directory.rename(tmp_path / "kept")
    assert _almanac(home, "cache", "repair").exit_code == 0
    assert _almanac(home, "cache", "verify").exit_code == 0
    planned = _almanac(home, "run", "--dry-run", "--json", str(job))
    assert planned.exit_code == 0 and json.loads(planned.stdout)["plan"]["missing"] == 5


def test_a_catalog_in_a_read_only_directory_names_the_real_cause(fruits: tuple[Path, Path]) -> None:
    home, _ = fruits
    for extra in ("catalog.db-wal", "catalog.db-shm"):
        (home / extra).unlink(missing_ok=True)
    (home / "catalog.db").chmod(0o444)
    home.chmod(0o555)
    try:
        for command in (["models", "list"], ["runs"]):  # they only read
            proc = _as_user(home, *command)
            _one_line(1, proc.returncode, proc.stderr, f"its directory {home} is read-only",
                      "catalog.db-shm")
            assert "this command writes" not in proc.stderr
    finally:
        home.chmod(0o755)
        (home / "catalog.db").chmod(0o644)
