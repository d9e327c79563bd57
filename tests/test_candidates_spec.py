"""A job's candidates, before any engine: `[[candidates]]` in the job file, what they
resolve to in the catalog (labels, adapters, `adapters_of`), the engines they share,
which candidate an OpenAI batch line names, and bad input (exit 2 naming the field)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from batch.cache.store import PredictionStore
from batch.run.candidates import Candidate, engine_groups, resolve_candidates, route
from batch.run.runner import Runner
from batch.run.spec.job import SpecError, load_spec, spec_from_dict
from catalog.db import Catalog
from catalog.localmodels import entry_from_directory
from catalog.models import upsert_model
from tests.builders import make_lora_adapter
from tests.engine_support import ENGINE_OPTIONS, TINY_MODEL, almanac

ROWS = [{"id": f"r{i}", "word": w} for i, w in enumerate(["plum", "pear", "fig"])]


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Adapters for the tiny model (two), one too large for vLLM, and one built on
    another base directory."""
    root = tmp_path_factory.mktemp("spec-adapters")
    other_base = root / "other-base"
    other_base.mkdir()
    (other_base / "config.json").write_text(json.dumps(json.loads(
        (tiny_model / "config.json").read_text())))
    return {
        "a": make_lora_adapter(tiny_model, root / "a", rank=4, seed=1),
        "b": make_lora_adapter(tiny_model, root / "b", rank=8, seed=2),
        "huge": make_lora_adapter(tiny_model, root / "huge", rank=1024, seed=3),
        "elsewhere": make_lora_adapter(other_base, root / "elsewhere", rank=4, seed=4),
    }


@pytest.fixture
def catalog(home: Path, tiny_model: Path, adapters: dict[str, Path]) -> Iterator[Catalog]:
    """The tiny model and two adapters of it in the catalog, as `models add` would
    register them (their base named by its catalog reference)."""
    cat = Catalog.at(home / "catalog.db")
    with cat.sessions.begin() as s:
        upsert_model(s, entry_from_directory(tiny_model, name=TINY_MODEL))
        for name in ("a", "b"):
            entry = entry_from_directory(adapters[name], name=f"acme/lora-{name}")
            entry.base_model = TINY_MODEL
            upsert_model(s, entry)
    yield cat
    cat.close()


def job(tmp_path: Path, **fields: Any) -> Path:
    """A job file over three rows, with these top-level fields (candidates, model…)."""
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    data = {"name": "pick", **fields, "input": {"path": "rows.jsonl"},
            "prompt": {"template": "Say: {{ word }}"}, "sampling": {"max_tokens": 4},
            "engine": dict(ENGINE_OPTIONS)}
    path = tmp_path / "pick.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def resolved(catalog: Catalog, home: Path, path: Path) -> list[Candidate]:
    spec = load_spec(path)
    store = PredictionStore(home / "predictions")
    try:
        with catalog.sessions() as s:
            return resolve_candidates(s, spec.candidates, spec.path, store)
    finally:
        store.close()


# -- the job file --------------------------------------------------------------------------------


def test_candidates_take_a_model_adapter_label_and_engine_options_over_the_jobs(
        tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, candidates=[
        {"model": "m"},
        {"model": "m", "adapter": "lora", "label": "tuned", "engine": {"max_num_seqs": 8}},
        {"adapters_of": "m"},
    ], cost={"usd_per_hour": 0.4}))
    first, tuned, every = spec.candidates
    assert (first.model, first.adapter, first.label, first.where) == ("m", None, None, "candidates[0]")
    assert (tuned.adapter, tuned.label) == ("lora", "tuned")
    assert tuned.engine.max_num_seqs == 8 and tuned.engine.max_model_len == 256
    assert first.engine.max_num_seqs == 64 and every.adapters_of == "m"
    assert spec.model == "m" and spec.usd_per_hour == 0.4


def test_a_job_with_one_model_has_one_candidate(tmp_path: Path) -> None:
    (tmp_path / "lora").mkdir()
    spec = load_spec(job(tmp_path, model="m", adapter="lora", revision="v1"))
    (only,) = spec.candidates
    assert (only.where, only.model, only.revision) == ("model", "m", "v1")
    assert only.adapter == str((tmp_path / "lora").resolve()) == spec.adapter


