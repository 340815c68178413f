"""The stage functions: what one graph node does, in whatever process the executor runs it.

    res = run_node(node, dep_outputs, ctx)     # -> StageResult (never raises)

Each returns a JSON-ready output; `cache_hit` in it marks work found done. Data are loaded in the
process that needs them (cheap; datasets caches them), so a node travels as its config alone.
"""

import hashlib
import json
import os
from pathlib import Path

from eibutil import atomic_write_json
from eibutil.files import canonical_json
from harness.graph import Node
from harness.settings import measure_settings
from harness.stages import StageResult, run_stage


class StageError(RuntimeError):
    """A stage failure with its kind (variant | device | infrastructure) for the result row."""

    def __init__(self, message: str, error_kind: str, failure: str | None = None):
        super().__init__(message)
        self.error_kind, self.failure = error_kind, failure


def _data(cfg):
    from harness.settings import load_data

    return load_data(cfg)


def _threads(ctx: dict) -> None:
    n = int(ctx.get("num_cpus") or os.cpu_count() or 1)
    try:
        import torch

        torch.set_num_threads(max(1, n))
    except ImportError:
        pass


def _teacher(node: Node, deps: dict, ctx: dict) -> dict:
    from eibert.teacher import finetune_teacher

    cfg = node.payload["config"]
    data = _data(cfg)
    hp = cfg.teacher.model_dump(exclude={"model"})
    out = finetune_teacher(cfg.teacher.model, data, cache_dir=str(cfg.cache_dir), hp=hp, max_seq_len=cfg.task.max_seq_len,
                           progress=not ctx.get("quiet")).to_json()
    return {**out, "data_checksums": data.checksums, "data_sources": data.sources, "train_rows": len(data.train),
            "dev_rows": len(data.dev)}


def _compress(node: Node, deps: dict, ctx: dict, until: str) -> dict:
    from eibert.compress import compress
    from harness.settings import compress_settings

    cfg = node.payload["config"]
    teacher = deps[node.deps[0]]
    out = compress(teacher["model_dir"], _data(cfg), cache_dir=str(cfg.cache_dir), progress=not ctx.get("quiet"),
                   until=until, **compress_settings(cfg))
    if until == "artifact":
        out["teacher_dev_accuracy"] = teacher["dev_accuracy"]
        out["data_sha256"] = teacher["data_checksums"]["dev"]
    return out


def _build(node: Node, deps: dict, ctx: dict) -> dict:
    from devices.tvm_build import BuildError
    from harness.measure import build_for

    cfg = node.payload["config"]
    art = deps[node.deps[0]]
    try:
        return build_for(art["artifact_dir"], node.payload["target"], measure_settings(cfg), Path(cfg.cache_dir))
    except BuildError as e:
        raise StageError(f"{e.kind}: {e}", "variant" if e.kind == "build-failed" else "infrastructure", e.kind) from e


def _measure_cache(node: Node, deps: dict, device: str, spec) -> tuple[str, Path]:
    cfg = node.payload["config"]
    art = deps[node.deps[0]]
    build = deps[node.deps[1]] if len(node.deps) > 1 else None
    key = hashlib.sha256(canonical_json({"artifact": art["cache_key"], "device": device, "spec": spec.model_dump(mode="json"),
                                         "runtime": node.payload["runtime"], "settings": measure_settings(cfg).__dict__,
                                         "build": build.get("lib_sha256") if build else None}).encode()).hexdigest()[:24]
    return key, Path(cfg.cache_dir) / "measure" / f"{key}.json"


def _memo_path(node: Node) -> Path:
    from devices.tvm_build import BUILD_VERSION
    from eibert.compress import CODE_VERSION, EXPORT_VERSION
    from eibert.teacher import TRAIN_CODE_VERSION

    cfg = node.payload["config"]
    # the node key covers the config; the files it names may change in place
    files = [Path(str(f)) for f in (cfg.task.train_file, cfg.task.dev_file, cfg.teacher.model) if f]
    stamps = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists()]
    v = f"{node.key}-{CODE_VERSION}.{EXPORT_VERSION}.{TRAIN_CODE_VERSION}.{BUILD_VERSION}-{stamps}"
    return Path(cfg.cache_dir) / "nodes" / f"{hashlib.sha256(v.encode()).hexdigest()[:24]}.json"


_PATHS = ("model_dir", "artifact_dir", "lib")


def lookup(node: Node, deps: dict, inventory: dict) -> StageResult | None:
    """The node's output when an earlier run finished it and everything it points to is still there (the
    driver checks before submitting, so an unchanged sweep starts no executor and leases no device)."""
    try:
        if node.stage == "measure":
            if not node.payload["config"].measure.reuse:
                return None
            device = node.payload["device"]
            key, path = _measure_cache(node, deps, device, inventory[device])
            if not path.exists():
                return None
            out = {**json.loads(path.read_text()), "cache_hit": True, "cache_key": key, "device": device}
        else:
            path = _memo_path(node)
            if not path.exists():
                return None
            out = {**json.loads(path.read_text()), "cache_hit": True}
            if not all(Path(out[k]).exists() for k in _PATHS if out.get(k)):
                return None
    except (OSError, ValueError, KeyError):
        return None
    out["node_key"] = node.key
    return StageResult(node.stage, node.variant_id, "cached", out, None, None, 0.0, out.get("cache_key"))


def _measure(node: Node, deps: dict, ctx: dict) -> dict:
    from devices.errors import DeviceError
    from harness.measure import measure_on_device

    cfg = node.payload["config"]
    device, spec = ctx["device"], ctx["device_spec"]
    art = deps[node.deps[0]]
    build = deps[node.deps[1]] if len(node.deps) > 1 else None
    settings = measure_settings(cfg)
    key, path = _measure_cache(node, deps, device, spec)
    if cfg.measure.reuse and path.exists():
        return {**json.loads(path.read_text()), "cache_hit": True, "cache_key": key}
    try:
        rec = measure_on_device(art.get("artifact_dir") or art["model_dir"], device, spec, node.payload["runtime"], _data(cfg).dev, settings,
                                cfg.cache_dir, build=build)
    except DeviceError as e:
        raise StageError(f"{e.kind}: {e.message}", "infrastructure" if e.infrastructure else "device", e.kind) from e
    rec["requested_device"] = node.payload["device"]
    atomic_write_json(path, rec)
    return {**rec, "cache_hit": False, "cache_key": key}


FUNCS = {
    "teacher": _teacher,
    "importance": lambda n, d, c: _compress(n, d, c, "importance"),
    "student": lambda n, d, c: _compress(n, d, c, "student"),
    "artifact": lambda n, d, c: _compress(n, d, c, "artifact"),
    "build": _build,
    "measure": _measure,
}


def run_node(node: Node, deps: dict, ctx: dict) -> StageResult:
    """Run one node; any failure becomes a failed `StageResult` (traceback saved under ctx['errors_dir'])."""
    _threads(ctx)
    res = run_stage(node.stage, node.variant_id, lambda: FUNCS[node.stage](node, deps, ctx), ctx.get("errors_dir"),
                    tag=node.key[:8])
    res.output["node_key"] = node.key
    if ctx.get("device"):
        res.output.setdefault("device", ctx["device"])
    if res.ok and node.stage != "measure":  # measurements have their own cache, keyed by the device
        try:
            atomic_write_json(_memo_path(node), {k: v for k, v in res.output.items() if k != "cache_hit"})
        except OSError:
            pass
    return res
