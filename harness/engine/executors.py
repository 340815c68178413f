"""Executors run graph nodes: inline (in this process, for debugging) or as Ray tasks.

    ex = RayExecutor(address=None)           # a local cluster with this machine's CPUs; or "auto", "host:6379"
    h = ex.submit(node, deps, ctx, num_cpus=1, resources={})
    for handle, result in ex.wait(): ...

Both give the same `StageResult`s for the same nodes. A Ray task whose worker or node dies is
submitted again (up to `max_retries` times) and its result counts the attempts; one that still fails
becomes a failed result of kind `infrastructure`. On a cluster of several nodes the outputs a stage
names travel with its result through Ray's object store (harness/stages/travel.py).
"""

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from eibutil import UserError
from harness.stages.base import StageResult
from harness.stages.node import run_node
from harness.stages.registry import REGISTRY


class InlineExecutor:
    name = "inline"
    parallel = 1

    def __init__(self):
        self._done: list = []
        self.inline_s = 0.0  # stage time spent inside submit(): the driver's own time excludes it

    def submit(self, node, deps, ctx, num_cpus=1, resources=None):
        t0 = time.perf_counter()
        # the same thread count a Ray task would get, so both executors compute the same numbers
        res = run_node(node, deps, replace(ctx, num_cpus=max(1, num_cpus)))
        res.wall_s = time.perf_counter() - t0
        self.inline_s += res.wall_s
        self._done.append((node.key, res))
        return node.key

    def wait(self, timeout_s: float = 1.0):
        done, self._done = self._done, []
        return done

    def close(self):
        pass


def _remote_run(node, deps, ctx, inputs, *dep_blobs):
    """A Ray task: place what travelled here, run the node, and pack what it names for its consumers."""
    from harness.stages import travel

    if not ctx.travel:
        return run_node(node, deps, ctx), {}
    cfg = node.payload.config
    try:
        for blobs in dep_blobs:
            travel.unpack(blobs)
        local, sources = travel.arrive_inputs(cfg, inputs, Path(cfg.cache_dir))
    except Exception as e:  # a corrupted or unplaceable arrival fails this stage, not the sweep
        return StageResult(node.stage, node.variant_id, "failed", {"node_key": node.key}, f"{type(e).__name__}: {e}",
                           getattr(e, "error_kind", "infrastructure")), {}
    here = replace(node, payload=replace(node.payload, config=local))
    res = run_node(here, deps, replace(ctx, sources=sources, model_ref=str(cfg.teacher.model)))
    return res, (travel.pack(REGISTRY[node.stage].paths(res.output)) if res.ok else {})


