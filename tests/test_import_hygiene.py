"""Heavy dependencies stay in their rooms: `vllm` in the engine, `textual` in the TUI.

The CLI checks run in a fresh interpreter: this test process has already
imported whatever other tests needed, so its own `sys.modules` proves nothing.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("almanac", "catalog", "batch", "tui", "schemas")
HEAVY = {"vllm", "textual", "torch"}

# Runs the click CLI in-process (standalone_mode=False) and reports what got imported.
PROBE = """
import json, sys
from almanac.cli import cli

out_path, runs = sys.argv[1], json.loads(sys.argv[2])
codes = []
for args in runs:
    try:
        cli.main(args, prog_name="almanac", standalone_mode=False)
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code)
with open(out_path, "w") as fh:
    json.dump({"codes": codes, "modules": sorted(sys.modules),
               "almanac": sys.modules["almanac"].__file__}, fh)
"""


def _probe(tmp_path: Path, *runs: list[str], full: bool = False) -> tuple[list[int], set[str]]:
    """Exit codes of the runs, and the packages they imported (every module, `full`)."""
    out = tmp_path / "probe.json"
    # This tree's code, whichever checkout the installed package points at.
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), json.dumps(list(runs))],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert Path(data["almanac"]).is_relative_to(ROOT)
    modules = set(data["modules"])
    return data["codes"], modules if full else {m.split(".")[0] for m in modules}


def test_help_imports_no_engine_tui_or_torch(tmp_path: Path) -> None:
    codes, modules = _probe(tmp_path, ["--help"], ["models", "--help"], ["models", "list", "--help"])
    assert codes == [0, 0, 0]
    assert "almanac" in modules and "click" in modules  # the probe really ran the CLI
    assert modules & HEAVY == set()


def test_help_does_not_import_the_database_layer(tmp_path: Path) -> None:
    """almanac/cli/base.py and models_import.py defer SQLAlchemy so --help stays quick."""
    codes, modules = _probe(tmp_path, ["--help"])
    assert codes == [0]
    assert modules & {"sqlalchemy", "alembic", "pyarrow", "huggingface_hub"} == set()


def test_catalog_commands_import_no_engine_tui_or_torch(tmp_path: Path, home: Path) -> None:
    codes, modules = _probe(
        tmp_path,
        ["init"],
        ["models", "list", "--language", "pl", "--json"],
        ["models", "show", "eryk-mazus/polka-1.1b"],
        ["domains"],
    )
    assert codes == [0, 0, 0, 0]
    assert (home / "catalog.db").exists()  # the probe used this test's home
    assert "sqlalchemy" in modules  # the commands really touched the catalog
    assert modules & HEAVY == set()


def test_a_command_imports_its_own_module_and_no_other_commands(tmp_path: Path, home: Path) -> None:
    from almanac.cli import COMMANDS
    from tests.cache_support import record, write

    command_modules = {where.partition(":")[0] for where in COMMANDS.values()}
    codes, modules = _probe(tmp_path, ["--version"], full=True)
    assert codes == [0] and "almanac.cli" in modules
    assert modules & command_modules == set()
    assert modules & {"catalog", "batch.cache", "platformdirs"} == set()  # ALMANAC_HOME is set
    write(home / "predictions", [record("in-1")])
    codes, modules = _probe(tmp_path, ["query", "fruits", "--input-id", "in-1"], full=True)
    assert codes == [0] and "pyarrow.parquet" in modules  # it read the shard
    assert modules & command_modules == {"almanac.cli.query_cmds"}
    codes, modules = _probe(tmp_path, ["models", "list"], full=True)
    assert codes == [0] and modules & command_modules == {"almanac.cli.models"}
    assert modules & {"almanac.cli.models_hub", "almanac.cli.models_import"} == set()


TRAINING = {"torch", "transformers", "trl", "peft", "accelerate", "datasets"}


def test_train_and_distill_help_import_no_training_library(tmp_path: Path) -> None:
    codes, modules = _probe(tmp_path, ["train", "--help"], ["distill", "--help"])
    assert codes == [0, 0]
    assert "almanac" in modules and "click" in modules  # the probe really ran the CLI
    assert modules & (HEAVY | TRAINING) == set()


# What a command reading one thing must not load: Alembic (a catalog at the newest
# schema is recognised by one read), pandas (pyarrow loads it to turn Python objects into
# arrays or timestamps into datetimes, which the read path does without), and Arrow's
# compute kernels (searches only). Nor SQLAlchemy: a lookup and a listing read the catalog
# with sqlite3 alone.
NOT_FOR_READS = {"alembic", "pandas", "pyarrow.compute"}


def test_a_lookup_and_a_listing_load_only_what_they_read(tmp_path: Path, home: Path) -> None:
    from tests.cache_support import record, write

    assert _probe(tmp_path, ["init"])[0] == [0]  # creates the catalog: migrating loads Alembic
    write(home / "predictions", [record(f"in-{i}", output=f"drupe {i}") for i in range(20)])
    codes, modules = _probe(tmp_path, ["query", "fruits", "--input-id", "in-7", "--json"],
                            ["query", "fruits", "--input-id", "in-8", "--candidate", "tiny"],
                            full=True)
    assert codes == [0, 0]
    assert {"pyarrow.parquet", "sqlite3"} <= modules  # it read a shard through the index
    # The catalog, asked whether the model moved on since, is read with sqlite3 alone.
    assert modules & (NOT_FOR_READS | HEAVY | {"sqlalchemy"}) == set()
    # A listing of a catalog at the newest schema reads it with sqlite3 alone.
    codes, modules = _probe(tmp_path, ["models", "list", "--json"],
                            ["models", "list", "--search", "polish", "--adapters-of", "eryk-mazus/polka-1.1b"],
                            ["domains"], ["languages", "--json"], full=True)
    assert codes == [0, 0, 0, 0] and {"catalog.search", "sqlite3"} <= modules  # it read the catalog
    assert modules & (NOT_FOR_READS | HEAVY | {"sqlalchemy", "pyarrow", "numpy"}) == set()


def test_a_listing_with_no_catalog_yet_creates_it_through_the_migrations(
        tmp_path: Path, home: Path) -> None:
    codes, modules = _probe(tmp_path, ["models", "list", "--json"])
    assert codes == [0] and "alembic" in modules
    with sqlite3.connect(home / "catalog.db") as conn:
        assert conn.execute("SELECT count(*) FROM models").fetchone() == (0,)


def test_an_old_catalog_is_still_migrated_when_a_command_opens_it(tmp_path: Path, home: Path) -> None:
    from catalog.db import Catalog, newest_revision

    catalog = Catalog.at(home / "catalog.db")
    with catalog.engine.begin() as conn:  # as a previous version left it: one revision back
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0004'")
        conn.exec_driver_sql("DROP TABLE trainings")
    catalog.close()
    codes, modules = _probe(tmp_path, ["models", "list", "--json"])
    assert codes == [0] and "alembic" in modules
    with sqlite3.connect(home / "catalog.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (newest_revision(),)


def _console_script() -> Path:
    beside = Path(sys.executable).parent / "almanac"
    if beside.exists():
        return beside
    found = shutil.which("almanac")
    if found is None:
        pytest.fail("the `almanac` console script is not installed next to this Python or on PATH")
    return Path(found)


def test_console_script_help_exits_0(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(_console_script()), "--help"],
        cwd=tmp_path, capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: almanac" in proc.stdout
    for command in ("init", "models", "domains", "languages"):
        assert command in proc.stdout
    assert proc.stderr == ""


# --- static scan ----------------------------------------------------------------------------


def _imported_roots(tree: ast.AST) -> set[str]:
    """Top-level package names a module imports anywhere (also inside functions)."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def _sources() -> list[Path]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def _allowed(module: str, rel: Path) -> bool:
    if module == "textual":
        return rel.parts[0] == "tui"
    if module == "vllm":
        return rel.as_posix() == "batch/run/executors/engine.py"
    return True


