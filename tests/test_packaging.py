"""Schemas, seed list, migrations and styles are found from an installed wheel,
not only from a checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_data_files_are_found_from_an_installed_wheel(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("almanac-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, cwd=tmp_path)
    # -S: no site-packages, so neither the checkout nor an editable install can answer.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import schemas, catalog.seed, catalog.migrations, tui\n"
        "from importlib import resources\n"
        "assert schemas.__file__.startswith(sys.argv[1]), schemas.__file__\n"
        "for name in ('job', 'prediction', 'model-entry'):\n"
        "    assert schemas.load(name)['$schema'].endswith('2020-12/schema')\n"
        "assert '[[model]]' in resources.files('catalog.seed').joinpath('models.toml').read_text()\n"
        "assert resources.files('catalog.migrations').joinpath('env.py').is_file()\n"
        "assert any(p.name.endswith('.tcss') for p in resources.files('tui').iterdir())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code, str(target)], capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
