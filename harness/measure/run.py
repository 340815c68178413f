"""Measure one model on one device with one runtime: build if needed, deploy, run, score, judge.

    from harness.measure.run import MeasureSettings, measure_on_device
    rec = measure_on_device("artifact/", "rpi4", spec, "tvm", dev_split, MeasureSettings(seq_len=64), cache_dir)
    rec["p50_ms"], rec["accuracy"], rec["metrics"]["max_logit_drift"], rec["verdict"]

The host prepares the dev set as token ids with the model's own tokenizer and computes reference logits
with onnxruntime on exactly those arrays; the device returns its logits, so accuracy and drift come
from the same compiled artifact that was timed. Raises `devices.errors.DeviceError` (device side) or
`compiler.build.BuildError` (build side); the caller turns them into stage rows.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from devices.agent import Agent
from devices.errors import MissingRuntimeError
from devices.inventory import DeviceSpec
from eibutil import UserError, sha256_file
from eibutil.cache import Cache
from eibutil.files import KEY_CHARS, content_key
from eibutil.stats import summarize
from harness.measure.endtoend import e2e_inputs, e2e_metrics
from harness.measure.profile import profile_inputs, summarize_profile

MAX_P90_OVER_P50 = 1.5  # more spread than this and the percentiles are not trusted
THROTTLE_FREQ_SHARE = 0.9


@dataclass(frozen=True)
class MeasureSettings:
    seq_len: int = 64
    rows: int | None = None  # dev rows run on the device for accuracy (None: all)
    warmup: int = 10
    min_count: int = 100
    min_duration_s: float = 5.0
    max_duration_s: float = 60.0
    trials: int = 0  # MetaSchedule trials (0: untuned)
    fast_math: bool = True
    int8_compute: bool = True  # TVM: INT8 dense layers with integer dot products where the target has them (VNNI)
    build_timeout_s: float = 1800.0
    null_floor: bool = True  # also time the null model on the device (the harness's own floor)
    end_to_end: bool = True  # also time text -> label per sentence, tokeniser included (harness.measure.endtoend)
    profile: bool = False  # also time each operator, after the timed pass (harness.measure.profile)
    profile_runs: int = 200  # inferences the profile averages over


def check_device_flags(device: str, build: dict, facts: dict) -> dict:
    """The build's integer path against the device's own CPU flags (its probe): a library with VNNI or `sdot`
    instructions on a CPU without them would die on an illegal instruction, so it is refused; a build on a slower
    path than the CPU allows says so."""
    from devices.cpufeatures import PATH_FLAG, int8_path, llvm_features

    flags, machine = facts.get("cpu_flags"), facts.get("machine")
    if flags is None or machine not in ("x86_64", "aarch64"):
        return {}
    have = int8_path(llvm_features(flags, machine), machine)[0]
    built = build.get("int8_path")
    if built in PATH_FLAG and built != have and not (built == "neon" and have == "sdot"):
        raise UserError(f"{device}: the TVM library uses {built} kernels (target "
                        f"{build.get('target_dict', {}).get('mcpu', '?')}), but the device's CPU flags have no "
                        f"{PATH_FLAG[built]}: give the device a target without it")
    if "int8_reason" in build and have != built and (built == "float" or (built, have) == ("neon", "sdot")):
        return {"int8_reason": build["int8_reason"]
                + f"; the device's CPU has {PATH_FLAG[have]}: a target with it would use {have} kernels"}
    return {}


def _verified(model_dir) -> None:
    """An artifact (a folder with a manifest) is checked file by file before it is built, uploaded or scored."""
    if (Path(model_dir) / "manifest.json").exists() or (Path(model_dir) / "manifest.json").is_symlink():
        from eibert.verify import verify_artifact

        verify_artifact(model_dir)


def _model_digest(model_dir: str | Path) -> str:
    p = Path(model_dir)
    if (p / "manifest.json").exists():
        return sha256_file(p / "manifest.json")
    from eibert.hub import model_fingerprint

    return model_fingerprint(str(model_dir))


def max_positions(model_dir) -> int | None:
    """How many token positions a model takes (an artifact's manifest, or a Hugging Face config)."""
    m = Path(model_dir) / "manifest.json"
    if m.exists():
        return json.loads(m.read_text()).get("spec", {}).get("max_positions")
    cfg = Path(model_dir) / "config.json"  # a Hugging Face model (the teacher)
    return json.loads(cfg.read_text()).get("max_position_embeddings") if cfg.exists() else None


def prepared(model_dir, split, settings: MeasureSettings, cache_dir: Path) -> tuple[Path, dict]:
    """inputs.npz for this model, split and length (cached)."""
    from eibert.deploy import prepare_inputs

    key = content_key([_model_digest(model_dir), split._fingerprint, settings.seq_len, settings.rows])
    out = Cache(cache_dir).path("inputs", key) / "inputs.npz"
    meta = out.with_name("inputs.json")
    if meta.exists() and out.exists():
        return out, json.loads(meta.read_text())
    info = prepare_inputs(model_dir, split, settings.seq_len, out, limit=settings.rows)
    meta.write_text(json.dumps(info))
    return out, info


def build_for(model_dir, target: str, settings: MeasureSettings, cache_dir: Path, db_dir: Path | None = None) -> dict:
    """The TVM library of `model_dir` for `target` (the exported program and the build are cached)."""
    from compiler.build import build
    from eibert.deploy import export_program
    from eibert.versions import EXPORT

    _verified(model_dir)
    # the export's version in the name: a new export of the same model is a new program
    program = Cache(cache_dir).file("programs", f"{_model_digest(model_dir)[:KEY_CHARS]}-s{settings.seq_len}-e{EXPORT}", ".pt2")
    if not program.exists():
        export_program(model_dir, settings.seq_len, program)
    return build(program, target, cache_dir, trials=settings.trials, fast_math=settings.fast_math, int8=settings.int8_compute,
                 db_dir=db_dir or (Cache(cache_dir).area("tuning") / target / f"s{settings.seq_len}"),
                 timeout_s=settings.build_timeout_s)


NULL_MAX_DURATION_S = 1.0


def null_floor(agent: Agent, settings: MeasureSettings, cache_dir: Path, threads) -> dict:
    """The null model timed by the same runner on the same device, right after the measurement it
    stands under: p50/p90/p99 of a graph that returns a constant."""
    from devices.null import null_files

    onnx_path, npz = null_files(cache_dir, settings.seq_len)
    res = agent.run_model({"model.onnx": onnx_path, "inputs.npz": npz}, "onnxruntime", model="model.onnx", inputs="inputs.npz",
                          warmup=settings.warmup, min_count=settings.min_count,
                          min_duration_s=min(settings.min_duration_s, NULL_MAX_DURATION_S),
                          max_duration_s=max(settings.max_duration_s, NULL_MAX_DURATION_S), threads=threads)
    summary = summarize([ns / 1e6 for ns in res["latencies_ns"]])
    return {k: summary.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "count")}


