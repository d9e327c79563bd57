"""Shared fixtures: every test gets its own Almanac home with a real SQLite catalog."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.builders import build_tiny_model, make_lora_adapter
from tests.docs_support import DemoHome
from tests.ray_support import client_environment

# Ray reads its client settings once, when first imported, and vLLM imports it: the
# session's Ray environment (loopback, the test cluster's token) is set before that.
_RAY_WORK = Path(tempfile.mkdtemp(prefix="almanac-ray-client-"))
atexit.register(shutil.rmtree, _RAY_WORK, ignore_errors=True)
RAY_CLIENT = client_environment(_RAY_WORK)
os.environ.update(RAY_CLIENT)

# plotext lays a chart's tick labels out in the order of a set of (tick, label) pairs, so
# a chart's pixels vary with string hashing: the processes the suite starts (xdist's
# workers, subprocesses) hash with one seed, and the chart snapshots are taken with it.
os.environ.setdefault("PYTHONHASHSEED", "0")

# `-n auto` (pyproject's addopts): the whole suite, or a folder of it, runs on this many
# workers. Each worker that meets an engine test starts the session's engine once, and
# a vLLM engine keeps to one thread: two workers keep two cores busy.
SUITE_WORKERS = 2

if TYPE_CHECKING:  # the engine and the catalog load only in the tests that use them
    from batch.run.executors.engine import EnginePool
    from batch.run.runner import Runner
    from catalog.db import Catalog
    from tests.ray_support import HeadNode


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for `-n auto`: SUITE_WORKERS for the suite or a folder of it; none (one
    process, at most one engine) for a run of named files or tests, which rarely gains
    from a second engine. PYTEST_XDIST_AUTO_NUM_WORKERS or `-n N` say otherwise."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    named = [a for a in config.args if "::" in a or a.endswith(".py")]
    if config.args and len(named) == len(config.args):
        return 0
    workers = min(SUITE_WORKERS, os.cpu_count() or 1)
    return workers if workers > 1 else 0


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The Ray tests share the session's one cluster: under xdist they run on one worker."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ALMANAC_HOME at a fresh directory for every test."""
    root = tmp_path / "home"
    monkeypatch.setenv("ALMANAC_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama built for this session (the Hub is out of reach)."""
    from tests.engine_support import sharpen

    path = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny").resolve()
    sharpen(path)
    return path


@pytest.fixture(scope="session")
def lora_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.engine_support import LORA_RANK

    return make_lora_adapter(tiny_model, tmp_path_factory.mktemp("adapters") / "lora",
                             rank=LORA_RANK, scale=4.0).resolve()


@pytest.fixture(scope="session")
def engine_pool(tiny_model: Path) -> Iterator[EnginePool]:
    """One real vLLM engine for the whole session, started with LoRA enabled (room
    for four adapters at once) so that jobs with and without adapters share it."""
    from batch.run.executors.engine import EnginePool
    from batch.run.executors.target import EngineTarget
    from tests.engine_support import ENGINE_OPTIONS, LORA_RANK, MAX_LORAS

    pool = EnginePool()
    pool.get(EngineTarget.make(str(tiny_model), None, ENGINE_OPTIONS, LORA_RANK, MAX_LORAS))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeadNode]:
    """One real Ray cluster (a head node on 127.0.0.1, token authentication on) for
    every Ray test of the session; this process and the commands it starts already
    have what a client of it needs (RAY_CLIENT, set before anything imported Ray)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (the `ray` extra)")
    from tests.ray_support import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("ray"), RAY_CLIENT)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def catalog(home: Path) -> Iterator[Catalog]:
    from catalog.db import Catalog

    cat = Catalog.at(home / "catalog.db")
    yield cat
    cat.close()


@pytest.fixture
def runner(home: Path, engine_pool: EnginePool, tiny_model: Path) -> Iterator[Runner]:
    """A Runner on this test's home, sharing the session's engine, with the tiny
    model registered in the catalog."""
    from tests.engine_support import runner_for

    r = runner_for(home, engine_pool, tiny_model)
    yield r
    r.close()
    r.catalog.close()


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> DemoHome:
    """The home `almanac demo` leaves, made once per session (the demo trains its models
    and runs its job with the engine: minutes). Its users take copies; mark them
    `xdist_group("demo")` so that one worker makes it once."""
    from tests.engine_support import almanac

    path = tmp_path_factory.mktemp("demo") / "home"
    done = almanac(path, "demo")
    assert done.returncode == 0, done.stderr[-3000:]
    return DemoHome(path, done.stdout)
