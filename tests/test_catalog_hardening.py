"""The catalog against hostile files and concurrent writers: a damaged, unreadable or
read-only catalog.db is one line and exit 1 (503 over HTTP); a model directory with a
hostile config, card or safetensors header is refused naming the file, nothing stored;
concurrent `init`s and `models add`s of one model all succeed."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from catalog.localmodels import LocalModelError, entry_from_directory
from tests.engine_support import almanac
from tests.test_server import LiveServer


def _as_user(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`almanac` as a user whom file permissions bind: root (as in CI) is run without the
    capabilities that let it read and write any file."""
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    command = [sys.executable, "-m", "almanac", *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot bind")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), proc.stderr


# -- a damaged, unreadable or read-only catalog ----------------------------------------------


def _garbage(db: Path) -> None:
    db.write_bytes(os.urandom(64 * 1024))


def _truncated(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])


def _a_directory(db: Path) -> None:
    db.unlink()
    db.mkdir()


@pytest.mark.parametrize(("damage", "words"), [
    (_garbage, ("not an SQLite database",)),
    (_truncated, ("damaged",)),
    (_a_directory, ("cannot be opened",)),
])
def test_a_damaged_catalog_is_one_line_and_exit_1(home: Path, damage: Callable[[Path], None],
                                                  words: tuple[str, ...]) -> None:
    assert almanac(home, "init").returncode == 0
    for extra in ("catalog.db-wal", "catalog.db-shm"):
        (home / extra).unlink(missing_ok=True)
    damage(home / "catalog.db")
    for command in (["models", "list"], ["init"], ["runs"]):
        _one_line(almanac(home, *command), str(home / "catalog.db"), *words)


def test_an_unreadable_catalog_is_one_line_and_exit_1(home: Path) -> None:
    assert almanac(home, "init").returncode == 0
    (home / "catalog.db").chmod(0)
    try:
        _one_line(_as_user(home, "models", "list"), "cannot be opened")
    finally:
        (home / "catalog.db").chmod(0o644)


def test_a_read_only_catalog_is_one_line_and_exit_1_for_a_command_that_writes(home: Path) -> None:
    assert almanac(home, "init").returncode == 0
    (home / "catalog.db").chmod(0o444)
    home.chmod(0o555)  # nor can SQLite make its journal beside it
    try:
        for command in (["init"], ["models", "remove", "nothing"]):
            _one_line(_as_user(home, *command), "read-only")
    finally:
        home.chmod(0o755)
        (home / "catalog.db").chmod(0o644)


@pytest.mark.parametrize("damage", [_garbage, _a_directory])
def test_a_damaged_catalog_is_503_over_http_without_the_homes_path(tmp_path: Path,
                                                                   damage: Callable[[Path], None]) -> None:
    home = tmp_path / "served"
    assert almanac(home, "init").returncode == 0
    damage(home / "catalog.db")
    server = LiveServer(home)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for path in ("/models", "/models/epfl-llm/meditron-7b", "/runs"):
                resp = c.get(path)
                assert resp.status_code == 503, resp.text
                assert resp.json()["error"] == "unavailable"
                assert str(tmp_path) not in resp.text and "<home>" in resp.text
            assert c.get("/jobs").status_code == 200  # the cache still answers
    finally:
        server.close()


# -- concurrent writers --------------------------------------------------------------------------


def _together(home: Path, count: int, *args: str) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-m", "almanac", *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(count)]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_concurrent_inits_of_a_new_home_all_succeed(home: Path) -> None:
    results = _together(home, 6, "init", "--json")
    for r in results:
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    added = sorted(json.loads(r.stdout)["seed"]["added"] for r in results)
    assert added[-1] > 0 and added[:-1] == [0] * 5  # one loaded the seed; the others found it


def test_concurrent_adds_of_one_model_all_succeed_and_store_it_once(home: Path, tmp_path: Path) -> None:
    from tests.test_job_spec import make_local_model

    model = make_local_model(tmp_path / "tiny")
    results = _together(home, 6, "models", "add", "--path", str(model), "--name", "tiny", "--json")
    for r in results:
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    listed = json.loads(almanac(home, "models", "list", "--source", "local", "--json").stdout)
    assert [m["ref"] for m in listed] == ["tiny"]


# -- hostile model directories ------------------------------------------------------------------


def _config(directory: Path, config: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config) if not isinstance(config, str)
                                           else config)
    return directory


def _safetensors(directory: Path, data: bytes) -> Path:
    _config(directory, {"architectures": ["LlamaForCausalLM"]})
    (directory / "model.safetensors").write_bytes(data)
    return directory


