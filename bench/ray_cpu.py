"""Where a run's CPU time goes, process by process (bench.ray's breakdown).

On a machine of two cores the cores are what a run waits for, so a run's breakdown is
the CPU seconds each kind of process took while it ran: the driver (the `almanac run`
process: planning, tokenizing, Ray Data's executor, writing shards; in-process, the
engine too), the replica (the Ray actor that runs vLLM's front end, and the vLLM engine
core process it starts), Ray's own processes (raylet, GCS, idle and other workers,
agents), and every other process on the machine (other users' work). psutil samples
every process twice a second; a process's CPU between two samples is counted under what
it was then (a Ray worker changes its title from `ray::IDLE` when it becomes an actor).
/proc/stat's totals say how busy the machine was, and how much the hypervisor took
(steal).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psutil

INTERVAL_S = 0.5


def _kind(proc: psutil.Process, drivers: set[int], cluster: set[int]) -> str:
    """What a process is: `cluster` holds the pids known to descend from the cluster's
    head (Ray's workers run in process groups of their own: only their ancestry says
    whose they are), and grows as they are found."""
    if proc.pid in drivers:
        return "driver"
    try:
        if proc.ppid() in drivers:
            return "driver's children"
        if proc.pid not in cluster:
            if not cluster & {p.pid for p in proc.parents()}:
                return "other processes"
            cluster.add(proc.pid)
        name = proc.name()
        title = " ".join(proc.cmdline())[:200]
    except (psutil.Error, ProcessLookupError):
        return "gone"
    if "EngineCore" in name or "EngineCore" in title:
        return "replica: vLLM engine core"
    if "VLLM::Worker" in name or "VLLM::Worker" in title:
        return "replica: vLLM worker (the model)"
    if title.startswith("ray::"):
        if "vLLM" in title or "LLM" in title:
            return "replica: Ray actor (vLLM front end)"
        if title.startswith("ray::IDLE"):
            return "ray: idle workers"
        return "ray: other workers (Ray Data tasks)"
    if name == "raylet" or "raylet" in title.split(" ", 1)[0]:
        return "ray: raylet"
    if name == "gcs_server" or "gcs_server" in title.split(" ", 1)[0]:
        return "ray: GCS"
    return "ray: agents and monitors"


def _proc_stat() -> dict[str, float]:
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return {"busy_s": (user + nice + system + irq + softirq) / tick,
            "idle_s": (idle + iowait) / tick, "steal_s": steal / tick}


class CpuAccount:
    """CPU seconds by kind of process between `start()` and `stop()`."""

    def __init__(self, drivers: set[int], head: int | None) -> None:
        self.drivers = drivers
        self._cluster = {head} if head is not None else set()
        self._seen: dict[tuple[int, float], float] = {}  # (pid, created) -> CPU seconds
        self._by_kind: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._began = time.monotonic()
        self._stat = _proc_stat()
        self._sample(baseline=True)

    def start(self) -> CpuAccount:
        self._thread.start()
        return self

    def _sample(self, *, baseline: bool = False) -> None:
        for proc in psutil.process_iter():
            try:
                key = (proc.pid, proc.create_time())
                times = proc.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            before = self._seen.get(key)
            self._seen[key] = used
            if baseline:
                continue
            if before is None:  # not there at the baseline: born during the run
                before = 0.0
            if used > before:
                kind = _kind(proc, self.drivers, self._cluster)
                self._by_kind[kind] = self._by_kind.get(kind, 0.0) + used - before

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self._sample()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self._began
        stat = _proc_stat()
        machine = {k: round(stat[k] - self._stat[k], 2) for k in stat}
        return {"wall_s": round(wall, 2), "cores": os.cpu_count(),
                "cpu_s": {k: round(v, 2) for k, v in sorted(self._by_kind.items(),
                                                             key=lambda kv: -kv[1])},
                "machine": machine}
