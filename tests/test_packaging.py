"""A wheel built from the project carries what the app reads at run time: schemas,
seed list, migrations, styles, and the demo's job and data. They are found from
the installed wheel, not only from a checkout. And every library the code imports
is declared in pyproject.toml."""

from __future__ import annotations

import ast
import fnmatch
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs from the installed wheel alone: the target first, then the interpreter's
# site-packages for third-party libraries, whose .pth files -S leaves unread (one of
# them would put the checkout on the path through the editable install).
PROBE = """
import sys
target, site_dirs = sys.argv[1], sys.argv[2:]
sys.path[:0] = [target]
sys.path += site_dirs
import schemas, catalog.seed, catalog.migrations, tui, almanac.demo
from importlib import resources
for module in (schemas, catalog.seed, tui, almanac.demo):
    assert module.__file__.startswith(target), module.__file__
for name in ('job', 'prediction', 'model-entry'):
    assert schemas.load(name)['$schema'].endswith('2020-12/schema')
assert '[[model]]' in resources.files('catalog.seed').joinpath('models.toml').read_text()
assert resources.files('catalog.migrations').joinpath('env.py').is_file()
assert any(p.name.endswith('.tcss') for p in resources.files('tui').iterdir())
from batch.run.spec.recipes import shipped
assert str(resources.files('batch.run.spec').joinpath('recipes', 'local.toml')).startswith(target)
assert {'local', 'global'} <= set(shipped()), shipped()

from almanac.demo import DEMO_JOB
from almanac.demo.training import DemoPrompts
from batch.run.inputs import read_rows
from batch.run.spec.job import load_spec
assert str(DEMO_JOB).startswith(target), DEMO_JOB
spec = load_spec(DEMO_JOB)
assert str(spec.input.path).startswith(target), spec.input.path
rows = list(read_rows(spec.input))
print(spec.name, spec.model, len(rows), DemoPrompts().render('cherry').splitlines()[-1])
"""


def _source_copy(dest: Path) -> Path:
    """What a wheel is built from, copied without the checkout's build/ and egg-info,
    whose leftovers setuptools would otherwise put into the wheel."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    packages = [p for p in ROOT.iterdir() if (p / "__init__.py").is_file()
                and any(fnmatch.fnmatch(p.name, pattern) for pattern in include)]
    for package in packages:
        shutil.copytree(package, dest / package.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def test_data_files_are_found_from_an_installed_wheel(tmp_path: Path) -> None:
    source, wheels, target = _source_copy(tmp_path / "src"), tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("almanac-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"almanac/demo/fruits/job.toml", "almanac/demo/fruits/fruits.jsonl"} <= names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, cwd=tmp_path)
    site_dirs = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    out = subprocess.run([sys.executable, "-S", "-c", PROBE, str(target), *site_dirs],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fruit-families almanac/fruit-specialist 58 cherry:"


# --- declared dependencies ------------------------------------------------------------------

SHIPPED = ("almanac", "catalog", "batch", "tui", "schemas")
TOOLING = ("tests", "bench")
OPTIONAL = {"ImportError", "ModuleNotFoundError"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(requirements: list[str]) -> set[str]:
    return {_normalized(re.match(r"[A-Za-z0-9._-]+", r.strip()).group()) for r in requirements}


def _required_roots(tree: ast.AST) -> set[str]:
    """Top-level names of the absolute imports a module cannot do without: an import
    under `try: ... except ImportError` has a fallback and is left out."""
    optional: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in OPTIONAL for h in node.handlers
        ):
            for part in (*node.body, *node.handlers):
                optional.update(id(n) for n in ast.walk(part))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _third_party(folders: tuple[str, ...]) -> dict[str, list[str]]:
    """Each third-party import root, with the files that import it."""
    own = {*SHIPPED, *TOOLING}
    found: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for root in _required_roots(tree) - own - set(sys.stdlib_module_names):
                found.setdefault(root, []).append(path.relative_to(ROOT).as_posix())
    return found


def test_scanner_leaves_out_imports_with_a_fallback() -> None:
    tree = ast.parse(
        "import yaml.constructor\n"
        "try:\n    from httpx2 import TransportError\n"
        "except ImportError:\n    from httpx import TransportError\n"
        "def f():\n    from torch import nn\n"
        "from . import sibling\n"
    )
    assert _required_roots(tree) == {"yaml", "torch"}


def test_every_imported_library_is_declared() -> None:
    """The shipped packages need only the dependencies and the engine extras; tests
    and benchmarks may also use the dev extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    runtime = _declared(project["dependencies"]) | _declared(
        [r for name, reqs in extras.items() if name != "dev" for r in reqs])
    everything = runtime | _declared(extras["dev"])
    providers = packages_distributions()
    undeclared = []
    for folders, allowed in ((SHIPPED, runtime), (TOOLING, everything)):
        found = _third_party(folders)
        assert "sqlalchemy" in found or folders == TOOLING  # the scan really read the code
        for root, files in sorted(found.items()):
            dists = {_normalized(d) for d in providers.get(root, [])}
            if not dists & allowed:
                undeclared.append(f"{root} ({', '.join(sorted(dists)) or 'not installed'}): "
                                  f"imported by {', '.join(files[:3])}")
    assert undeclared == [], "\n".join(undeclared)
