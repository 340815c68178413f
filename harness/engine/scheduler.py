"""Walks the stage graph: submits every node whose inputs are ready, leases a device for each
measurement, records each result the moment it arrives, and keeps going past failures.

    summary = Scheduler(nodes, executor, store, run_id, pool, inventory, errors_dir).run(resumed={...})

A node whose input failed gets a `skipped` row naming the failed stage. A measurement that fails for
an infrastructure reason is retried (up to MAX_ATTEMPTS) on the device the pool gives next: the same
one after a health check, or a sibling once it is quarantined.
"""

import logging
import os
import time

from eibutil.logs import quiet
from harness.engine.leasing import BUSY, NONE, Leasing
from harness.stages import registry as reg
from harness.stages.base import StageResult
from harness.stages.registry import REGISTRY
from harness.stages.state import NodeState, Readiness, RunContext

log = logging.getLogger(__name__)

PIN = 0.001  # the share of a custom resource a pinned task asks for (the resource marks a node, it counts nothing)


def placement(node, spec=None) -> dict | None:
    """Ray resources that pin the node: its device's node (inventory `ray_resource`), or the stage's
    node from the config's `cluster.resources`; None: anywhere."""
    cluster = getattr(node.payload.config, "cluster", None)
    where = getattr(spec, "ray_resource", None) or node.payload.pin or (cluster.resources.get(node.stage) if cluster else None)
    return {where: PIN} if where else None