def model_memory(res: dict, model_dir) -> dict:
    """The model's own memory on the device: resident after load and warm-up, and the peak (VmHWM),
    each minus the baseline read once the runtime is imported and before the model is loaded (the
    interpreter, numpy, the runtime's libraries and the inputs are in the baseline); beside them the
    static weight bytes of the artifact."""
    base, loaded, warm, peak = (res.get(k) for k in ("rss_runtime_bytes", "rss_loaded_bytes", "rss_warm_bytes", "peak_rss_bytes"))
    parts = {}
    if (Path(model_dir) / "manifest.json").exists():
        parts = json.loads((Path(model_dir) / "manifest.json").read_text()).get("parts", {})
    weights = sum(parts.get(k, 0) for k in ("embeddings", "encoder", "head")) or None
    sub = lambda v: None if v is None or base is None else max(0, v - base)  # noqa: E731
    # peak_end_bytes: the process's peak after the end-to-end and profiled passes (a tokenizer, a profiling session)
    return {"baseline_bytes": base, "loaded_bytes": loaded, "warm_bytes": warm, "peak_bytes": peak,
            "peak_end_bytes": res.get("peak_rss_end_bytes"),
            "model_resident_bytes": sub(warm if warm is not None else loaded), "model_peak_bytes": sub(peak),
            "weight_bytes": weights}


