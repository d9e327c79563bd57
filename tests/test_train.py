"""`almanac train`: a LoRA adapter of the tiny model trained by TRL's SFTTrainer and PEFT
on a curated set the real `curate` wrote, registered with its lineage, reused when
nothing changed; and each bad input refused in one line with exit 2 (or 1) before any
training. The training itself takes seconds on the tiny model."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from almanac.cli import cli
from batch.data.curate import curate
from batch.data.curated_set import curated_data_files
from catalog.db import Catalog
from catalog.localmodels import entry_from_directory
from catalog.models import upsert_model
from tests.damage import can_mount, grow, small_filesystem
from tests.engine_support import TINY_MODEL, almanac
from tests.test_import_hygiene import TRAINING, _probe
from tests.train_support import FRUITS, TEACHER, curated_set
from tui.app import make_app

STUDENT = "me/fruit-student"
FAST = ["--steps", "4", "--rank", "4", "--lr", "5e-3", "--batch-size", "4"]


def register(home: Path, path: Path, name: str) -> None:
    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, entry_from_directory(path, name=name))
    catalog.close()


def train(home: Path, data: Path, *args: str, name: str = STUDENT,
          base: str = TINY_MODEL) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), "train", "--base", base, "--data",
                                    str(data), "--name", name, *FAST, *args])


def one_line_error(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def base(home: Path, tiny_model: Path) -> Path:
    register(home, tiny_model, TINY_MODEL)
    return tiny_model


@pytest.fixture
def data(home: Path, tmp_path: Path, base: Path) -> Path:
    return curated_set(home / "predictions", tmp_path / "data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[tuple[Path, dict]]:
    """One home where the student was trained once (shared by the tests that only read it)."""
    home = tmp_path_factory.mktemp("trained") / "home"
    register(home, tiny_model, TINY_MODEL)
    data = curated_set(home / "predictions", home.parent / "data")
    result = train(home, data, "--json")
    assert result.exit_code == 0, result.output
    yield home, json.loads(result.stdout)


def show(home: Path, ref: str) -> dict:
    result = CliRunner().invoke(cli, ["--home", str(home), "models", "show", ref, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_adapter_lands_in_peft_layout_and_its_lineage_is_in_the_catalog(
        trained: tuple[Path, dict]) -> None:
    home, report = trained
    assert (report["status"], report["steps"], report["form"]) == ("trained", 4, "text")
    folder = Path(report["path"])
    assert folder == home / "models" / "me" / "fruit-student"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], sorted(config["target_modules"])) == \
        ("LORA", 4, ["q_proj", "v_proj"])
    assert (folder / "adapter_model.safetensors").stat().st_size > 0
    entry = show(home, STUDENT)
    assert (entry["relation"], entry["base_model"], entry["adapter_rank"]) == ("adapter", TINY_MODEL, 4)
    lineage = entry["training"]
    assert lineage["key"] == report["key"] and lineage["data_digest"] == report["data_digest"]
    assert lineage["train_rows"] + lineage["validation_rows"] == len(FRUITS)
    assert lineage["train_rows"] == report["train_rows"] > lineage["validation_rows"] > 0
    assert lineage["sources"] == [{"job": TEACHER, "candidate": "teacher-model",
                                   "model": "teacher-model", "adapter": None,
                                   "rows": lineage["train_rows"]}]
    assert lineage["distilled_from"] == f"{TEACHER} (teacher teacher-model)"
    assert lineage["settings"] == {"rank": 4, "alpha": 16.0, "targets": ["q_proj", "v_proj"],
                                   "steps": 4, "epochs": None, "lr": 5e-3, "batch_size": 4,
                                   "max_length": 512, "seed": 0}
    assert math.isfinite(lineage["train_loss"]) and math.isfinite(lineage["eval_loss"])
    assert lineage["steps"] == 4 and lineage["seconds"] > 0
    assert (lineage["device"], lineage["dtype"]) == ("cpu", "float32") and lineage["hardware"]
    assert {"torch", "trl", "peft"} <= set(lineage["versions"])
    listed = CliRunner().invoke(cli, ["--home", str(home), "models", "list", "--adapters-of",
                                      TINY_MODEL, "--json"])
    assert [m["ref"] for m in json.loads(listed.stdout)] == [STUDENT]
    assert show(home, TINY_MODEL)["adapters"] == [STUDENT]
    text = CliRunner().invoke(cli, ["--home", str(home), "models", "show", STUDENT]).stdout
    assert f"lineage: a LoRA adapter of {TINY_MODEL}, distilled from {TEACHER} " \
           "(teacher teacher-model)" in text
    assert "trained: 4 steps in" in text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual's Pilot runs on asyncio, through anyio's pytest plugin


@pytest.mark.anyio
async def test_the_tui_model_detail_says_what_the_adapter_was_distilled_from(
        trained: tuple[Path, dict]) -> None:
    from tests.tui_capture import screen_text, settle

    home, _ = trained
    app = make_app(home / "catalog.db", home / "predictions")
    async with app.run_test(size=(120, 60)) as pilot:
        await settle(pilot)
        app.open_model(STUDENT)
        await settle(pilot)
        text = screen_text(app)
    assert "distilled from" in text and f"{TEACHER} (teacher teacher-model)" in text


def test_the_same_inputs_reuse_the_adapter_without_torch_and_force_trains_again(
        trained: tuple[Path, dict], tmp_path: Path) -> None:
    home, first = trained
    weights = Path(first["path"]) / "adapter_model.safetensors"
    written = weights.stat().st_mtime_ns
    # A rerun in a fresh interpreter: answered from the catalog, torch never imported.
    args = ["--home", str(home), "train", "--base", TINY_MODEL, "--data", first["data"],
            "--name", STUDENT, *FAST]
    codes, modules = _probe(tmp_path, args)
    assert codes == [0] and "batch" in modules and modules & TRAINING == set()
    again = train(home, Path(first["data"]), "--json")
    assert again.exit_code == 0, again.output
    reused = json.loads(again.stdout)
    assert (reused["status"], reused["key"], reused["path"]) == ("reused", first["key"], first["path"])
    assert weights.stat().st_mtime_ns == written
    # Other settings, same name: another adapter, refused unless --force.
    other = train(home, Path(first["data"]), "--steps", "5")
    assert "already taken by an adapter trained on other inputs" in one_line_error(other)
    forced = train(home, Path(first["data"]), "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["status"] == "trained"
    assert show(home, STUDENT)["training"]["key"] == first["key"]


def _dry(home: Path, data: Path) -> dict:
    result = train(home, data, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_training_reads_exactly_the_files_the_card_names(home: Path, data: Path) -> None:
    before = _dry(home, data)
    assert before["status"] == "planned" and before["train_rows"] + before["validation_rows"] == 16
    # Beside the card's own files, one of an earlier version's fixed name and a
    # content-named one the card does not name: neither is read.
    stray = pa.table({"prompt": ["stray:"], "completion": [" no"]})
    pq.write_table(stray, data / "train.parquet")
    pq.write_table(stray, data / f"train-{'0' * 16}.parquet")
    beside = _dry(home, data)
    assert (beside["train_rows"], beside["validation_rows"], beside["data_digest"]) == \
        (before["train_rows"], before["validation_rows"], before["data_digest"])
    # The set curated again with fewer rows: the new card's files, another digest.
    curate(home / "predictions", TEACHER, data, command="almanac curate fruit-teacher",
           split=0.75, where="score >= 1")
    again = _dry(home, data)
    assert again["train_rows"] + again["validation_rows"] == 14
    assert again["data_digest"] != before["data_digest"]
    assert not (home / "models").exists() and not (home / "training").exists()  # dry: nothing


def _card(directory: Path, files: dict[str, str]) -> None:
    """A dataset card naming `files` ({split: file name}), as curate writes one."""
    entries = "".join(f"  - split: {split}\n    path: {name}\n" for split, name in files.items())
    (directory / "README.md").write_text(
        f"---\nconfigs:\n- config_name: default\n  data_files:\n{entries}---\n")


@pytest.fixture
def bad(tmp_path: Path, data: Path) -> dict[str, Path]:
    """Data directories each wrong in one way."""
    out = {}
    named = f"-{'a' * 16}.parquet"
    no_train = out["no-train"] = tmp_path / "no-train"
    no_train.mkdir()
    _card(no_train, {"validation": f"validation{named}"})
    (no_train / f"validation{named}").write_bytes(
        curated_data_files(data)["validation"][0].read_bytes())
    empty = out["empty"] = tmp_path / "empty"
    empty.mkdir()
    pq.write_table(pa.table({"prompt": ["peach:"], "completion": [" drupe"]}),
                   empty / "train.parquet")  # a file, but no card naming it
    columns = out["columns"] = tmp_path / "columns"
    columns.mkdir()
    _card(columns, {"train": f"train{named}"})
    pq.write_table(pa.table({"text": ["peach: drupe"]}), columns / f"train{named}")
    return out


@pytest.mark.parametrize(("case", "args", "says"), [
    ("where", ["--where", "score >= 2"], "--where 'score >= 2': no train rows left (train: 0 of"),
    ("no-train", [], "README.md: names no train split (splits: validation)"),
    ("empty", [], "empty: no dataset card (README.md); `almanac curate JOB -o DIR` writes one"),
    ("columns", [], f"train-{'a' * 16}.parquet: no `messages` column, nor `prompt` and "
                    "`completion` columns (it has: text)"),
    ("name", ["--name", "../escape"], "--name: '../escape' is not ORG/NAME"),
    ("base", ["--base", "no-such-model"], "--base: no model 'no-such-model' in the catalog"),
    ("adapter-base", ["--base", "me/lora"], "--base: me/lora is itself an adapter"),
    ("taken", ["--name", "me/lora"], "--name: me/lora is already taken by an adapter Almanac "
                                     "did not train; --force replaces it"),
    ("steps", ["--epochs", "2"], "--steps and --epochs: give one of them, not both"),
])
def test_each_bad_input_is_one_line_and_exit_2_before_any_training(
        home: Path, data: Path, bad: dict[str, Path], lora_adapter: Path, case: str,
        args: list[str], says: str) -> None:
    register(home, lora_adapter, "me/lora")
    result = train(home, bad.get(case, data), *args)
    assert says in one_line_error(result)
    assert not (home / "models").exists() and not (home / "training").exists()


def test_targets_the_model_lacks_are_refused_with_its_linear_layers(home: Path, data: Path) -> None:
    result = train(home, data, "--targets", "q_proj,wq")
    line = one_line_error(result)
    assert line.startswith("Error: --targets: wq: no such linear layer in tiny-test; its linear "
                           "layers: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, "
                           "v_proj")
    assert show(home, TINY_MODEL)["adapters"] == []
    assert [p.name for p in (home / "models").iterdir()] == []  # no scratch left behind


def test_a_hub_base_neither_cached_nor_reachable_is_exit_1(
        home: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read once, when huggingface_hub loads
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    proc = almanac(home, "train", "--base", "acme/absent-model", "--data", str(data), "--name",
                   STUDENT)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "Error: --base: acme/absent-model is not in the Hugging Face cache and the Hub cannot be "
        "reached (offline?); fetch it first (`hf download acme/absent-model`)")


@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root where mounts "
                                            "are allowed; tests.damage.small_filesystem")
def test_a_full_disk_registers_nothing_and_the_next_run_trains(home: Path, data: Path) -> None:
    with small_filesystem(home / "models", "8k") as models:
        full = train(home, data)
        assert full.exit_code == 1 and "Traceback" not in full.output, full.output
        assert full.stderr.strip().splitlines()[-1] == (
            "Error: disk full while training me/fruit-student: nothing was registered; free "
            "some space and run again")  # after the progress lines of the steps it trained
        assert list(models.iterdir()) == []
        assert show(home, TINY_MODEL)["adapters"] == []
        grow(models, "4m")
        again = train(home, data, "--json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["status"] == "trained"
        assert show(home, TINY_MODEL)["adapters"] == [STUDENT]


def test_chats_go_through_the_chat_template_and_template_prompts_train_as_text(
        home: Path, data: Path, tmp_path: Path) -> None:
    from batch.data.curate import curate
    from tests.cache_support import record, write

    chat = [{"role": "system", "content": "Name the fruit's family."}]
    write(home / "predictions", [
        record(f"c{i}", job="chatty", prompt=json.dumps([*chat, {"role": "user", "content": f}]),
               output=f" {family}", model="big", candidate="big")
        for i, (f, family) in enumerate(FRUITS.items())], job="chatty")
    chats = curate(home / "predictions", "chatty", tmp_path / "chats", command="curate chatty",
                   split=0.75).output
    assert _dry(home, chats)["form"] == "chat"  # the tiny model has a chat template
    assert _dry(home, data)["form"] == "text"  # a template's prompts: one user turn each
    forced = train(home, chats, "--dry-run", "--json", "--format", "text")
    text = json.loads(forced.stdout)
    assert text["form"] == "text" and text["key"] != _dry(home, chats)["key"]


def test_a_second_training_of_the_same_name_at_once_is_exit_75(home: Path, data: Path) -> None:
    from batch.cache.lock import JobLock

    with JobLock(home / "locks", "train-me--fruit-student"):  # as a training in progress holds it
        result = train(home, data)
    assert "--name: me/fruit-student is being trained by another process" in \
        one_line_error(result, 75)
