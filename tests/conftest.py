"""Shared fixtures: every test gets its own Almanac home with a real SQLite catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.builders import build_tiny_model, make_lora_adapter

if TYPE_CHECKING:  # the engine and the catalog load only in the tests that use them
    from batch.run.engine import EnginePool
    from batch.run.runner import Runner
    from catalog.db import Catalog


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
    """One real vLLM engine for the whole session, started with LoRA enabled so
    that jobs with and without an adapter share it."""
    from batch.run.engine import EnginePool, EngineTarget
    from tests.engine_support import ENGINE_OPTIONS, LORA_RANK

    pool = EnginePool()
    pool.get(EngineTarget.make(str(tiny_model), None, ENGINE_OPTIONS, LORA_RANK))
    yield pool
    pool.close()


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
