"""Every benchmark, in order: `python -m bench [--only NAME] [--smoke] [--model REPO_ID]`.

Runs engine, adapters, ray, catalog, discovery, lookups, openai, data, tui, shell and train
(each `python -m bench.<name>`, in a process of its own so that one's imports and memory
cannot slow another), skipping any whose module is missing. Each prints its table
on stderr and writes bench/results/<name>.json (`--smoke`: small sizes, answers
checked, nothing written).
Before timing, each full benchmark waits, up to 30 minutes, for the machine's
1-minute load average to drop below 0.7 (`--no-wait` skips that) and records what
it saw: other work on a 2-core machine skews every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ("engine", "adapters", "ray", "catalog", "discovery", "lookups", "openai", "data",
              "tui", "shell", "train")
TAKES_MODEL = {"engine", "train"}
# These wait for a quiet machine themselves (after their set-up, and recording the
# wait in their results); for the others this command waits before starting them.
TAKES_QUIET = {"engine", "adapters", "ray", "catalog", "discovery", "lookups", "openai", "data",
               "shell", "train"}
QUIET_LOAD = 0.7  # 1-minute load average below which a 2-core machine counts as quiet


def available(name: str) -> bool:
    return importlib.util.find_spec(f"bench.{name}") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only this benchmark ({', '.join(BENCHMARKS)}); repeatable")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes for correctness only; nothing is recorded")
    parser.add_argument("--model", metavar="REPO_ID",
                        help="the engine benchmark's model: a Hub repo id, catalog ref or directory "
                             "(default: a tiny generated model)")
    parser.add_argument("--no-wait", action="store_true",
                        help="do not wait for a quiet machine before timing")
    args = parser.parse_args(argv)
    from bench.machine import wait_for_quiet

    wait = not (args.smoke or args.no_wait)
    failed: list[str] = []
    for name in args.only or BENCHMARKS:
        if not available(name):
            print(f"bench: {name}: skipped (no bench/{name}.py)", file=sys.stderr)
            continue
        cmd = [sys.executable, "-m", f"bench.{name}"]
        if args.smoke:
            cmd.append("--smoke")
        if args.model and name in TAKES_MODEL:
            cmd += ["--model", args.model]
        if wait and name in TAKES_QUIET:
            cmd += ["--quiet-below", str(QUIET_LOAD)]
        elif wait:
            quiet = wait_for_quiet(QUIET_LOAD)
            if not quiet["quiet"]:
                print(f"bench: {name}: the machine is still busy (load {quiet['load']}) after "
                      f"{quiet['waited_s']:.0f} s; running anyway", file=sys.stderr)
        print(f"bench: {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        began = time.perf_counter()
        # Each benchmark writes its figures to bench/results/; its stdout copy is not needed here.
        code = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).returncode
        print(f"bench: {name}: {'ok' if code == 0 else f'failed (exit {code})'} in "
              f"{time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