def test_scanner_sees_every_kind_of_import() -> None:
    tree = ast.parse(
        "import vllm.sampling_params\n"
        "def f():\n    from textual.app import App\n"
        "importlib.import_module('torch')\n"
        "from . import sibling\n"
    )
    assert _imported_roots(tree) == {"vllm", "textual", "torch"}


def test_only_the_engine_imports_vllm_and_only_the_tui_imports_textual() -> None:
    sources = _sources()
    assert any(p.relative_to(ROOT).as_posix() == "catalog/db.py" for p in sources)
    offenders = []
    for path in sources:
        rel = path.relative_to(ROOT)
        roots = _imported_roots(ast.parse(path.read_text("utf-8"), filename=str(path)))
        offenders += [f"{rel}: imports {m}" for m in sorted(roots & {"vllm", "textual"}) if not _allowed(m, rel)]
    assert offenders == []


def test_catalog_room_imports_nothing_above_it() -> None:
    """Dependencies point one way: almanac -> tui -> batch -> catalog."""
    offenders = []
    for path in sorted((ROOT / "catalog").rglob("*.py")):
        roots = _imported_roots(ast.parse(path.read_text("utf-8")))
        offenders += [f"{path.relative_to(ROOT)}: imports {m}" for m in sorted(roots & {"almanac", "tui", "batch"})]
    assert offenders == []


def test_only_the_trainer_imports_trl_peft_accelerate_and_datasets() -> None:
    trainer = "batch/train/trainer.py"
    offenders, seen = [], set()
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        roots = _imported_roots(ast.parse(path.read_text("utf-8"), filename=str(path)))
        found = roots & {"trl", "peft", "accelerate", "datasets"}
        if rel == trainer:
            seen = found
        else:
            offenders += [f"{rel}: imports {m}" for m in sorted(found)]
    assert seen == {"trl", "peft", "datasets"}  # the scan read the trainer
    assert offenders == []
