"""`almanac demo`, the README's main command, as a user runs it: twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine_support import almanac

pytestmark = pytest.mark.engine


def test_demo_trains_a_specialist_that_is_right_and_reruns_from_cache(home: Path):
    first = almanac(home, "demo", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    out = json.loads(first.stdout)  # stdout carries only the JSON, even with vLLM running
    assert out["run"]["generated"] == out["accuracy"]["total"] == 58
    assert out["run"]["engine_started"] is True
    # Trained here in well under a minute, the specialist names the fruit types.
    assert out["accuracy"]["correct"] >= 55
    assert all(p["output"] for p in out["predictions"])

    second = almanac(home, "demo", "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)
    assert (again["run"]["cached"], again["run"]["generated"]) == (58, 0)
    assert again["run"]["engine_started"] is False
    assert again["accuracy"] == out["accuracy"]

    listed = json.loads(almanac(home, "models", "show", "almanac/fruit-specialist", "--json").stdout)
    assert listed["source"] == "local" and listed["performance"]["tokens_per_s"] > 0
