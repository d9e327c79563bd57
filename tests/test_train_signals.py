"""Stopping `almanac train` with SIGTERM, as cron timeouts and `systemctl stop` do: the
step under way ends, a checkpoint is saved, the process exits 143 with one line saying
where, nothing is registered; the same command then resumes from the checkpoint and
finishes the training it began. The stop needs a real process; the resume runs here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.engine_support import TINY_MODEL
from tests.test_train import FAST, register, show, train
from tests.train_support import curated_set

STEPS = 12


def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes_from_it(
        home: Path, tmp_path: Path, tiny_model: Path) -> None:
    register(home, tiny_model, TINY_MODEL)
    data = curated_set(home / "predictions", tmp_path / "data")
    args = ["--steps", str(STEPS), "--batch-size", "2"]
    command = [sys.executable, "-m", "almanac", "--home", str(home), "train", "--base", TINY_MODEL,
               "--data", str(data), "--name", "me/fruit-student", *FAST, *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # progress lines, as cron sees them: the first step's first
            seen.append(line)
            if f"step 1/{STEPS}" in line:
                break
        else:
            raise AssertionError("training never reported its first step: " + "".join(seen))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert out == "" and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "me/fruit-student: stopped by SIGTERM at step " in last and "checkpoint saved in" in last
    step = int(last.split(" at step ")[1].split("/")[0])
    assert 1 <= step < STEPS
    checkpoints = list((home / "training").glob(f"*/checkpoint-{step}"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "trainer_state.json").is_file()
    assert show(home, TINY_MODEL)["adapters"] == []  # nothing registered

    resumed = train(home, data, "--json", *args)  # the same settings as the stopped one
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(resumed.stdout)
    assert (report["status"], report["steps"], report["resumed_from_step"]) == \
        ("trained", STEPS, step)
    assert f"resuming from step {step}" in resumed.stderr
    assert show(home, TINY_MODEL)["adapters"] == ["me/fruit-student"]
    assert not checkpoints[0].parent.exists()  # trained and registered: the checkpoint goes
