"""The device stages: build (TVM, per target) and measure (per device and runtime, under a lease).

    rec = measure(node, {"artifact": ArtifactRecord, "build": BuildRecord}, ctx)   # ctx names the leased device

A measurement is cached by what it depends on (artifact, device, rules, build), so an unchanged sweep
re-measures nothing unless `measure.reuse` is false (nightly runs).
"""

import json
from pathlib import Path

from eibutil import atomic_write_json
from eibutil.cache import Cache
from eibutil.files import content_key
from harness.stages.base import StageError
from harness.stages.records import BuildRecord, MeasureRecord
from harness.stages.settings import measure_settings
from harness.stages.state import RunContext


def build(node, inputs: dict, ctx: RunContext) -> BuildRecord:
    from compiler.build import BuildError
    from harness.measure.run import build_for

    cfg = node.payload.config
    try:
        out = build_for(inputs["artifact"].artifact_dir, node.payload.target, measure_settings(cfg), Path(cfg.cache_dir))
    except BuildError as e:
        raise StageError(f"{e.kind}: {e}", "variant" if e.kind == "build-failed" else "infrastructure", e.kind) from e
    return BuildRecord.from_json(out)


def _subject(inputs: dict):
    return inputs.get("artifact") or inputs["teacher"]


def _subject_key(rec) -> str:
    return getattr(rec, "key", None) or rec.cache_key


def measure_cache(node, inputs: dict, device: str, spec) -> tuple[str, Path]:
    """(key, file) of the stored measurement of this node's subject on `device`."""
    cfg = node.payload.config
    b = inputs.get("build")
    key = content_key({"artifact": _subject_key(_subject(inputs)), "device": device, "spec": spec.model_dump(mode="json"),
                       "runtime": node.payload.runtime, "settings": measure_settings(cfg).__dict__,
                       "build": b.lib_sha256 if b else None})
    return key, Cache(cfg.cache_dir).file("measure", key)


def measure(node, inputs: dict, ctx: RunContext) -> MeasureRecord:
    from devices.errors import DeviceError
    from harness.measure.run import measure_on_device
    from harness.stages.model import _data

    cfg = node.payload.config
    device, spec = ctx.device, ctx.device_spec
    subject = _subject(inputs)
    key, path = measure_cache(node, inputs, device, spec)
    if cfg.measure.reuse and path.exists():
        return MeasureRecord.from_json({**json.loads(path.read_text()), "cache_hit": True, "cache_key": key})
    b = inputs.get("build")
    data = _data(node, ctx)
    try:  # OpenVINO's QDQ model is calibrated on the task's own training rows
        rec = measure_on_device(getattr(subject, "artifact_dir", None) or subject.model_dir, device, spec,
                                node.payload.runtime,
                                data.dev, measure_settings(cfg), cfg.cache_dir, build=b.to_json() if b else None,
                                calib=data.train)
    except DeviceError as e:
        raise StageError(f"{e.kind}: {e.message}", "infrastructure" if e.infrastructure else "device", e.kind) from e
    rec["requested_device"] = node.payload.device
    atomic_write_json(path, rec)
    return MeasureRecord.from_json({**rec, "cache_hit": False, "cache_key": key})


def measure_row(node, o: dict) -> dict:
    return {"subject": (node.payload.subject or "artifact"), "device": o["device"], "runtime": o["runtime"],
            "target": o.get("target"),
            "accuracy": o["accuracy"], "n": o["n"], "size_bytes": o["size_bytes"], "p50_ms": o["p50_ms"], "p90_ms": o["p90_ms"],
            "p99_ms": o["p99_ms"], "peak_rss_bytes": o["peak_rss_bytes"], "samples_ms": o["samples"],
            "metrics": dict(o["metrics"]) | {"requested_device": o.get("requested_device")},
            "verdict": o["verdict"], "verdict_reason": o["verdict_reason"]}
