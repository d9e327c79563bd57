"""Bringing models in: the Hugging Face cache, local directories and the Hub API.

Real SQLite under tmp_path, real safetensors files, real subprocesses; the
Hub itself is replaced by the strict stand-in on 127.0.0.1 (tests/hub_standin.py) or by
ModelInfo objects built from the API's JSON (the network boundary).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from huggingface_hub import HfApi
from huggingface_hub.hf_api import ModelInfo
from safetensors.numpy import save_file
from sqlalchemy import func, select

from almanac.cli import cli
from catalog.db import Catalog
from catalog.hub import entry_from_model_info
from catalog.hubapi import fetch_entry
from catalog.hubhttp import HubError
from catalog.localmodels import LocalModelError, entry_from_directory
from catalog.models import validate_entry
from catalog.tables import Model
from tests.hub_standin import HubStandIn, Served

REPO_ROOT = Path(__file__).resolve().parents[1]
MAIN_SHA = "a" * 40
OLD_SHA = "b" * 40
CARD = """---
language:
- pl
- en
license: apache-2.0
tags:
- medical
base_model: org/base
pipeline_tag: text-generation
---

# Name

A Polish and English clinical assistant, fine-tuned on [discharge notes](https://example.org).
"""
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "max_position_embeddings": 2048,
    "torch_dtype": "float32",
}
# 16*8 + 8*8 + 8 = 200 parameters, plus a scalar that still counts as one.
WEIGHTS = {
    "model.embed_tokens.weight": np.zeros((16, 8), dtype=np.float32),
    "model.layers.0.mlp.weight": np.zeros((8, 8), dtype=np.float32),
    "model.norm.weight": np.zeros((8,), dtype=np.float32),
    "model.scale": np.zeros((), dtype=np.float32),
}
PARAMETERS = 201


# --- fixtures -----------------------------------------------------------------


def write_snapshot(repo: Path, sha: str, files: dict[str, bytes | dict]) -> Path:
    """Files go to blobs/ and the snapshot links to them, as huggingface_hub lays them out."""
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, content in files.items():
        data = json.dumps(content).encode() if isinstance(content, dict) else content
        blob = repo / "blobs" / f"{sha[:8]}-{name}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def safetensors_bytes(tmp: Path, tensors: dict[str, np.ndarray]) -> bytes:
    path = tmp / "weights.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    data = path.read_bytes()
    path.unlink()
    return data


@dataclass
class HfCache:
    root: Path
    snapshot: Path


@pytest.fixture
def hf_cache(tmp_path: Path) -> HfCache:
    root = tmp_path / "hf" / "hub"
    repo = root / "models--org--name"
    snapshot = write_snapshot(repo, MAIN_SHA, {
        "config.json": CONFIG,
        "README.md": CARD.encode(),
        "model.safetensors": safetensors_bytes(tmp_path, WEIGHTS),
    })
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN_SHA)  # no newline: huggingface_hub writes none
    # A repo downloaded only in part (no config.json) and a dataset: neither is a model entry.
    write_snapshot(root / "models--org--broken", MAIN_SHA, {"tokenizer.json": b"{}"})
    write_snapshot(root / "datasets--org--data", MAIN_SHA, {"data.csv": b"a,b\n"})
    return HfCache(root=root, snapshot=snapshot)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "clinical-lora"
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({
        "base_model_name_or_path": "org/name",
        "peft_type": "LORA",
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "task_type": "CAUSAL_LM",
    }))
    save_file({
        "base_model.model.layers.0.q_proj.lora_A.weight": np.zeros((8, 64), dtype=np.float32),
        "base_model.model.layers.0.q_proj.lora_B.weight": np.zeros((64, 8), dtype=np.float32),
    }, str(path / "adapter_model.safetensors"))
    return path


def almanac(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def almanac_json(home: Path, *args: str) -> Any:  # whatever JSON the command prints
    result = almanac(home, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def almanac_subprocess(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH")]))
    base["HF_HOME"] = str(home.parent / "hf-home")  # no tokens or caches from the machine
    return subprocess.run(
        [sys.executable, "-m", "almanac", "--home", str(home), *args],
        env={**base, **env}, capture_output=True, text=True, timeout=120, cwd=home.parent,
    )


def model_count(home: Path) -> int:
    catalog = Catalog.at(home / "catalog.db")
    try:
        with catalog.sessions() as s:
            return s.scalar(select(func.count(Model.id)))
    finally:
        catalog.close()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the cache ------------------------------------------------------------------


def test_scan_cache_adds_cached_model_with_card_languages_domains_and_exact_parameters(
    hf_cache: HfCache, home: Path
) -> None:
    scanned = almanac_json(home, "models", "scan-cache", "--cache-dir", str(hf_cache.root))

    assert [m["ref"] for m in scanned["models"]] == ["org/name"]
    assert any("org/broken" in w and "config.json" in w for w in scanned["warnings"])
    shown = almanac_json(home, "models", "show", "org/name")
    assert shown["source"] == "cache"
    assert shown["repo_id"] == "org/name"
    assert shown["revision"] == MAIN_SHA
    assert shown["local_path"] == str(hf_cache.snapshot)
    assert shown["languages"] == ["en", "pl"]
    assert shown["domains"] == ["medicine"]
    assert shown["parameters"] == PARAMETERS
    assert shown["architecture"] == "LlamaForCausalLM"
    assert shown["context_length"] == 2048
    assert shown["dtype"] == "float32"
    assert shown["license"] == "apache-2.0"
    assert shown["task"] == "text-generation"
    assert (shown["base_model"], shown["relation"]) == ("org/base", "finetune")  # the Hub's default
    assert shown["description"].startswith("A Polish and English clinical assistant, fine-tuned on discharge notes")


def test_scan_cache_takes_the_snapshot_refs_main_points_to_not_the_newest(
    hf_cache: HfCache, home: Path, tmp_path: Path
) -> None:
    # A newer snapshot with a different model that main does not point to.
    newer = write_snapshot(hf_cache.root / "models--org--name", OLD_SHA, {
        "config.json": CONFIG,
        "model.safetensors": safetensors_bytes(tmp_path, {"w": np.zeros((3, 3), dtype=np.float32)}),
    })
    os.utime(newer, (2**31, 2**31))

    almanac_json(home, "models", "scan-cache", "--cache-dir", str(hf_cache.root))

    shown = almanac_json(home, "models", "show", "org/name")
    assert (shown["revision"], shown["parameters"]) == (MAIN_SHA, PARAMETERS)


def test_scan_cache_runs_offline_in_a_real_subprocess(hf_cache: HfCache, home: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{unused_port()}"}

    proc = almanac_subprocess(home, "models", "scan-cache", "--cache-dir", str(hf_cache.root), "--json", env=env)

    assert proc.returncode == 0, proc.stderr
    assert [m["ref"] for m in json.loads(proc.stdout)["models"]] == ["org/name"]
    assert "1 models added or refreshed, 1 skipped" in proc.stderr
    assert model_count(home) == 1


def test_scan_cache_of_a_missing_directory_is_an_error_naming_it(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-cache"

    result = almanac(home, "models", "scan-cache", "--cache-dir", str(missing))

    assert result.exit_code == 1
    assert str(missing) in result.stderr


def test_scan_cache_on_a_machine_that_never_downloaded_anything_adds_nothing(home: Path) -> None:
    # HF_HOME points at a directory that does not exist (almanac_subprocess): no hub cache.
    proc = almanac_subprocess(home, "models", "scan-cache", "--json", env={"HF_HUB_OFFLINE": "1"})

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["models"] == []
    assert "no Hugging Face cache at" in proc.stderr and "yet" in proc.stderr
    assert "damaged" not in proc.stderr


# --- local directories ------------------------------------------------------------


def test_add_path_records_a_peft_adapter_with_rank_base_and_adapter_parameters(
    hf_cache: HfCache, adapter_dir: Path, home: Path
) -> None:
    almanac_json(home, "models", "scan-cache", "--cache-dir", str(hf_cache.root))

    added = almanac_json(
        home, "models", "add", "--path", str(adapter_dir), "--domain", "law", "--language", "de",
    )

    assert added["ref"] == "clinical-lora"
    assert added["source"] == "local"
    assert added["local_path"] == str(adapter_dir.resolve())
    assert added["relation"] == "adapter"
    assert added["base_model"] == "org/name"
    assert added["adapter_rank"] == 8
    assert added["parameters"] == 8 * 64 + 64 * 8
    assert added["domains"] == ["law"]
    assert added["languages"] == ["de"]
    assert "lora" in added["tags"]
    assert almanac_json(home, "models", "show", "org/name")["adapters"] == ["clinical-lora"]


def test_add_path_name_option_names_the_entry(adapter_dir: Path, home: Path) -> None:
    added = almanac_json(home, "models", "add", "--path", str(adapter_dir), "--name", "my-lora")

    assert (added["ref"], added["name"]) == ("my-lora", "my-lora")


def test_add_path_counts_every_shard_of_a_sharded_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "sharded"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(CONFIG))
    save_file({"a": np.zeros((4, 5), dtype=np.float16)}, str(path / "model-00001-of-00002.safetensors"))
    save_file({"b": np.zeros((7,), dtype=np.float16)}, str(path / "model-00002-of-00002.safetensors"))
    # Mistral-style duplicate of the same weights: must not be counted twice.
    save_file({"a": np.zeros((4, 5), dtype=np.float16)}, str(path / "consolidated.safetensors"))
    (path / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": 54},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }))

    entry = entry_from_directory(path)

    assert entry.parameters == 27
    assert entry.ref == "sharded"


def test_partial_shards_leave_the_parameter_count_unknown(tmp_path: Path) -> None:
    path = tmp_path / "partial"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({**CONFIG, "torch_dtype": None}))
    save_file({"a": np.zeros((4, 5), dtype=np.float16)}, str(path / "model-00001-of-00002.safetensors"))
    (path / "model.safetensors.index.json").write_text(json.dumps({
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }))

    assert entry_from_directory(path).parameters is None


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_add_path_with_unreadable_weights_fails_naming_the_file(
        tmp_path: Path, home: Path, damage: str) -> None:
    path = tmp_path / "damaged"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(CONFIG))
    weights = safetensors_bytes(tmp_path, WEIGHTS)
    (path / "model.safetensors").write_bytes(
        b"\x00\x01 not safetensors" if damage == "garbage" else weights[:-3])

    result = almanac(home, "models", "add", "--path", str(path))

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(path / "model.safetensors") in result.stderr
    with pytest.raises(LocalModelError, match="model.safetensors: not a valid safetensors file"):
        entry_from_directory(path)


def test_add_path_without_config_json_fails_naming_the_directory(tmp_path: Path, home: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()

    result = almanac(home, "models", "add", "--path", str(empty))

    assert result.exit_code == 1
    assert str(empty) in result.stderr and "config.json" in result.stderr
    with pytest.raises(LocalModelError, match="not-a-model"):
        entry_from_directory(empty)


def test_add_rejects_an_unknown_domain_or_language_as_a_usage_error(adapter_dir: Path, home: Path) -> None:
    bad_domain = almanac(home, "models", "add", "--path", str(adapter_dir), "--domain", "astrology")
    bad_language = almanac(home, "models", "add", "--path", str(adapter_dir), "--language", "xx-klingon")

    assert bad_domain.exit_code == 2 and "--domain" in bad_domain.stderr
    assert bad_language.exit_code == 2 and "--language" in bad_language.stderr


@pytest.mark.parametrize("args", [[], ["org/name", "--path", "."]], ids=["neither", "both"])
def test_add_needs_exactly_one_of_repo_id_or_path(args: list[str], home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), "models", "add", *args])

    assert result.exit_code == 2
    assert "exactly one of REPO_ID or --path" in result.stderr


# --- the Hub API ------------------------------------------------------------------------

HUB_JSON = {
    "_id": "65f0c0ffee",
    "id": "org/clinical-7b",
    "sha": "c" * 40,
    "private": False,
    "gated": "manual",
    "downloads": 1234,
    "likes": 56,
    "pipeline_tag": "text-generation",
    "library_name": "transformers",
    "tags": [
        "transformers", "safetensors", "llama", "text-generation", "medical", "clinical",
        "pl", "en", "base_model:finetune:org/base-7b", "license:llama2", "region:us",
    ],
    "cardData": {
        "language": ["pl", "en", "multilingual"],
        "license": "llama2",
        "tags": ["medical"],
        "base_model": "org/base-7b",
        "base_model_relation": "finetune",
        "model-index": [{
            "name": "clinical-7b",
            "results": [{
                "task": {"type": "text-generation"},
                "dataset": {"type": "medmcqa", "name": "MedMCQA"},
                "metrics": [{"type": "accuracy", "value": 0.512}],
                "source": {"name": "Paper", "url": "https://example.org/paper"},
            }],
        }],
    },
    "config": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
    "safetensors": {"parameters": {"BF16": 6738415616}, "total": 6738415616},
    "baseModels": {"relation": "finetune", "models": [{"id": "org/base-7b"}]},
}


def test_entry_from_model_info_maps_the_hub_api_json() -> None:
    info = ModelInfo(**json.loads(json.dumps(HUB_JSON)))

    entry = validate_entry(entry_from_model_info(info, card_text="\n# Clinical\n\nA clinical model.\n"))

    assert (entry.ref, entry.repo_id, entry.name) == ("org/clinical-7b", "org/clinical-7b", "clinical-7b")
    assert entry.source == "hub"
    assert entry.revision == "c" * 40
    assert entry.languages == ["pl", "en"]  # "multilingual" is not a language code
    assert entry.domains == ["medicine"]
    assert entry.parameters == 6738415616
    assert entry.dtype == "bfloat16"
    assert entry.architecture == "LlamaForCausalLM"
    assert entry.license == "llama2"
    assert entry.task == "text-generation"
    assert (entry.base_model, entry.relation) == ("org/base-7b", "finetune")
    assert entry.gated is True
    assert (entry.downloads, entry.likes) == (1234, 56)
    assert [(e.benchmark, e.metric, e.value, e.source) for e in entry.evals] == [
        ("MedMCQA", "accuracy", 0.512, "https://example.org/paper")
    ]
    assert entry.description == "A clinical model."
    assert "medical" in entry.tags
    assert "base_model:finetune:org/base-7b" not in entry.tags and "pl" not in entry.tags


def test_entry_from_model_info_falls_back_to_hub_lineage_and_license_tag() -> None:
    data = {
        "id": "org/sql-lora",
        "sha": "d" * 40,
        "tags": ["peft", "text-to-sql", "license:apache-2.0", "base_model:adapter:org/coder-7b"],
        "cardData": {"language": "en"},
    }

    entry = entry_from_model_info(ModelInfo(**data))

    assert (entry.base_model, entry.relation) == ("org/coder-7b", "adapter")
    assert entry.license == "apache-2.0"
    assert entry.domains == ["code/sql"]
    assert entry.languages == ["en"]
    assert entry.parameters is None


@pytest.fixture
def hub() -> Iterator[HubStandIn]:
    stand_in = HubStandIn()
    stand_in.add(json.loads(json.dumps(HUB_JSON)))  # a copy: tests change it
    stand_in.readmes["org/clinical-7b"] = CARD
    stand_in.configs["org/clinical-7b"] = {**CONFIG, "max_position_embeddings": 8192}
    with Served(stand_in):
        yield stand_in


def test_fetch_entry_pins_the_resolved_commit_and_reads_card_and_config(hub: HubStandIn) -> None:
    hub.models["org/clinical-7b"]["gated"] = False  # a gated repo's files need a token

    entry = fetch_entry("org/clinical-7b", revision="main", api=HfApi(endpoint=hub.url, token=False))

    assert entry.revision == "c" * 40
    assert entry.card.lstrip().startswith("# Name")
    assert entry.context_length == 8192 and entry.dtype == "float32"  # config.json, not the API's trimmed one
    assert {r.path for r in hub.requests if "/resolve/" in r.path} == {
        f"/org/clinical-7b/resolve/{'c' * 40}/README.md", f"/org/clinical-7b/resolve/{'c' * 40}/config.json"}


def test_fetch_entry_names_the_repo_when_the_hub_has_no_such_model(hub: HubStandIn) -> None:
    with pytest.raises(HubError, match=r"org/nothing-here: no such model on the Hub"):
        fetch_entry("org/nothing-here", api=HfApi(endpoint=hub.url, token=False))


def test_add_repo_id_from_the_hub_in_a_subprocess(hub: HubStandIn, home: Path) -> None:
    proc = almanac_subprocess(
        home, "models", "add", "org/clinical-7b", "--language", "sea", "--json", env={"HF_ENDPOINT": hub.url},
    )

    assert proc.returncode == 0, proc.stderr
    added = json.loads(proc.stdout)
    assert (added["source"], added["revision"], added["parameters"]) == ("hub", "c" * 40, 6738415616)
    assert "id" in added["languages"] and "th" in added["languages"]  # the group replaced pl, en
    assert f"added org/clinical-7b from the Hub at {'c' * 40}" in proc.stderr
    # Gated: without a token the card and config.json are refused; the facts still come in.
    assert "org/clinical-7b: no model card: org/clinical-7b's README.md is gated on the Hub" in proc.stderr
    assert added["description"] == "" and added["context_length"] is None


def test_a_downloaded_revision_gives_its_context_length_from_the_hf_cache(hub: HubStandIn, home: Path,
                                                                         tmp_path: Path) -> None:
    hub.models["org/clinical-7b"]["gated"] = False
    cache = tmp_path / "hf-cache"
    write_snapshot(cache / "models--org--clinical-7b", "c" * 40, {"config.json": {**CONFIG, "n_positions": 1024,
                                                                                    "max_position_embeddings": None}})

    proc = almanac_subprocess(home, "models", "add", "org/clinical-7b", "--json",
                              env={"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache)})

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["context_length"] == 1024
    assert not any(r.path.endswith("config.json") for r in hub.requests)


@pytest.mark.parametrize(("args", "said"), [
    (["org/clinical-7b", "--revision", "v9"], "org/clinical-7b: the Hub has no revision 'v9' (404 Not Found: "),
    (["org/nothing-here"], "org/nothing-here: no such model on the Hub (if it is private, log in with "
                           "`hf auth login` or set HF_TOKEN) (401 Unauthorized: Invalid username or password."),
], ids=["revision", "repo"])
def test_add_of_what_the_hub_does_not_have_is_one_line_with_its_reason(hub: HubStandIn, home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      args: list[str], said: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)

    result = CliRunner().invoke(cli, ["--home", str(home), "models", "add", *args])

    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {said}") and f"(GET {hub.url}/api/models/" in line
    assert not (home / "catalog.db").exists() or model_count(home) == 0


GARBLED = {
    "truncated": (b'{"_id": "65f0c0ffee", "id": "org/clinical-7b", "sha": "cccc', "application/json",
                  "org/clinical-7b: the Hub's answer is not JSON (200, application/json"),
    "html-with-200": (b"<!doctype html><title>Hugging Face - 500</title>", "text/html; charset=utf-8",
                      "org/clinical-7b: the Hub's answer is not JSON (200, text/html"),
    "no-id": (json.dumps({k: v for k, v in HUB_JSON.items() if k != "id"}).encode(), "application/json",
              "org/clinical-7b: the Hub's answer does not fit: no `id`"),
    "safetensors-without-total": (json.dumps({**HUB_JSON, "safetensors": {"parameters": {"BF16": 1}}}).encode(),
                                  "application/json", "safetensors has no `total`"),
    "tags-string": (json.dumps({**HUB_JSON, "tags": "medical, clinical"}).encode(), "application/json",
                    "tags: 'medical, clinical' is not a list of strings"),
    "card-language-string": (json.dumps({**HUB_JSON, "cardData": {**HUB_JSON["cardData"], "language": "en, pl"}}
                                        ).encode(), "application/json",
                             "cardData.language: 'en, pl' is not a language code nor a list of codes"),
}


@pytest.mark.parametrize("case", sorted(GARBLED))
def test_add_of_a_garbled_answer_is_one_line_exit_1_and_writes_nothing(hub: HubStandIn, home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      case: str) -> None:
    body, kind, said = GARBLED[case]
    assert almanac(home, "init").exit_code == 0
    before = model_count(home)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    hub.fail_next("/api/models/org/clinical-7b", 200, body=body, headers={"Content-Type": kind})

    result = CliRunner().invoke(cli, ["--home", str(home), "models", "add", "org/clinical-7b"])

    assert result.exit_code == 1 and result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    (line,) = result.stderr.strip().splitlines()
    assert said in line and line.startswith("Error: org/clinical-7b")
    assert model_count(home) == before


def test_a_damaged_file_under_hf_home_is_one_line_not_a_traceback(hub: HubStandIn, home: Path) -> None:
    hf_home = home.parent / "hf-home"
    hf_home.mkdir()
    (hf_home / ".agent_harnesses.json").write_text("[1, 2]")  # huggingface_hub expects an object

    for args in (["add", "org/clinical-7b"], ["discover", "--domain", "medicine"]):
        proc = almanac_subprocess(home, "models", *args, env={"HF_ENDPOINT": hub.url})

        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        assert "Traceback" not in proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "huggingface_hub failed in its own code (AttributeError:" in line
        assert str(hf_home) in line


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "unreachable-endpoint"])
def test_network_failure_exits_1_naming_the_repo_and_leaves_the_catalog_unchanged(
    offline: bool, adapter_dir: Path, home: Path
) -> None:
    almanac_json(home, "models", "add", "--path", str(adapter_dir))
    before = model_count(home)
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{unused_port()}", "HF_HUB_OFFLINE": "1" if offline else "0"}

    for args in (["add", "org/clinical-7b", "--json"], ["discover", "--domain", "medicine"]):
        proc = almanac_subprocess(home, "models", *args, env=env)

        assert proc.returncode == 1
        assert proc.stdout == ""
        # One line, at once: a refused connection is not retried (no "Retrying in 8s").
        (line,) = proc.stderr.strip().splitlines()
        assert ("org/clinical-7b" if args[0] == "add" else "the listing filter=") in line
        # Offline, the message points at what works without the network.
        assert ("models scan-cache" if offline else "cannot reach the Hub") in line
        assert model_count(home) == before == 1


def test_scan_cache_keeps_what_the_curated_seed_knows_and_the_card_does_not(
    tmp_path: Path, home: Path
) -> None:
    """A seed model found in the cache gains its local path and revision, but a bare
    card (no tags, no languages) must not erase its curated domains and languages."""
    root = tmp_path / "hf2" / "hub"
    repo = root / "models--epfl-llm--meditron-7b"
    write_snapshot(repo, MAIN_SHA, {
        "config.json": CONFIG,
        "README.md": b"---\nlicense: llama2\n---\nA model.\n",
        "model.safetensors": safetensors_bytes(tmp_path, WEIGHTS),
    })
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN_SHA)
    assert almanac(home, "init").exit_code == 0
    before = almanac_json(home, "models", "show", "epfl-llm/meditron-7b")

    almanac_json(home, "models", "scan-cache", "--cache-dir", str(root))

    after = almanac_json(home, "models", "show", "epfl-llm/meditron-7b")
    assert (after["source"], after["revision"]) == ("cache", MAIN_SHA)
    assert after["local_path"].endswith(MAIN_SHA)
    assert after["domains"] == before["domains"] == ["medicine"]
    assert after["languages"] == before["languages"] == ["en"]
    assert set(before["tags"]) <= set(after["tags"])