@pytest.mark.parametrize(("fields", "says"), [
    ({"model": "m", "candidates": [{"model": "n"}]}, "(top level): give either `model`"),
    ({}, "(top level): give either `model`"),
    ({"candidates": []}, "candidates: [] should be non-empty"),
    ({"candidates": [{"adapters_of": "m", "label": "x"}]}, "candidates[0]: give `model`"),
    ({"candidates": [{"adapter": "lora"}]}, "candidates[0]: give `model`"),
    ({"candidates": [{"model": "m", "engine": {"enable_lora": True}}]},
     "candidates[0].engine.enable_lora: not allowed"),
    ({"candidates": [{"model": "m", "colour": "red"}]}, "candidates[0]: Additional properties"),
    ({"model": "m", "cost": {"usd_per_hour": 0}}, "cost.usd_per_hour: 0 is less than or equal"),
])
def test_a_bad_candidates_table_is_refused_naming_the_field(tmp_path: Path, fields: dict,
                                                           says: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(job(tmp_path, **fields))
    assert says in str(caught.value) and caught.value.exit_code == 2


# -- resolving in the catalog --------------------------------------------------------------------


def test_labels_are_the_model_or_model_plus_adapter_unless_given(
        catalog: Catalog, home: Path, tmp_path: Path, adapters: dict[str, Path]) -> None:
    found = resolved(catalog, home, job(tmp_path, candidates=[
        {"model": TINY_MODEL},
        {"model": TINY_MODEL, "adapter": "acme/lora-a"},
        {"model": TINY_MODEL, "adapter": str(adapters["b"]), "label": "bee"},
    ]))
    assert [c.label for c in found] == [TINY_MODEL, f"{TINY_MODEL}+acme/lora-a", "bee"]
    assert [c.adapter_ref for c in found] == [None, "acme/lora-a", str(adapters["b"])]
    assert [c.ordinal for c in found] == [0, 1, 2]
    assert found[1].adapter.identity.startswith("lora:sha256:") and found[1].adapter.rank == 4
    info = found[1].info()
    assert (info.label, info.model, info.adapter) == (f"{TINY_MODEL}+acme/lora-a", TINY_MODEL,
                                                      "acme/lora-a")
    # A job with one model and an adapter: one candidate, labelled with the model.
    single = resolved(catalog, home, job(tmp_path, model=TINY_MODEL, adapter="acme/lora-a"))
    assert [c.label for c in single] == [TINY_MODEL]


def test_adapters_of_a_base_are_every_adapter_the_catalog_has_of_it(
        catalog: Catalog, home: Path, tmp_path: Path) -> None:
    found = resolved(catalog, home, job(tmp_path, candidates=[
        {"model": TINY_MODEL}, {"adapters_of": TINY_MODEL}]))
    assert [c.label for c in found] == [TINY_MODEL, f"{TINY_MODEL}+acme/lora-a",
                                        f"{TINY_MODEL}+acme/lora-b"]
    assert [c.where for c in found] == ["candidates[0]", "candidates[1]", "candidates[1]"]


@pytest.mark.parametrize(("entry", "says"), [
    ({"model": "nope"}, "candidates[1].model: no model 'nope' in the catalog"),
    ({"model": TINY_MODEL, "adapter": "acme/nope-lora"}, "candidates[1].adapter: adapter 'acme/nope-lora'"),
    ({"model": TINY_MODEL, "adapter": "{elsewhere}"}, "candidates[1].adapter: adapter '{elsewhere}' is built on"),
    ({"model": TINY_MODEL, "adapter": "{huge}"},
     "candidates[1].adapter: adapter '{huge}' has rank 1024; vLLM serves LoRA ranks from 1 to 512"),
    ({"model": TINY_MODEL, "label": TINY_MODEL}, f"candidates[1]: its label '{TINY_MODEL}' is already candidates[0]'s"),
    ({"adapters_of": "nope"}, "candidates[1].adapters_of: no model 'nope' in the catalog"),
    ({"adapters_of": "acme/lora-a"}, "candidates[1].adapters_of: the catalog has no adapter of 'acme/lora-a'"),
])
def test_a_candidate_that_cannot_run_is_refused_before_anything_runs(
        catalog: Catalog, home: Path, tmp_path: Path, adapters: dict[str, Path], entry: dict,
        says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an unknown adapter must not reach for the Hub
    entry = {k: v.format(**{n: str(p) for n, p in adapters.items()}) for k, v in entry.items()}
    says = says.format(**{n: str(p) for n, p in adapters.items()})
    runner = Runner(catalog, home / "predictions", home / "locks")
    try:
        with pytest.raises(SpecError) as caught:
            runner.run(load_spec(job(tmp_path, candidates=[{"model": TINY_MODEL}, entry])))
    finally:
        runner.close()
    assert says in str(caught.value) and caught.value.exit_code == 2
    assert not (home / "predictions" / "pick").exists()  # nothing ran, nothing was written


def test_the_command_line_exits_2_naming_the_candidate(catalog: Catalog, home: Path,
                                                       tmp_path: Path) -> None:
    out = almanac(home, "run", str(job(tmp_path, candidates=[
        {"model": TINY_MODEL}, {"model": "nope"}])))
    assert out.returncode == 2, out.stderr
    assert "candidates[1].model: no model 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_a_dry_run_plans_every_candidate(catalog: Catalog, home: Path, tmp_path: Path) -> None:
    runner = Runner(catalog, home / "predictions", home / "locks")
    try:
        result = runner.run(load_spec(job(tmp_path, candidates=[
            {"model": TINY_MODEL}, {"adapters_of": TINY_MODEL}])), dry_run=True)
    finally:
        runner.close()
    assert result.plan["candidates"] == 3 and result.plan["missing"] == 9
    assert [(c.label, c.inputs) for c in result.candidates] == [
        (TINY_MODEL, 3), (f"{TINY_MODEL}+acme/lora-a", 3), (f"{TINY_MODEL}+acme/lora-b", 3)]


# -- engines and routing -------------------------------------------------------------------------


def test_candidates_on_one_base_share_an_engine_with_room_for_their_adapters(
        catalog: Catalog, home: Path, tmp_path: Path) -> None:
    found = resolved(catalog, home, job(tmp_path, candidates=[
        {"model": TINY_MODEL}, {"adapters_of": TINY_MODEL},
        {"model": TINY_MODEL, "label": "few-seqs", "engine": {"max_num_seqs": 8}}]))
    shared, alone = engine_groups(found)
    assert [c.label for c in shared.members] == [TINY_MODEL, f"{TINY_MODEL}+acme/lora-a",
                                                 f"{TINY_MODEL}+acme/lora-b"]
    assert (shared.target.lora_rank, shared.target.max_loras) == (8, 2)
    assert [c.label for c in alone.members] == ["few-seqs"]
    assert alone.target.lora_rank is None and alone.target.options.max_num_seqs == 8
    assert (shared.index, alone.index) == (0, 1)


def test_an_openai_batch_line_names_its_candidate_by_label_adapter_or_model(
        catalog: Catalog, home: Path, tmp_path: Path) -> None:
    found = resolved(catalog, home, job(tmp_path, candidates=[
        {"model": TINY_MODEL}, {"adapters_of": TINY_MODEL}]))
    base, a, b = found
    assert route(None, found) == found
    assert route(f"{TINY_MODEL}+acme/lora-b", found) == [b]
    assert route("acme/lora-a", found) == [a]
    assert route(TINY_MODEL, found) == [base]  # the model alone, not its adapters
    assert route("gpt-4o", found) is None


def test_spec_from_dict_keeps_cache_keys_of_single_model_jobs(tmp_path: Path) -> None:
    """A job with one `model` still plans the keys it always did (tests/test_job_spec.py
    pins request_key itself; here the spec hands the same model to it)."""
    spec = spec_from_dict({"name": "j", "model": "m", "input": {"path": "x.jsonl"},
                           "prompt": {"template": "t"}}, tmp_path / "j.toml")
    assert [(c.model, c.adapter, c.label) for c in spec.candidates] == [("m", None, None)]
