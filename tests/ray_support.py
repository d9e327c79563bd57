"""A real Ray cluster for the tests: one head node on 127.0.0.1, token authentication
on, started once per session and stopped after it.

Everything stays on loopback: with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (set for the
head, the test process and the commands it starts) Ray's node address is 127.0.0.1
instead of the machine's network address. Token authentication is what a real
cluster has: the token lives in a file of the session's, named by
RAY_AUTH_TOKEN_PATH, never in ~/.ray.

Where Linux lets it (root or user namespaces), the head runs in a mount namespace of
its own with an empty tmpfs over `hidden`: a directory the test process sees and the
cluster's workers do not, as a driver's local disk is to a remote cluster.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 300.0


@dataclass
class HeadNode:
    address: str  # 127.0.0.1:PORT
    hidden: Path | None  # seen by the test process, not by the workers (None: not possible)
    environment: dict[str, str]  # what a client of this cluster needs
    process: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path

    def stop(self) -> None:
        """Stop the head and every process it started: they share its process group,
        and GCS and raylet outlive a SIGTERM, so the group gets a SIGKILL soon after it
        (nothing of a throwaway test cluster needs saving)."""
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:  # the group is gone already
                break
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        self.process.wait(timeout=60)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _can_hide() -> bool:
    """Whether this process may make a mount namespace and mount a tmpfs in it."""
    probe = ["unshare", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def client_environment(work: Path) -> dict[str, str]:
    """What every Ray client of the test cluster needs, with a fresh token in `work`.
    Ray reads it when it is first imported, and vLLM imports Ray, so the session
    sets it before any test runs (tests/conftest.py)."""
    work.mkdir(parents=True, exist_ok=True)
    token = work / "ray-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}


def start_cluster(work: Path, environment: dict[str, str], *, cpus: int = 2,
                  attempts: int = 3) -> HeadNode:
    """A head node, tried again if it does not come up: `ray start` gives its raylet a
    fixed 30 s to register, which a loaded 2-core machine can overrun."""
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(work / f"attempt-{attempt}", environment, cpus)
        except RuntimeError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _start_once(work: Path, environment: dict[str, str], cpus: int) -> HeadNode:
    work.mkdir(parents=True, exist_ok=True)
    # Ray's socket paths must stay short: a directory of its own directly under /tmp.
    temp_dir = Path(tempfile.mkdtemp(prefix="alm-ray-", dir="/tmp"))
    port = _free_port()
    ray = str(Path(sys.executable).with_name("ray"))
    head = [ray, "start", "--head", "--block", "--port", str(port), "--num-cpus", str(cpus),
            "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
            "--disable-usage-stats", "--temp-dir", str(temp_dir)]
    hidden = None
    if _can_hide():
        hidden = work / "driver-only"
        hidden.mkdir(exist_ok=True)
        head = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"',
                str(hidden), *head]
    log = work / "ray-head.log"
    with log.open("wb") as fh:
        process = subprocess.Popen(head, env={**os.environ, **environment}, stdout=fh,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    cluster = HeadNode(f"127.0.0.1:{port}", hidden, environment, process, temp_dir, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"the test Ray cluster did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return cluster
