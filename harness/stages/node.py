"""What one graph node does, in whatever process (and Ray node) the executor runs it.

    res = run_node(node, dep_outputs, ctx)     # -> StageResult (never raises)
    hit = lookup(node, dep_outputs, inventory) # the stored output of a node an earlier run finished, or None

The node's inputs are its dependencies' outputs (JSON, as the store keeps them), rebuilt as their
stages' records; its output is its own record as JSON, plus run facts: `node_key`, `ray_node` (the
Ray node that ran it), `device`. A finished non-device node is memoised under `cache_dir/nodes/`.
"""

import json
import os
from pathlib import Path

from eibutil import atomic_write_json
from eibutil.cache import Cache
from eibutil.files import content_key
from harness.stages.base import StageResult, run_stage
from harness.stages.registry import REGISTRY
from harness.stages.state import RunContext

RECORDS_VERSION = 2  # the memo's format: 2 = the stage records (eibert.cached_stages, harness.stages.records)


def _threads(ctx: RunContext) -> None:
    n = int(ctx.num_cpus or os.cpu_count() or 1)
    try:
        import torch

        torch.set_num_threads(max(1, n))
    except ImportError:
        pass


def records(node, deps: dict) -> dict:
    """{stage name: record} of the node's inputs."""
    return {stage: REGISTRY[stage].output.from_json(deps[key]) for key, stage in zip(node.deps, node.dep_stages)}


def _memo_path(node) -> Path:
    from compiler.build import BUILD_VERSION
    from eibert import versions

    cfg = node.payload.config
    # the node key covers the config; the files it names may change in place
    files = [Path(str(f)) for f in (cfg.task.train_file, cfg.task.dev_file, cfg.teacher.model) if f]
    stamps = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists()]
    # every version constant of the code that made this node's inputs and output (eibert.versions, the TVM build)
    key = content_key({"node": node.key, "records": RECORDS_VERSION, "versions": versions.current(), "build": BUILD_VERSION,
                       "files": stamps})
    return Cache(cfg.cache_dir).file("nodes", key)


def lookup(node, deps: dict, inventory: dict) -> StageResult | None:
    """The node's output when an earlier run finished it and everything it points to is still here (the
    driver checks before submitting, so an unchanged sweep starts no executor and leases no device)."""
    from harness.stages.device import measure_cache

    stage = REGISTRY[node.stage]
    try:
        if stage.device:
            if not node.payload.config.measure.reuse:
                return None
            device = node.payload.device
            key, path = measure_cache(node, records(node, deps), device, inventory[device])
            if not path.exists():
                return None
            out = {**json.loads(path.read_text()), "cache_hit": True, "cache_key": key, "device": device}
        else:
            path = _memo_path(node)
            if not path.exists():
                return None
            out = {**json.loads(path.read_text()), "cache_hit": True}
            if not all(Path(p).exists() for p in stage.paths(out)):
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    out["node_key"] = node.key
    return StageResult(node.stage, node.variant_id, "cached", out, None, None, 0.0, out.get("cache_key") or out.get("key"))


def _ray_node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # not inside Ray
        return None


def run_node(node, deps: dict, ctx: RunContext) -> StageResult:
    """Run one node; any failure becomes a failed `StageResult` (traceback saved under ctx.errors_dir)."""
    _threads(ctx)
    stage = REGISTRY[node.stage]

    def call() -> dict:
        out = stage.run(node, records(node, deps), ctx).to_json()
        out.setdefault("cache_key", out.get("key"))
        return out

    res = run_stage(node.stage, node.variant_id, call, ctx.errors_dir, tag=node.key[:8])
    res.output["node_key"] = node.key
    if (where := _ray_node()) is not None:
        res.output["ray_node"] = where
    if ctx.device:
        res.output.setdefault("device", ctx.device)
    if res.ok and not stage.device:  # measurements have their own cache, keyed by the device
        try:
            atomic_write_json(_memo_path(node), {k: v for k, v in res.output.items() if k not in ("cache_hit", "ray_node")})
        except OSError:
            pass
    return res
