"""Running on a Ray cluster: where the cluster is (`--ray ADDRESS`), and how a job's
engine replicas are laid out on it (the job's `[ray]` table). Neither imports Ray:
both are checked where they enter, before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batch.run.spec.errors import SpecError
from batch.run.spec.settings import check_section
from schemas.errors import AlmanacError, UsageError

LOCAL = "local"  # a throwaway cluster on this machine, started and stopped by Almanac
AUTO = "auto"  # the cluster this machine is a node of (Ray's own lookup)
DEFAULT_PORT = 6379  # Ray's GCS port
CLIENT_SCHEME = "ray://"
_HOST_PORT = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))"
                        r"(?::(?P<port>\d{1,5}))?$")


class ClusterError(AlmanacError):
    """A Ray cluster that cannot be used as asked: Ray not installed, the cluster out of
    reach or refusing us, the model out of its workers' sight. Exit 1; the message says
    what to do, and nothing of the run has been written."""

    title = "ray"


@dataclass(frozen=True)
class RayAddress:
    """A cluster address as Ray takes it: `local`, `auto`, `HOST[:PORT]` (the head's
    GCS, from a node of the cluster) or `ray://HOST[:PORT]` (Ray Client, from anywhere)."""

    text: str  # what ray.init gets (`local` is started instead)
    host: str | None = None  # None for `local` and `auto`
    port: int | None = None

    @classmethod
    def parse(cls, raw: str) -> RayAddress:
        text = raw.strip()
        if text.lower() in (LOCAL, AUTO):
            return cls(text.lower())
        client = text.lower().startswith(CLIENT_SCHEME)
        rest = text[len(CLIENT_SCHEME):] if client else text
        found = _HOST_PORT.match(rest)
        port = int(found["port"]) if found and found["port"] else None
        if not found or (port is not None and not 0 < port < 65536):
            raise UsageError(f"--ray: {raw!r} is not a Ray address: use auto, local, HOST:PORT "
                             "(the head node's GCS port, 6379 by default) or ray://HOST:10001")
        host = found["ipv6"] or found["host"]
        port = port or (10001 if client else DEFAULT_PORT)
        shown = f"[{host}]" if found["ipv6"] else host
        return cls(f"{CLIENT_SCHEME if client else ''}{shown}:{port}", host, port)

    @property
    def local(self) -> bool:
        return self.text == LOCAL

    @property
    def client(self) -> bool:
        return self.text.startswith(CLIENT_SCHEME)

    @property
    def loopback(self) -> bool:
        """A cluster on this machine's loopback: its node address is 127.0.0.1, and a
        driver here must say so (Ray would otherwise look for it on the network address)."""
        return self.local or self.host in ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class RaySettings:
    """A job's `[ray]` table: how many engine replicas, what each one holds, and how
    rows travel to them. Engine options stay in `[engine]` and mean the same there."""

    replicas: int = 1
    batch_size: int = 64  # rows per batch a replica takes: also what a driver crash can lose
    max_concurrent_batches: int = 8  # batches one replica works on at once (Ray's default)
    cpus_per_replica: float = 1.0
    # None: as many GPUs as the engine's tensor x pipeline parallel size on a cluster that
    # has GPUs, none on one that has not (vLLM's CPU build).
    gpus_per_replica: float | None = None
    accelerator_type: str | None = None  # e.g. "A10G": replicas only on nodes of that kind

    def __post_init__(self) -> None:
        check_section("ray", {k: v for k, v in self.__dict__.items() if v is not None})

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> RaySettings:
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise SpecError(f"{unknown[0]}: not a [ray] setting")
        values = dict(raw)
        for name in ("cpus_per_replica", "gpus_per_replica"):
            if values.get(name) is not None:
                values[name] = float(values[name])
        return cls(**values)

    def gpus(self, workers: int, cluster_gpus: float) -> float:
        """GPUs one replica reserves, for an engine of `workers` parallel workers."""
        if self.gpus_per_replica is not None:
            return self.gpus_per_replica
        return float(workers) if cluster_gpus > 0 else 0.0

    def bundles(self, workers: int, cluster_gpus: float) -> list[dict[str, float]]:
        """One placement-group bundle per engine worker (tensor x pipeline parallel),
        sharing the replica's CPUs and GPUs."""
        cpus, gpus = self.cpus_per_replica / workers, self.gpus(workers, cluster_gpus) / workers
        bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
        return [dict(bundle) for _ in range(workers)]
