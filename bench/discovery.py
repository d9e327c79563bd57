"""How fast discovery imports: `python -m bench.discovery [--models N] [--smoke]`.

Serves N synthetic models (default 10,000) in the Hub's API shapes from the local Hub
stand-in (tests/hub_standin.py), in a process of its own on 127.0.0.1, and runs the real
discovery (`catalog.hubsync.discover`: the listing paged through the stand-in as
`HfApi.list_models` pages it, each item checked by catalog.hubjson, mapped by catalog.hub
and written in batches by catalog.importer)
into a freshly initialized catalog, then once more over the same models (everything
already there: the refresh path). Reports models per second for both, with the time
spent waiting on the listing versus mapping and writing.

Target: the first import ≥ 500 models/s. Prints a table on stderr and the figures as JSON
on stdout, and writes them to bench/results/discovery.json (`--smoke`: 1,000 models,
the catalog checked afterwards, nothing recorded unless `--output` says where).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import add_output_options, load_average, machine, report, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "discovery.json"
TARGET_PER_S = 500.0

SERVE = """
import sys, time
from tests.hub_standin import HubStandIn, Served, synthetic_models
hub = HubStandIn(record=False)
hub.add(*synthetic_models(int(sys.argv[1])))
with Served(hub) as served:
    print(served.url, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
"""


def _serve(n: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(n)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"the Hub stand-in did not start: {url!r}")
    return proc, url


def _discover(home: Path, url: str, n: int) -> dict[str, Any]:
    from huggingface_hub import HfApi

    from catalog.db import open_catalog
    from catalog.hubquery import DiscoverQuery
    from catalog.hubsync import discover

    catalog = open_catalog(home / "catalog.db")
    try:
        began = time.perf_counter()
        result = discover(catalog, HfApi(endpoint=url, token=False), DiscoverQuery(task=None, limit=n))
        seconds = time.perf_counter() - began
    finally:
        catalog.close()
    imported = len(result.outcomes)
    return {"models": imported, "seconds": round(seconds, 2), "per_s": round(imported / seconds, 1),
            "added": result.count("added"), "updated": result.count("updated"),
            "unchanged": result.count("unchanged"), "refused": len(result.refused)}


def _check(home: Path, n: int) -> None:
    from catalog.db import open_catalog
    from catalog.filters import ModelFilter
    from catalog.search import count_models

    catalog = open_catalog(home / "catalog.db", readonly=True)
    try:
        with catalog.sessions() as s:
            hub = count_models(s, ModelFilter(source="hub"))
    finally:
        catalog.close()
    if hub != n:
        raise AssertionError(f"{hub} Hub models in the catalog, {n} served")


def _table(r: dict[str, Any]) -> str:
    lines = [f"discovery of {r['served']:,} models from the local Hub stand-in",
             f"{'run':<28}{'models':>9}{'seconds':>10}{'models/s':>11}{'target':>10}"]
    for name, run in (("first import (all added)", r["first"]), ("again (all present)", r["again"])):
        target = f">= {TARGET_PER_S:.0f}" if name.startswith("first") else ""
        lines.append(f"{name:<28}{run['models']:>9,}{run['seconds']:>10.2f}{run['per_s']:>11.0f}{target:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.discovery", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--smoke", action="store_true", help="1,000 models, checked, nothing recorded")
    add_output_options(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.models = min(args.models, 1000)
    output = args.output if args.output or args.smoke else RESULTS
    results: dict[str, Any] = {"benchmark": "discovery", "at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "smoke": args.smoke, "served": args.models, "target_per_s": TARGET_PER_S}
    server, url = _serve(args.models)
    try:
        with tempfile.TemporaryDirectory(prefix="almanac-bench-discovery-") as tmp:
            home = Path(tmp) / "home"
            subprocess.run([sys.executable, "-m", "almanac", "--home", str(home), "init"], cwd=ROOT,
                           check=True, capture_output=True)
            if args.quiet_below is not None:
                results["quiet"] = wait_for_quiet(args.quiet_below)
            results["load_average"] = {"start": load_average()}
            results["first"] = _discover(home, url, args.models)
            results["again"] = _discover(home, url, args.models)
            results["load_average"]["end"] = load_average()
            results["db_bytes"] = (home / "catalog.db").stat().st_size
            if args.smoke:
                _check(home, args.models)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=60)
    results["met"] = results["first"]["per_s"] >= TARGET_PER_S
    results["machine"] = machine("sqlalchemy", "huggingface_hub", "almanac")
    report(results, _table(results), output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
