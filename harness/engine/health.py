"""The health of one device (the pool's check before first use, and `eib devices check`).

    probe_device("rpi4", spec)                      # {"device", "status": ok|degraded|down, facts... | error_kind, error}
    probe_device("rpi4", spec, null_dir=Path(d))    # also the null model's latency there
"""

from pathlib import Path


def probe_device(name: str, spec, null_dir: Path | None = None) -> dict:
    """Health of one device: its facts, or the kind of error and the message; with `null_dir`, also the
    null model's latency there (the harness's floor)."""
    from devices.agent import Agent
    from devices.errors import DeviceError

    try:
        with Agent(name, spec) as agent:
            facts = agent.probe()
            missing = [r for r in spec.runtimes if r not in facts.get("runtimes", [])]
            floor = None
            if null_dir is not None and "onnxruntime" in facts.get("runtimes", []):
                from harness.measure.run import MeasureSettings, null_floor

                floor = null_floor(agent, MeasureSettings(), null_dir, spec.threads)
        status = "ok" if not missing else "degraded"
        return {"device": name, "status": status, "missing_runtimes": missing, **facts, "null": floor}
    except DeviceError as e:
        return {"device": name, "status": "down", "error_kind": e.kind, "error": e.message}
