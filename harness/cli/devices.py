"""`eib devices list|check` and `eib measure`: the device side from the command line.

    eib devices list  [--inventory inventory.yaml]
    eib devices check [--inventory inventory.yaml] [--json] [--null]   # probe every device; exit 1 if any is down
    eib measure ARTIFACT --device NAME [--runtime tvm|onnxruntime] [--seq-len 64] [--rows 128] [--trials 0]
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eibutil import UserError
from harness.cli.args import float_in, int_in
from harness.config.schema import DEFAULT_CACHE_DIR, DEFAULT_DATABASE, DEFAULT_INVENTORY, MeasureConfig
from harness.engine.devicepool import USER_KINDS
from harness.engine.health import probe_device
from harness.measure.profile import profile_text

MEASURE_DEFAULTS = MeasureConfig()  # `eib measure` runs by the same rules as a config that sets none



def _inventory(path: str):
    from devices.inventory import load_inventory

    if not Path(path).exists():
        raise UserError(f"{path}: inventory file not found (pass --inventory FILE)")
    return load_inventory(path)


def _device(inv, name: str, path: str):
    if name not in inv.devices:
        raise UserError(f"{path}: no device named {name!r}; devices: {', '.join(inv.names())}")
    return inv.devices[name]


def cmd_list(args) -> int:
    inv = _inventory(args.inventory)
    print(f"{'device':16s} {'transport':9s} {'address':22s} {'arch':8s} {'target':17s} {'runtimes':22s} tags")
    for name, d in inv.devices.items():
        addr = f"{d.user}@{d.host}:{d.port}" if d.transport == "ssh" else "-"
        tags = ",".join(d.tags) + (" (emulated)" if d.emulated else "")
        print(f"{name:16s} {d.transport:9s} {addr:22s} {d.arch:8s} {d.target:17s} {','.join(d.runtimes):22s} {tags}")
    return 0


def cmd_check(args) -> int:
    import tempfile

    inv = _inventory(args.inventory)
    with tempfile.TemporaryDirectory(prefix="eib-null-") as tmp, ThreadPoolExecutor(max_workers=8) as pool:
        null_dir = Path(tmp) if getattr(args, "null", False) else None
        rows = list(pool.map(lambda kv: probe_device(*kv, null_dir=null_dir), inv.devices.items()))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'device':16s} {'status':9s} {'probe s':>7s} {'machine':8s} {'cores':>5s} {'mem GiB':>7s} {'governor':11s} "
              f"{'MHz':>6s} {'temp C':>6s} runtimes / error")
        for r in rows:
            if r["status"] == "down":
                print(f"{r['device']:16s} {'down':9s} {'-':>7s} {'-':8s} {'-':>5s} {'-':>7s} {'-':11s} {'-':>6s} {'-':>6s} "
                      f"{r['error_kind']}: {r['error']}")
                continue
            mem = f"{r['mem_total_bytes'] / 2**30:.1f}" if r.get("mem_total_bytes") else "-"
            mhz = f"{r['freq_khz'] / 1000:.0f}" if r.get("freq_khz") else "-"
            temp = f"{r['temperature_c']:.0f}" if r.get("temperature_c") is not None else "-"
            rts = ",".join(f"{k}={v}" for k, v in r["versions"].items() if v and k in ("onnxruntime", "apache-tvm"))
            if r["missing_runtimes"]:
                rts += f"  (missing: {','.join(r['missing_runtimes'])})"
            if r.get("null"):
                rts += f"  null model p50 {r['null']['p50_ms']:.3f} ms, p90 {r['null']['p90_ms']:.3f} ms (the harness's floor)"
            print(f"{r['device']:16s} {r['status']:9s} {r['probe_s']:7.2f} {r.get('machine', '-'):8s} {r.get('cores') or '-':>5} "
                  f"{mem:>7s} {r.get('governor') or '-':11s} {mhz:>6s} {temp:>6s} {rts}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _memory_text(mem: dict, peak) -> str:
    mb = lambda v: "-" if v is None else f"{v / 2**20:.1f} MiB"  # noqa: E731
    return (f"model memory {mb(mem.get('model_peak_bytes'))} peak, {mb(mem.get('model_resident_bytes'))} resident "
            f"(weights {mb(mem.get('weight_bytes'))})  process memory {mb(peak)} peak RSS (runtime baseline "
            f"{mb(mem.get('baseline_bytes'))})")


def cmd_measure(args) -> int:
    from compiler.build import BuildError
    from devices.errors import DeviceError
    from eibert.data import load_eval_file, load_task
    from eibert.export import is_artifact, load_manifest
    from harness.measure.run import MeasureSettings, measure_on_device
    from harness.results.provenance import collect
    from harness.results.store import Store

    inv = _inventory(args.inventory)
    spec = _device(inv, args.device, args.inventory)
    if args.runtime not in spec.runtimes:  # a mistake in the command, not a device failure: exit 2
        raise UserError(f"{args.inventory}: device {args.device!r} lists runtimes {', '.join(spec.runtimes)}; not "
                        f"{args.runtime!r}")
    if not Path(args.artifact).is_dir():
        raise UserError(f"{args.artifact}: not a folder (pass an artifact folder written by `eib compress`, or a model folder)")
    split = load_eval_file(args.data)[0] if args.data else load_task().dev
    settings = MeasureSettings(seq_len=args.seq_len, rows=args.rows, warmup=args.warmup, min_count=args.min_count,
                               min_duration_s=args.min_duration_s, max_duration_s=args.max_duration_s, trials=args.trials,
                               profile=args.profile)
    try:
        rec = measure_on_device(args.artifact, args.device, spec, args.runtime, split, settings, args.cache_dir)
    except DeviceError as e:
        print(f"eib: {args.device}: {e.kind}: {e.message}", file=sys.stderr)
        return 2 if e.kind in USER_KINDS else 3  # a wrong key or workdir in the inventory is the user's, not the device's
    except BuildError as e:
        print(f"eib: build for {spec.target} failed ({e.kind}): {e}", file=sys.stderr)
        return 3
    artifact = is_artifact(args.artifact)
    variant_id = load_manifest(args.artifact)["files"]["model.onnx"]["sha256"][:16] if artifact else "model"
    store = Store(args.db)
    config = {"artifact": str(Path(args.artifact).resolve()), "device": args.device, "runtime": args.runtime,
              "settings": rec["metrics"]["settings"]}
    run_id = store.create_run("measure", config)
    prov = collect()
    with store.transaction() as tx:
        tx.add_variant(run_id, variant_id, Path(args.artifact).name, {}, config)
        tx.add_measurement(run_id, variant_id, subject="artifact" if artifact else "model", device=args.device,
                           runtime=args.runtime, target=rec["target"], accuracy=rec["accuracy"], n=rec["n"],
                           size_bytes=rec["size_bytes"], p50_ms=rec["p50_ms"], p90_ms=rec["p90_ms"], p99_ms=rec["p99_ms"],
                           peak_rss_bytes=rec["peak_rss_bytes"], samples_ms=rec["samples"], metrics=rec["metrics"],
                           verdict=rec["verdict"], verdict_reason=rec["verdict_reason"])
        tx.add_provenance(run_id, variant_id, **prov, extra={"device_facts": rec["metrics"]["device_facts"]})
    store.finish_run(run_id, "done", {"measurements": 1})
    m = rec["metrics"]
    if args.json:
        print(json.dumps({k: v for k, v in rec.items() if k not in ("samples", "predictions")} | {"run_id": run_id}, default=str))
    else:
        print(f"{args.device} {args.runtime}: p50 {rec['p50_ms']:.3f} ms  p90 {rec['p90_ms']:.3f} ms  p99 {rec['p99_ms']:.3f} ms "
              f"({m['count']} runs)  {_memory_text(m.get('memory') or {}, rec['peak_rss_bytes'])}  accuracy "
              f"{rec['accuracy']:.4f} on {rec['n']} rows  max logit drift vs host onnxruntime {m['max_logit_drift']:.2e} "
              f"({m['predictions_agree']}/{rec['n']} predictions agree)  "
              f"{rec['verdict']}{': ' + rec['verdict_reason'] if rec['verdict_reason'] else ''}")
        if e := m.get("end_to_end"):
            print(f"end to end (text -> label, {e['tokenizer']}): p50 {e['p50_ms']:.3f} ms  p90 {e['p90_ms']:.3f} ms  "
                  f"({e['count']} sentences; labels agree with the model pass on {e['predictions_agree']}/{e['n']})")
        if p := m.get("profile"):
            print(profile_text(p))
        print(f"stored as run {run_id} in {args.db}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("devices", help="the device inventory: list it, or probe every device")
    dsub = p.add_subparsers(dest="devices_command", required=True)
    for name, fn, text in (("list", cmd_list, "print the inventory"),
                           ("check", cmd_check, "probe every device; print a health table")):
        q = dsub.add_parser(name, help=text)
        q.add_argument("--inventory", default=DEFAULT_INVENTORY, help="inventory file (default: inventory.yaml)")
        if name == "check":
            q.add_argument("--json", action="store_true")
            q.add_argument("--null", action="store_true",
                           help="also time the null model on each device: the harness's latency floor")
        q.set_defaults(fn=fn)

    p = sub.add_parser("measure", help="build if needed, deploy, run and store one measurement of a model on a device")
    p.add_argument("artifact", help="artifact folder (or a Hugging Face model folder)")
    p.add_argument("--device", required=True)
    p.add_argument("--runtime", choices=["tvm", "onnxruntime", "openvino"], default="onnxruntime")
    p.add_argument("--inventory", default=DEFAULT_INVENTORY)
    p.add_argument("--data", help="labelled dev file (default: the embedded SST-2 dev set)")
    p.add_argument("--seq-len", type=int_in(8, 512), default=MEASURE_DEFAULTS.seq_len)
    p.add_argument("--rows", type=int_in(1), default=None, help="dev rows to run on the device (default: all)")
    p.add_argument("--warmup", type=int_in(0), default=MEASURE_DEFAULTS.warmup)
    p.add_argument("--min-count", type=int_in(1), default=MEASURE_DEFAULTS.min_count)
    p.add_argument("--min-duration-s", type=float_in(0), default=MEASURE_DEFAULTS.min_duration_s)
    p.add_argument("--max-duration-s", type=float_in(0, strict=True), default=MEASURE_DEFAULTS.max_duration_s)
    p.add_argument("--trials", type=int_in(0), default=MEASURE_DEFAULTS.trials,
                   help="MetaSchedule tuning trials for TVM (0: untuned)")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    p.add_argument("--db", default=DEFAULT_DATABASE, help="results database file or SQLAlchemy URL")
    p.add_argument("--profile", action="store_true",
                   help="also record the time per operator (after the timed pass; stored and printed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_measure)