def verdict(summary: dict, result: dict, facts: dict, spec: DeviceSpec) -> tuple[str, str]:
    """VALID, or INVALID with every reason (LoadGen's rule: a run states why it does not count)."""
    why = []
    if not result.get("min_met", False):
        why.append(f"minimum not met ({summary.get('count', 0)} samples in {result.get('duration_s', 0):.1f} s; "
                   f"needs {result.get('min_count')} and {result.get('min_duration_s')} s)")
    if spec.emulated:
        why.append("emulated device: latency is not comparable with native devices")
    if summary.get("count") and summary["p90_ms"] > MAX_P90_OVER_P50 * summary["p50_ms"]:
        why.append(f"spread too high (p90/p50 = {summary['p90_ms'] / summary['p50_ms']:.2f} > {MAX_P90_OVER_P50})")
    gov = facts.get("governor")
    if gov and gov != "performance":
        why.append(f"CPU governor is {gov!r}, not 'performance'")
    if facts.get("freq_khz") and facts.get("max_freq_khz") and facts["freq_khz"] < THROTTLE_FREQ_SHARE * facts["max_freq_khz"]:
        why.append(f"CPU at {facts['freq_khz'] / 1000:.0f} MHz of {facts['max_freq_khz'] / 1000:.0f} MHz: throttled or "
                   "idle-clocked")
    return ("INVALID", "; ".join(why)) if why else ("VALID", "")


BUILD_KEYS = ("key", "build_s", "lib_bytes", "lib_sha256", "cache_hit", "tuned", "tasks", "new_tasks", "int8_layers",
              "int4_layers", "int4_as_int8", "int4_path", "int4_reason", "int8_path", "int8_reason", "int8_verified",
              "tune_s", "db_sha256", "target_dict")


def measure_on_device(model_dir, device: str, spec: DeviceSpec, runtime: str, split, settings: MeasureSettings,
                      cache_dir: str | Path, agent: Agent | None = None, build: dict | None = None, log=None, calib=None) -> dict:
    """One measurement record (the store's `measurements` columns plus `metrics`). `calib`: training rows the QDQ
    model's activation steps are calibrated on for OpenVINO (default: the embedded SST-2 training rows)."""
    from eibert.deploy import onnx_model, reference_logits

    cache_dir = Path(cache_dir)
    _check_request(model_dir, device, spec, runtime, settings)
    inputs, info = prepared(model_dir, split, settings, cache_dir)
    onnx = onnx_model(model_dir, cache_dir)
    files, model_name, build = _runtime_files(model_dir, spec, runtime, settings, cache_dir, inputs, onnx, build, calib)
    e2e_files, e2e_opts = e2e_inputs(model_dir, split, settings, cache_dir)
    prof_files, prof_opts = profile_inputs(settings)
    files.update(e2e_files, **prof_files)
    own = agent is None
    agent = agent or Agent(device, spec)
    try:
        facts, res, floor, build = _run(agent, device, spec, runtime, files, model_name, settings, cache_dir, build,
                                        {**e2e_opts, **prof_opts})
    finally:
        if own:
            agent.close()
    samples_ms = [ns / 1e6 for ns in res.pop("latencies_ns")]
    summary = summarize(samples_ms)
    logits = np.asarray(res.pop("logits"), dtype=np.float32)
    ref = reference_logits(onnx, inputs)
    labels = np.load(inputs)["labels"]
    preds, ref_preds = logits.argmax(1), ref.argmax(1)
    v, reason = verdict(summary, res, facts, spec)
    size, model_spec = None, {}
    if (Path(model_dir) / "manifest.json").exists():
        manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
        size, model_spec = manifest["size_bytes"], manifest.get("spec", {})
    metrics = {
        **{k: summary[k] for k in summary if k not in ("p50_ms", "p90_ms", "p99_ms")},
        "max_logit_drift": float(np.abs(logits - ref).max()) if len(ref) else None,
        "predictions_agree": int((preds == ref_preds).sum()),
        "reference_accuracy": float((ref_preds == labels).mean()) if len(labels) else None,
        **_run_metrics(res, model_dir), "emulated": spec.emulated, "seq_len": settings.seq_len,
        "inputs": info, "device_facts": facts, "model_bytes": Path(files[model_name]).stat().st_size,
        "build": {k: build[k] for k in BUILD_KEYS if k in build} if runtime == "tvm" else None,
        "settings": asdict(settings), "null": floor, "openvino": res.get("openvino"),
        "end_to_end": e2e_metrics(res.pop("end_to_end", None), preds.tolist()),
        "profile": summarize_profile(res.pop("profile", None), summary.get("p50_ms"), model_spec),
    }
    return {
        "device": device, "runtime": runtime, "target": spec.target if runtime == "tvm" else None,
        "accuracy": float((preds == labels).mean()) if len(labels) else None, "n": int(len(labels)), "size_bytes": size,
        "p50_ms": summary.get("p50_ms"), "p90_ms": summary.get("p90_ms"), "p99_ms": summary.get("p99_ms"),
        "peak_rss_bytes": res.get("peak_rss_bytes"), "samples": samples_ms, "metrics": metrics,
        "verdict": v, "verdict_reason": reason, "predictions": preds.tolist(),
    }