def _retriable(e: BaseException) -> bool:
    """A failure of the machinery, not of the stage (run_node turns the stage's own errors into results)."""
    import ray.exceptions as rex

    return isinstance(e, (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError, rex.ObjectLostError,
                          rex.OutOfMemoryError))


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, as a user error, when nothing listens at a Ray address ("host:port" or
    "ray://host:port"); ray.init would otherwise wait and retry for minutes."""
    import socket

    from eibutil import UserError

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        port_n = int(port)
    except ValueError:
        raise UserError(f"--address {address}: expected host:port (or auto)") from None
    try:
        socket.create_connection((host or "127.0.0.1", port_n), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"--address {address}: no Ray cluster answers there ({e.strerror or e})") from None


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_retries: int = 2):
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address and (os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(os.path.expanduser("~/.ray/auth_token"))):
            # Ray >= 2.59 starts clusters with token authentication; a client sends the token (RAY_AUTH_TOKEN or
            # ~/.ray/auth_token) only in token mode, read when ray is imported.
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        self.address, self.num_cpus, self.ray, self.setup_s = address, num_cpus or os.cpu_count(), None, 0.0
        self._max_retries = max_retries
        self._refs: dict = {}  # ObjectRef -> (node, deps, ctx, num_cpus, resources, attempt, started, blob ref)
        self._blobs: dict = {}  # node key -> ObjectRef of the outputs it named (travel)
        self._inputs: dict = {}  # config inputs -> ObjectRef of the files they name (travel)
        self.travel = False
        if address:
            self._start()  # the cluster's size is known only once connected
        else:
            self.parallel = self.num_cpus  # a local cluster starts with the first submitted stage (never, when all is cached)

    def _start(self) -> None:
        t0 = time.perf_counter()
        if self.address and self.address != "auto":
            check_reachable(self.address)
        import ray

        kwargs = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            if not self.address:
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"--address {self.address}: no Ray cluster to join ({first[:160]}); start one with `ray "
                            "start --head`") from None
        self.ray = ray
        self.parallel = int(ray.cluster_resources().get("CPU", 1))
        alive = [n for n in ray.nodes() if n.get("Alive")]
        self.node_cpus = int(max((n["Resources"].get("CPU", 0) for n in alive), default=1)) or 1
        self.travel = len(alive) > 1  # several nodes: assume no shared disk, outputs travel
        self._task = ray.remote(_remote_run)
        self.node_resources = [set(n["Resources"]) for n in alive]
        self.setup_s += time.perf_counter() - t0

    def check_placement(self, node, resources: dict | None) -> None:
        """A task no node can take would wait forever in ray.wait (Ray says so only in its log files): refuse it
        with one line naming the device (or stage) and the resource."""
        missing = [r for r in (resources or {}) if not any(r in have for have in self.node_resources)]
        if missing:
            who = f"device {node.payload.device!r}" if node.payload.device else f"stage {node.stage!r}"
            custom = sorted({r for have in self.node_resources for r in have} - {"CPU", "GPU", "memory", "object_store_memory"}
                            - {r for have in self.node_resources for r in have if r.startswith(("node:", "accelerator_type:"))})
            raise UserError(f"{who} needs the Ray resource {missing[0]!r} (inventory ray_resource or cluster.resources), "
                            "which no node "
                            f"of the cluster has (custom resources there: {', '.join(custom) or 'none'})")

    def _travelling(self, node, deps) -> list:
        """The object refs of the node's inputs: its config's files and each dependency's outputs (a dependency
        the driver found cached is packed here, from this node's disk)."""
        from harness.stages import travel

        cfg = node.payload.config
        ikey = (str(cfg.task.train_file), str(cfg.task.dev_file), str(cfg.teacher.model))
        if ikey not in self._inputs:
            self._inputs[ikey] = self.ray.put(travel.pack_inputs(cfg))
        refs = [self._inputs[ikey]]
        for key, stage in zip(node.deps, node.dep_stages):
            if key not in self._blobs:
                self._blobs[key] = self.ray.put(travel.pack(REGISTRY[stage].paths(deps[key])))
            refs.append(self._blobs[key])
        return refs

    def submit(self, node, deps, ctx, num_cpus=1, resources=None, attempt=1, started=None):
        if self.ray is None:
            self._start()
        self.check_placement(node, resources)
        opts = {"num_cpus": num_cpus, "max_retries": 0, "retry_exceptions": False, "num_returns": 2}  # retries are counted here
        if resources:
            opts["resources"] = resources
        moving = self._travelling(node, deps) if self.travel else [None]
        ref, blobs = self._task.options(**opts).remote(node, deps, replace(ctx, num_cpus=max(1, num_cpus), travel=self.travel),
                                                       *moving)
        self._refs[ref] = (node, deps, ctx, num_cpus, resources, attempt, started or time.perf_counter(), blobs)
        return node.key

    def wait(self, timeout_s: float = 1.0):
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout_s)
        out = []
        for ref in ready:
            node, deps, ctx, num_cpus, resources, attempt, t0, blobs = self._refs.pop(ref)
            try:
                res = self.ray.get(ref)
                self._blobs[node.key] = blobs
            except Exception as e:  # the worker died, or Ray failed
                if _retriable(e) and attempt <= self._max_retries:
                    self.submit(node, deps, ctx, num_cpus, resources, attempt + 1, t0)
                    continue
                res = StageResult(node.stage, node.variant_id, "failed", {"node_key": node.key},
                                  f"{type(e).__name__} (attempt {attempt}): {str(e)[:500]}", "infrastructure",
                                  time.perf_counter() - t0)
            res.attempts = attempt
            out.append((node.key, res))
        return out

    def busy(self) -> int:
        return len(self._refs)

    def close(self):
        if self.ray is not None:
            self.ray.shutdown()


def make_executor(kind: str, address: str | None = None):
    if kind == "inline":
        return InlineExecutor()
    if kind == "ray":
        return RayExecutor(address=address)
    raise ValueError(f"unknown executor {kind!r}; allowed: ray, inline")