def _header(header: dict[str, object], body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _adapter(directory: Path, config: dict[str, object]) -> Path:
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps(config))
    return directory


def _shard_index(directory: Path, weight_map: object) -> Path:
    _config(directory, {"architectures": ["LlamaForCausalLM"]})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def _card(directory: Path, front_matter: str) -> Path:
    _config(directory, {"architectures": ["LlamaForCausalLM"]})
    (directory / "README.md").write_text(f"---\n{front_matter}\n---\nA card.\n")
    return directory


LAUGHS = "\n".join([  # a billion laughs: nine aliases deep, each nine times the last
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *(f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]" for p, x in zip("abcdefg", "bcdefgh", strict=True)),
    "tags: *h"])
HOSTILE_DIRECTORIES: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "deep config": (lambda d: _config(d, '{"a":' * 100_000 + "1" + "}" * 100_000),
                    "config.json", "nested too deeply"),
    "huge config": (lambda d: _config(d, {"junk": "x" * (17 * 1024 * 1024)}),
                    "config.json", "at most 16,777,216"),
    "negative context": (lambda d: _config(d, {"max_position_embeddings": -5}),
                         "config.json", "max_position_embeddings: -5 is not a context length"),
    "absurd context": (lambda d: _config(d, {"max_position_embeddings": 10**30}),
                       "config.json", "is not a context length"),
    "context as true": (lambda d: _config(d, {"n_positions": True}), "config.json",
                        "n_positions: True"),
    "context as text": (lambda d: _config(d, {"text_config": {"max_position_embeddings": "4k"}}),
                        "config.json", "text_config.max_position_embeddings"),
    "architectures as object": (lambda d: _config(d, {"architectures": {"a": 1}}),
                                "config.json", "architectures"),
    "negative rank": (lambda d: _adapter(d, {"r": -4, "base_model_name_or_path": "base"}),
                      "adapter_config.json", "r: -4 is not a LoRA rank"),
    "card languages as object": (lambda d: _card(d, "language: {a: 1}"), "README.md",
                                 "language"),
    "card with a billion laughs": (lambda d: _card(d, LAUGHS), "README.md", "tags"),
    "card nested deeply": (lambda d: _card(d, "tags: " + "[" * 3000 + "]" * 3000), "README.md",
                           "nested too deeply"),
    "card eval of infinity": (lambda d: _card(d, "model-index:\n- name: x\n  results:\n  - task: "
                                                  "{type: t}\n    dataset: {name: d, type: d}\n"
                                                  "    metrics: [{type: acc, value: 1e400}]"),
                              "README.md", "not a finite number"),
    "header too large": (lambda d: _safetensors(d, struct.pack("<Q", 2**62) + b"{}"),
                         "model.safetensors", "not a valid safetensors file"),
    "shape overflowing": (lambda d: _safetensors(d, _header(
        {"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 4]}}, b"\0" * 4)),
        "model.safetensors", "not a valid safetensors file"),
    "shards outside the directory": (lambda d: _shard_index(d, {"w": "../../etc/passwd"}),
                                     "model.safetensors.index.json", "weight_map"),
    "shard map as a list": (lambda d: _shard_index(d, ["model.safetensors"]),
                            "model.safetensors.index.json", "weight_map"),
}


@pytest.mark.parametrize("case", list(HOSTILE_DIRECTORIES))
def test_a_hostile_model_directory_is_refused_naming_the_file(tmp_path: Path, case: str) -> None:
    make, file, words = HOSTILE_DIRECTORIES[case]
    directory = make(tmp_path / "model")
    with pytest.raises(LocalModelError) as err:
        entry_from_directory(directory)
    message = str(err.value)
    assert message.startswith(str(directory / file)), message
    assert words in message and "\n" not in message


def test_a_hostile_model_directory_through_the_cli_stores_nothing(home: Path, tmp_path: Path) -> None:
    make, _, words = HOSTILE_DIRECTORIES["negative context"]
    directory = make(tmp_path / "model")
    added = almanac(home, "models", "add", "--path", str(directory))
    _one_line(added, "config.json", words)
    listed = json.loads(almanac(home, "models", "list", "--source", "local", "--json").stdout)
    assert listed == []


def test_a_weights_file_this_user_cannot_read_is_said_to_be_not_readable(home: Path,
                                                                          tmp_path: Path) -> None:
    directory = _safetensors(tmp_path / "model", _header(
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4))
    (directory / "model.safetensors").chmod(0)
    try:
        added = _as_user(home, "models", "add", "--path", str(directory), "--name", "mine")
    finally:
        (directory / "model.safetensors").chmod(0o644)
    _one_line(added, "model.safetensors: not readable", "Permission denied")
    assert "No such file" not in added.stderr