class Scheduler:
    def __init__(self, nodes, executor, store, run_id, pool, inventory, errors_dir, record_extra=None):
        self.nodes = {n.key: n for n in nodes}
        self.order = [n.key for n in nodes]
        self.executor, self.store, self.run_id, self.pool = executor, store, run_id, pool
        self.inventory, self.errors_dir = inventory, errors_dir
        self.record_extra = record_extra  # (node, result) -> measurement row or None
        self.state: dict[str, NodeState] = {}  # no entry: pending
        self.outputs: dict[str, dict] = {}
        self.leases = Leasing(pool)
        self.counts = {"done": 0, "cached": 0, "resumed": 0, "failed": 0, "skipped": 0, "invalid": 0, "retried": 0}
        self.t0 = time.perf_counter()
        self.overhead_s = 0.0  # time the driver spends on its own work (not waiting for stages)
        self.cpus = getattr(executor, "parallel", 1) or os.cpu_count() or 1
        self._setup0 = getattr(executor, "setup_s", 0.0)  # a cluster connected before the loop is not inside it

    # display ----------------------------------------------------------------------------------
    def _progress(self, node, res: StageResult) -> None:
        finished = sum(1 for s in self.state.values() if s.finished)
        where = res.output.get("device") or node.payload.target or ""
        line = (f"[{finished:3d}/{len(self.nodes)} {time.perf_counter() - self.t0:6.0f}s] {node.stage:10s} "
                f"{(node.variant_id or 'shared')[:16]:16s} {where[:12]:12s} {res.status:8s} {res.wall_s:7.1f}s")
        if res.error:
            line += f"  {res.error[:160]}"
        elif REGISTRY[node.stage].device and res.output.get("p50_ms") is not None:
            line += f"  p50 {res.output['p50_ms']:.2f} ms  acc {res.output['accuracy']:.3f}  {res.output['verdict']}"
        log.info(line)

    # recording --------------------------------------------------------------------------------
    def record(self, node, res: StageResult) -> None:
        """The node's stage row (and its measurement row), in one transaction."""
        if res.attempts > 1:
            res.output["attempts"] = res.attempts
        measurement = self.record_extra(node, res) if (self.record_extra and res.ok) else None
        with self.store.transaction() as tx:
            tx.add_stage(self.run_id, node.variant_id, node.stage, status=res.status, error=res.error, error_kind=res.error_kind,
                         cache_key=res.cache_key, wall_s=res.wall_s, output=res.output, node_key=node.key)
            if measurement:
                # the teacher's row is the run's; an artifact's belongs to every variant that produced it
                for vid in ([""] if reg.ROLES.root in (node.stage, node.payload.subject) else node.variant_ids):
                    tx.add_measurement(self.run_id, vid, **measurement)

    # the loop ---------------------------------------------------------------------------------
    def _ready(self, key: str) -> tuple[Readiness, str | None]:
        """Whether the node can start, and (BLOCKED) the stage of the input that failed."""
        for d in self.nodes[key].deps:
            s = self.state.get(d)
            if s is not None and s.broken:
                return Readiness.BLOCKED, self.nodes[d].stage
            if s is not NodeState.DONE:
                return Readiness.WAIT, None
        return Readiness.GO, None

    def _submit(self, key: str) -> bool:
        from harness.stages.node import lookup

        node = self.nodes[key]
        deps = {d: self.outputs[d] for d in node.deps}
        hit = lookup(node, deps, self.inventory)
        if hit is not None:
            self.state[key] = NodeState.RUNNING
            self._finish(key, hit)
            return True
        ctx = RunContext(errors_dir=self.errors_dir, quiet=True if self.executor.name == "ray" else quiet(log))
        stage = REGISTRY[node.stage]
        whole = min(self.cpus, getattr(self.executor, "node_cpus", None) or self.cpus)  # a task fits on one node
        cpus = whole if stage.cpus == "all" else stage.cpus
        resources = placement(node)
        if stage.device:
            got = self.leases.acquire(key, node.payload.device, node.payload.runtime)
            if got == BUSY:
                return False  # every candidate busy: try again later
            if got == NONE:
                self._finish(key, StageResult(node.stage, node.variant_id, "failed", {"node_key": key,
                                              "device": node.payload.device}, self.leases.why_none(node.payload.device),
                                              "infrastructure"))
                return True
            spec = self.inventory[got]
            ctx = RunContext(errors_dir=ctx.errors_dir, quiet=ctx.quiet, device=got, device_spec=spec)
            # Latency on this machine (local, or a farm device on its CPUs) must not share it with other stages;
            # remote devices need no local CPU.
            cpus = whole if spec.transport == "local" or spec.shares_host_cpus else 0
            resources = placement(node, spec)
        self.state[key] = NodeState.RUNNING
        self.executor.submit(node, deps, ctx, num_cpus=cpus, resources=resources)
        return True

    def _finish(self, key: str, res: StageResult) -> None:
        node = self.nodes[key]
        self.counts["retried"] += res.attempts - 1  # the executor started it again after its worker died
        if self.leases.end(key, res):  # an infrastructure failure on a device: recorded as retried, run again
            res.status = "retried"
            self.record(node, res)
            self.counts["retried"] += 1
            self._progress(node, res)
            self.state.pop(key, None)  # back to pending
            return
        if res.ok:
            self.state[key] = NodeState.DONE
            self.outputs[key] = res.output
            self.counts["cached" if res.status == "cached" else "done"] += 1
            if REGISTRY[node.stage].device and res.output.get("verdict") == "INVALID":
                self.counts["invalid"] += 1
        else:
            self.state[key] = NodeState.FAILED
            self.counts["failed"] += 1
        self.record(node, res)
        self._progress(node, res)

    def run(self, resumed: dict[str, dict] | None = None) -> dict:
        for key, out in (resumed or {}).items():
            if key in self.nodes:
                self.state[key], self.outputs[key] = NodeState.DONE, out
                self.counts["resumed"] += 1
        if resumed:
            log.info(f"resuming: {self.counts['resumed']} of {len(self.nodes)} stages already done, not run again")
        while True:
            t = time.perf_counter()
            submitted = False
            pending = [k for k in self.order if k not in self.state]
            for key in pending:
                ready, why = self._ready(key)
                if ready is Readiness.WAIT:
                    continue
                if ready is Readiness.BLOCKED:
                    node = self.nodes[key]
                    self.state[key] = NodeState.SKIPPED
                    self.counts["skipped"] += 1
                    res = StageResult(node.stage, node.variant_id, "skipped", {"node_key": key},
                                      f"upstream stage '{why}' failed", "variant")
                    self.record(node, res)
                    self._progress(node, res)
                    continue
                submitted = self._submit(key) or submitted
            self.overhead_s += time.perf_counter() - t
            if not any(s is NodeState.RUNNING for s in self.state.values()) and all(k in self.state for k in self.order):
                break
            done = self.executor.wait(timeout_s=0.5)
            t = time.perf_counter()
            for key, res in done:
                self._finish(key, res)
            self.overhead_s += time.perf_counter() - t
            if not any(s is NodeState.RUNNING for s in self.state.values()):
                if all(k in self.state for k in self.order):
                    break
                if not submitted:
                    time.sleep(0.2)  # the devices it needs are leased (by another driver): wait for a lease
        self.counts["wall_s"] = round(time.perf_counter() - self.t0, 2)
        # stages run inside submit() (inline) and a lazily started executor are not the driver's own work
        own = self.overhead_s - getattr(self.executor, "inline_s", 0.0) - (getattr(self.executor, "setup_s", 0.0) - self._setup0)
        self.counts["driver_overhead_s"] = round(own, 3)
        return self.counts


def print_summary(counts: dict) -> None:
    log.info(f"summary: {counts['done']} done, {counts['cached']} cached, {counts['resumed']} resumed, "
             f"{counts['failed']} failed, {counts['skipped']} skipped, {counts['invalid']} invalid measurement(s), "
             f"{counts['retried']} retried; "
             f"{counts['wall_s']:.1f} s")
