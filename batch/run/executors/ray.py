"""Generating what a run is missing on a Ray cluster, through Ray Data LLM.

The only module that imports `ray`. `RayExecutor` is the executor (batch.run.executors.
base) a runner gets for `--ray ADDRESS`. `RayCluster.connect` reaches a cluster (or
starts a throwaway one on this machine's loopback for `local`) and, when it cannot,
says in one line what to do. `generate` ships an engine group's requests, tokenized by
the driver (batch.run.executors.ray_requests), as Ray Data blocks to `ray.data.llm`'s
vLLM stage (`build_processor`), and writes the answers block by block as they come
back, through the run's shard writer: the records, keys and shards of an in-process
run. A driver that dies loses the rows not yet written; the next run plans them again.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.run.executors.base import (
    Executor,
    Placement,
    Share,
    Sink,
    apportion,
    stdout_to_stderr,
)
from batch.run.executors.ray_requests import (
    ANSWER_COLUMNS,
    PASSES,
    Endings,
    Outbox,
    load_tokenizer,
    write_answers,
)
from batch.run.executors.target import ENGINE_ENVIRONMENT, llm_kwargs
from batch.run.spec.ray_settings import ClusterError, RayAddress, RaySettings
from schemas.errors import UsageError

if TYPE_CHECKING:  # plain types for annotations
    from batch.run.candidates import Candidate, EngineGroup
    from batch.run.result import RunResult
    from batch.run.spec.job import JobSpec

log = logging.getLogger("almanac.batch")
REACH_TIMEOUT_S = 5.0
CHECK_TIMEOUT_S = 300.0  # a node's answer to "do you see these paths?"
INSTALL_HINT = "install Almanac's ray extra (pip install 'almanac[ray]'), or run without --ray"


class RayCluster:
    """A connection to a Ray cluster for the life of a runner; a `local` one is this
    process's own, and stops with it."""

    def __init__(self, address: RayAddress, temp_dir: Path | None) -> None:
        self.address, self._temp_dir = address, temp_dir

    @classmethod
    def connect(cls, address: RayAddress) -> RayCluster:
        _ray_environment(address)
        try:
            import ray
            import ray.data.llm  # Ray Data LLM and what its vLLM stage needs: fail now
        except ImportError as exc:
            raise ClusterError(f"Ray is not installed here ({exc}): {INSTALL_HINT}") from None
        temp_dir = None
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address.loopback:
            options["_node_ip_address"] = "127.0.0.1"
        if address.local:
            # A short private directory: Ray's socket paths must stay under 108 bytes, and
            # the cluster must not be the one `--ray auto` finds for anybody else.
            temp_dir = Path(tempfile.mkdtemp(prefix="almanac-ray-"))
            options.update(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                           _temp_dir=str(temp_dir))
        else:
            _reachable(address)
            options["address"] = address.text
        with _stderr_kept() as said, stdout_to_stderr():
            try:
                ray.init(**options)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError
                if temp_dir is not None:
                    shutil.rmtree(temp_dir, ignore_errors=True)
                raise ClusterError(_why_not(address, exc, said())) from None
        _quiet_ray_data()
        return cls(address, temp_dir)

    @property
    def resources(self) -> dict[str, float]:
        import ray

        return {k: float(v) for k, v in ray.cluster_resources().items()}

    def hardware(self, settings: RaySettings, workers: int) -> str:
        """The cluster and one replica's share of it, for the run record."""
        import ray

        nodes = [n for n in ray.nodes() if n["Alive"]]
        total = self.resources
        kinds = sorted({k.split(":", 1)[1] for n in nodes for k in n["Resources"]
                        if k.startswith("accelerator_type:")})
        gpus = f"{total.get('GPU', 0):g} GPU" + (f" ({', '.join(kinds)})" if kinds else "")
        bundle = settings.bundles(workers, total.get("GPU", 0.0))
        each = {k: sum(b.get(k, 0.0) for b in bundle) for k in ("CPU", "GPU")}
        share = ", ".join(f"{v:g} {k}" for k, v in each.items() if v)
        return (f"Ray cluster, {len(nodes)} node{'s' if len(nodes) != 1 else ''}: "
                f"{total.get('CPU', 0):g} CPU, {gpus}; {settings.replicas} "
                f"replica{'s' if settings.replicas != 1 else ''} of {share}")

    def warn_if_unplaceable(self, settings: RaySettings, workers: int) -> None:
        """Ray waits (for an autoscaler, say) rather than fail when no node can hold a
        replica: say so now, or the run would only seem stuck."""
        import ray

        need = {"CPU": settings.cpus_per_replica / workers,
                "GPU": settings.gpus(workers, self.resources.get("GPU", 0.0)) / workers}
        if settings.accelerator_type:
            need[f"accelerator_type:{settings.accelerator_type}"] = 0.001
        fits = any(all(n["Resources"].get(k, 0.0) >= v for k, v in need.items() if v)
                   for n in ray.nodes() if n["Alive"])
        if not fits:
            wanted = ", ".join(f"{v:g} {k}" for k, v in need.items() if v)
            log.warning("no node of the Ray cluster has %s for an engine worker now: the run "
                        "waits until one has (set [ray] cpus_per_replica / gpus_per_replica)",
                        wanted)

    def check_visible(self, paths: dict[str, str]) -> None:
        """Ask every node with CPUs whether it sees these directories ({path: what});
        one it does not see is a ClusterError naming it and the node."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not paths:
            return
        missing = ray.remote(num_cpus=0, max_retries=0)(_missing_there())
        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        asked = [missing.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(sorted(paths)) for n in nodes]
        try:
            answers = ray.get(asked, timeout=CHECK_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"the Ray cluster's nodes did not answer within "
                               f"{CHECK_TIMEOUT_S:.0f} s whether they see the model: "
                               "check `ray status` on the head") from None
        for node, gone in zip(nodes, answers, strict=True):
            for path, what in paths.items():
                if path in gone:
                    raise ClusterError(
                        f"the Ray workers on node {node['NodeManagerAddress']} cannot see the "
                        f"{what} directory {path}: put it where every node sees it at the same "
                        "path (a shared filesystem), or use a Hub id that the nodes download")

    def close(self) -> None:
        """Disconnect (and, for `local`, stop the cluster this process started)."""
        import ray

        with stdout_to_stderr():
            ray.shutdown()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


class RayExecutor(Executor):
    """Ray Data LLM's vLLM stage on a cluster: reached once per runner (at the first job
    with rows to generate), checked for each job, left (or, for `local`, stopped) when
    the runner closes."""

    def __init__(self, address: RayAddress) -> None:
        self.address = address
        self._cluster: RayCluster | None = None
        self._settings = RaySettings()

    def prepare(self, spec: JobSpec, candidates: list[Candidate]) -> Placement:
        """What the cluster cannot run is refused before anything is written."""
        if spec.sampling.n > 1:
            raise UsageError(f"{spec.path}: sampling.n: {spec.sampling.n} completions per row "
                             "cannot run on Ray: Ray Data's vLLM stage returns one per row "
                             "(run without --ray)")
        if self._cluster is None:
            self._cluster = RayCluster.connect(self.address)
        paths: dict[str, str] = {}
        for c in candidates:
            if os.path.isdir(c.model.load):
                paths.setdefault(c.model.load, "model")
            if c.adapter is not None and os.path.isdir(c.adapter.path):
                paths.setdefault(c.adapter.path, f"adapter {c.adapter_ref}")
        self._cluster.check_visible(paths)
        options = candidates[0].engine.as_dict()
        workers = int(options.get("tensor_parallel_size", 1)) * \
            int(options.get("pipeline_parallel_size", 1))
        self._cluster.warn_if_unplaceable(spec.ray, workers)
        self._settings = spec.ray
        return Placement(self._cluster.hardware(spec.ray, workers), "ray", spec.ray.replicas)

    def generate(self, group: EngineGroup, shares: list[Share], out: Sink,
                 result: RunResult) -> None:
        """Answer every share's requests on the cluster's replicas; each answer is
        written as its block arrives."""
        from ray.data.llm import vLLMEngineProcessorConfig

        if self._cluster is None:
            raise RuntimeError("generate before prepare: the cluster is not reached yet")
        settings, target = self._settings, group.target
        mark = time.perf_counter()
        tokenizer, endings = load_tokenizer(target)  # as an in-process engine's start loads it
        clock = [time.perf_counter() - mark, 0.0]  # until the first block of each pass, and after
        gpus = self._cluster.resources.get("GPU", 0.0)
        kwargs = llm_kwargs(target, on_cpu=gpus == 0)
        model_source = kwargs.pop("model")
        if kwargs.get("revision") is None:
            kwargs.pop("revision")
        workers = int(kwargs.get("tensor_parallel_size", 1)) * \
            int(kwargs.get("pipeline_parallel_size", 1))
        # As vllm.LLM in this process has it: no periodic statistics from the replicas'
        # engines, which Ray's stage would otherwise log after every batch.
        kwargs.setdefault("disable_log_stats", True)
        config = vLLMEngineProcessorConfig(
            model_source=model_source, engine_kwargs=kwargs, batch_size=settings.batch_size,
            # A fixed pool: an integer is a pool that starts one replica and adds the rest
            # under backlog, each start then costing the running replicas their CPU.
            concurrency=(settings.replicas, settings.replicas),
            max_concurrent_batches=settings.max_concurrent_batches,
            placement_group_config={"bundles": settings.bundles(workers, gpus)},
            accelerator_type=settings.accelerator_type,
            # The driver sends token ids and keeps vLLM's own text: no stage of Ray's may
            # template, tokenize or detokenize again.
            chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
            log_engine_metrics=False, should_continue_on_error=True,
        )
        work = [0] * len(shares)
        try:
            for picks in PASSES:
                outbox = Outbox(shares, tokenizer, target, model_source, picks,
                                settings.batch_size)
                if _one_pass(config, outbox, endings, shares, out, result, work, clock):
                    result.engine_starts += settings.replicas
                    result.engine_started = True
        finally:
            start_s, elapsed = clock
            result.phases.engine_start_s += start_s
            result.engine_start_s = (result.engine_start_s or 0.0) + start_s
            result.generation_s = (result.generation_s or 0.0) + elapsed
            apportion(shares, work, elapsed, start_s, group.index)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _one_pass(config: Any, outbox: Outbox, endings: Endings, shares: list[Share], out: Sink,
              result: RunResult, work: list[int], clock: list[float]) -> bool:
    """Ship one pass's rows and write the answers as blocks come back, adding to
    `clock` the seconds until the first block (the replicas' start and their first
    batch) and after it. False if no row was shipped."""
    import ray
    from ray.data.llm import build_processor

    phases = result.phases
    mark, inside = time.perf_counter(), phases.tokenize_s + phases.record_s + phases.write_s
    blocks = [ray.put(table) for table in outbox.blocks(out, result)]
    # What the outbox timed itself (tokenizing, refusals written) is not shipping.
    phases.ship_s += time.perf_counter() - mark - \
        (phases.tokenize_s + phases.record_s + phases.write_s - inside)
    if not blocks:  # nothing of this pass, or every request refused before shipping
        return False
    began = time.perf_counter()
    first: float | None = None
    try:
        with stdout_to_stderr():
            processor = build_processor(config)
            dataset = processor(ray.data.from_arrow_refs(blocks)).select_columns(ANSWER_COLUMNS)
            batches = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
            for block in _waited_on(iter(batches), result):
                first = first or time.perf_counter()
                write_answers(block, outbox, endings, shares, out, result, work)
    finally:
        ended = time.perf_counter()
        clock[0] += (first or ended) - began
        clock[1] += ended - (first or ended)
    return True


def _waited_on(blocks: Iterator[Any], result: RunResult) -> Iterator[Any]:
    """The blocks, adding the time spent waiting for each but the first to `generate_s`
    (the wait for the first is the replicas' start, timed by the caller)."""
    block = next(blocks, None)
    while block is not None:
        yield block
        mark = time.perf_counter()
        block = next(blocks, None)
        result.phases.generate_s += time.perf_counter() - mark


def _missing_there() -> Any:
    # Defined here, not at module level: Ray then ships the function itself to the
    # nodes, which need not have Almanac installed.
    def missing(paths: list[str]) -> list[str]:
        import os

        return [p for p in paths if not os.path.isdir(p)]

    return missing


def _ray_environment(address: RayAddress) -> None:
    """Ray reads these when it is imported and when it starts a cluster."""
    # Ray Data LLM imports vLLM on the driver: its logs go to stderr, as the engine's
    # (the replicas' engines keep their own process: Ray's vLLM stage runs vLLM async).
    for name, value in ENGINE_ENVIRONMENT.items():
        if name != "VLLM_ENABLE_V1_MULTIPROCESSING":
            os.environ.setdefault(name, value)
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")  # each ray.init() resets it
    if address.loopback:
        # Otherwise Ray binds a cluster on this machine to its network address, and a
        # driver looks for its node there rather than on 127.0.0.1.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address.local and "RAY_AUTH_MODE" not in os.environ:
        # The throwaway cluster takes a token of its own (the processes it starts inherit
        # it), rather than writing one into the user's ~/.ray as a plain ray.init does.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _reachable(address: RayAddress) -> None:
    """Refuse an address nothing answers at, at once: ray.init waits minutes on it."""
    if address.host is None or address.port is None:
        return
    try:
        with socket.create_connection((address.host, address.port), timeout=REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot reach a Ray cluster at {address.text} ({reason}): start one "
            "(`ray start --head`), check the address (`ray status` on the head prints it), "
            "or use --ray local") from None


def _why_not(address: RayAddress, exc: Exception, said: str) -> str:
    """One line for a failed ray.init: what went wrong and what to do."""
    text = f"{exc} {said}"
    if "InvalidAuthToken" in text or "Unauthenticated" in text or "AuthenticationError" in text:
        return (f"the Ray cluster at {address.text} asks for an authentication token: set "
                "RAY_AUTH_MODE=token and the token in RAY_AUTH_TOKEN, a file named by "
                "RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token (`ray get-auth-token` on the head)")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if address.text == "auto":
        return (f"no Ray cluster found for --ray auto ({first}): start one (`ray start "
                "--head`), give its address, or use --ray local")
    if "version" in first.lower():
        return f"{first}: the driver needs the cluster's Ray and Python versions"
    return f"cannot start Ray at {address.text}: {first}"


@contextmanager
def _stderr_kept() -> Iterator[Any]:
    """Keep what Ray's native code writes on stderr while it connects (retries, auth
    refusals) to explain a failure in one line; on success it goes on to stderr after
    all (the run's engine log, unless -v)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield lambda: kept.seek(0) or kept.read().decode("utf-8", "replace")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        kept.seek(0)
        if leftover := kept.read().decode("utf-8", "replace").strip():
            print(leftover, file=sys.stderr, flush=True)


def _quiet_ray_data() -> None:
    """Ray Data's progress bars and per-dataset logs would interleave with Almanac's own
    progress on stderr; its warnings and errors still show."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    logging.getLogger("ray").setLevel(logging.WARNING)