def _run(agent: Agent, device: str, spec: DeviceSpec, runtime: str, files: dict, model_name: str,
         settings: MeasureSettings, cache_dir: Path, build: dict | None, opts: dict) -> tuple[dict, dict, dict | None, dict]:
    """Probe, check, run the timed pass (and the null floor): (device facts, the runner's result, floor, build)."""
    facts = agent.probe()
    if runtime not in facts.get("runtimes", []):
        raise MissingRuntimeError(device, f"runtime {runtime!r} is not installed on the device ({spec.python})")
    if runtime == "tvm":
        build = {**build, **check_device_flags(device, build, facts)}
    res = agent.run_model(files, runtime, model=model_name, inputs="inputs.npz", warmup=settings.warmup,
                          min_count=settings.min_count, min_duration_s=settings.min_duration_s,
                          max_duration_s=settings.max_duration_s, threads=spec.threads, **opts)
    floor = None
    if settings.null_floor and "onnxruntime" in facts.get("runtimes", []):
        floor = null_floor(agent, settings, cache_dir, spec.threads)
    return facts, res, floor, build


def _check_request(model_dir, device: str, spec: DeviceSpec, runtime: str, settings: MeasureSettings) -> None:
    """Refuse before any work: an unverified artifact, a runtime the device lacks, a length past the positions."""
    _verified(model_dir)
    if runtime not in spec.runtimes:
        raise MissingRuntimeError(device, f"runtime {runtime!r} is not listed for this device (has {', '.join(spec.runtimes)})")
    positions = max_positions(model_dir)
    if positions is not None and settings.seq_len > positions:
        raise UserError(f"seq_len {settings.seq_len} exceeds the {positions} positions of {model_dir} "
                         "(build the student with compress.student.max_positions >= the measured length)")


def _runtime_files(model_dir, spec: DeviceSpec, runtime: str, settings: MeasureSettings, cache_dir: Path, inputs: Path,
                   onnx: Path, build: dict | None, calib) -> tuple[dict, str, dict | None]:
    """(files to stage, the model's name among them, the TVM build record): what this runtime loads."""
    if runtime == "tvm":
        build = build or build_for(model_dir, spec.target, settings, cache_dir)
        return {"model.so": Path(build["lib"]), "inputs.npz": inputs}, "model.so", build
    if runtime == "openvino":  # OpenVINO's integer path reads QDQ, not MatMulInteger (eibert/qdq.py)
        from eibert.data import load_task
        from eibert.qdq import qdq_model

        qdq = qdq_model(model_dir, cache_dir, calib if calib is not None else load_task().train, settings.seq_len) \
            if (Path(model_dir) / "manifest.json").exists() else None
        return {"model.onnx": qdq or onnx, "inputs.npz": inputs}, "model.onnx", build  # a float model runs as it is
    return {"model.onnx": onnx, "inputs.npz": inputs}, "model.onnx", build


def _run_metrics(res: dict, model_dir) -> dict:
    """What the runner reported of its own run: memory, versions and the time of each step."""
    return {"rss_runtime_bytes": res.get("rss_runtime_bytes"), "rss_loaded_bytes": res.get("rss_loaded_bytes"),
            "memory": model_memory(res, model_dir), "runtime_version": res.get("runtime_version"),
            "threads": res.get("threads"), "load_s": res.get("load_s"), "import_s": res.get("import_s"),
            "deploy_s": res.get("deploy_s"), "run_s": res.get("run_s"), "uploaded_bytes": res.get("uploaded_bytes")}
