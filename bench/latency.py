"""Latency on the local device, batch 1: the teacher and the compressed student under onnxruntime and
under TVM (untuned, and tuned with MetaSchedule for a stated number of trials), at two sequence lengths,
all measured in one run through the same agent and on-device runner the harness uses.

    python bench/latency.py                    # seq 64 and 128, 200 tuning trials per model and length
    python bench/latency.py --trials 500 --seq 64

Writes bench/results/latency.json ({"rows": [...]}: model, runtime, tuned, trials, seq_len, p50/p90/p99_ms,
peak_rss_bytes, accuracy on the first --rows dev rows, build facts) and the table in docs/results.md.
Ratios are against onnxruntime running the teacher at the same length, from the same run. Latency from
an emulated device is never mixed in here: every row is native (`emulated: false`).
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mdsection import replace_section  # noqa: E402
from devices.inventory import DeviceSpec  # noqa: E402
from eibert.data import load_task  # noqa: E402
from eibutil import atomic_write_json  # noqa: E402
from harness.measure.run import MeasureSettings, build_for, measure_on_device  # noqa: E402
from harness.measure.run import max_positions as positions  # noqa: E402

OUT = ROOT / "bench/results/latency.json"


def long_student() -> str | None:
    """The 128-position student built by `eib compress bench/configs/student-128.yaml`."""
    db = ROOT / ".eib-cache/bench-student-128/eib.sqlite"
    if not db.exists():
        return None
    from harness.results.store import Store

    store = Store(str(db))
    run = store.latest_run("bench-student-128")
    for r in store.stage_results(run["run_id"]) if run else []:
        d = (r["output"] or {}).get("artifact_dir") if r["stage"] == "artifact" and r["status"] == "ok" else None
        if d and Path(d).exists():
            return d
    return None


def default_models() -> tuple[str, str | None]:
    teacher, student = "bundled", None
    t = ROOT / "bench/results/teacher.json"
    if t.exists():
        d = json.loads(t.read_text())["rows"][0].get("model_dir")
        teacher = d if d and Path(d).exists() else teacher
    q = ROOT / "bench/results/quality.json"
    if q.exists():
        rows = [r for r in json.loads(q.read_text())["rows"] if r.get("artifact_dir") and Path(r["artifact_dir"]).exists()
                and r.get("size_bytes", 1e12) <= 2_000_000]
        if rows:
            student = max(rows, key=lambda r: r["dev_accuracy"])["artifact_dir"]
    return teacher, student


def table(rows: list[dict]) -> str:
    lines = ["| model | runtime | seq | p50 ms | p90 ms | p99 ms | vs ORT teacher (p50) | peak RSS MiB | accuracy "
             "(rows) | build |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        build = "-"
        if r["runtime"] == "tvm":
            build = f"{r['build_s']:.0f} s" + (f", tuned {r['trials']} trials ({r['tune_s']:.0f} s, {r['new_tasks']} new tasks)"
                                               if r["tuned"] else ", untuned")
            build += f", .so {r['lib_bytes'] / 1e6:.2f} MB"
        rt = r["runtime"] + (" tuned" if r["tuned"] else " untuned" if r["runtime"] == "tvm" else "")
        lines.append(f"| {r['model']} | {rt} | {r['seq_len']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['speedup_vs_ort_teacher']:.2f}x | {r['peak_rss_bytes'] / 2**20:.0f} | {r['accuracy']:.3f} "
                     f"({r['n']}) | {build} |")
    return "\n".join(lines)


def section(doc: dict, threads: int, min_count: int, min_duration_s: float) -> str:
    rows = doc["rows"]
    models = sorted({(r["model"], r["seq_len"], r["model_path"]) for r in rows}, key=lambda m: (m[1], m[0]))
    which = "; ".join(f"{m} at {s}: `{Path(p).name}`" + (f" ({positions(p)} positions)" if positions(p) else "")
                      for m, s, p in models)
    return ("## Latency on the local device (batch 1)\n\n"
            f"`{doc['command'].strip()}` on this machine (2 cores, {threads} runtime threads), "
            f"one run, {doc['wall_s']:.0f} s wall. Every number is a native measurement through the on-device runner "
            "(nearest-rank percentiles over single inferences; at least "
            f"{min_count} runs and {min_duration_s:g} s each). Ratios: onnxruntime on the teacher at the same length "
            "divided by the row's p50. Accuracy is on-device, over the first dev rows only. Models: " + which + ". "
            "The student at 64 is the best <= 2 MB artifact of bench/quality.py (full SST-2, 64 positions); the one at 128 has "
            "the same architecture with 128 positions (bench/configs/student-128.yaml, embedded sample), so its accuracy is not "
            "comparable with the row at 64. Build times of cached builds are those of the original build.\n\n" + table(rows))


def main() -> int:
    teacher, student = default_models()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", default=teacher)
    ap.add_argument("--student", default=student)
    ap.add_argument("--student-long", default=long_student(),
                    help="student for lengths beyond --student's positions (default: built by bench/configs/student-128.yaml)")
    ap.add_argument("--seq", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--rows", type=int, default=64, help="dev rows run for on-device accuracy")
    ap.add_argument("--min-count", type=int, default=50)
    ap.add_argument("--min-duration-s", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(ROOT / ".eib-cache"))
    args = ap.parse_args()
    if not args.student:
        sys.exit("no student artifact: run bench/quality.py first or pass --student ARTIFACT_DIR")
    spec = DeviceSpec(transport="local", target="x86-64-host", threads=args.threads, workdir="/tmp/eib-bench-latency")
    dev = load_task().dev
    rows: list[dict] = []
    t_start = time.time()
    for seq in args.seq:
        student = args.student if (positions(args.student) or seq) >= seq else args.student_long
        if not student or (positions(student) or seq) < seq:
            sys.exit(f"no student with {seq} positions: run `eib compress bench/configs/student-128.yaml` or pass --student-long")
        for model, path in (("teacher", args.teacher), ("student", student)):
            for runtime, trials in (("onnxruntime", 0), ("tvm", 0), ("tvm", args.trials)):
                st = MeasureSettings(seq_len=seq, rows=args.rows, warmup=5, min_count=args.min_count,
                                     min_duration_s=args.min_duration_s, max_duration_s=120, trials=trials, build_timeout_s=3600)
                t0 = time.time()
                build = build_for(path, spec.target, st, Path(args.cache_dir)) if runtime == "tvm" else None
                rec = measure_on_device(path, "local", spec, runtime, dev, st, args.cache_dir, build=build)
                m = rec["metrics"]
                row = {"model": model, "runtime": runtime, "tuned": bool(trials), "trials": trials, "seq_len": seq,
                       "p50_ms": rec["p50_ms"], "p90_ms": rec["p90_ms"], "p99_ms": rec["p99_ms"], "count": m["count"],
                       "peak_rss_bytes": rec["peak_rss_bytes"], "rss_runtime_bytes": m["rss_runtime_bytes"],
                       "accuracy": rec["accuracy"], "n": rec["n"], "max_logit_drift": m["max_logit_drift"],
                       "model_bytes": m["model_bytes"], "device": "local", "emulated": False, "threads": args.threads,
                       "verdict": rec["verdict"], "verdict_reason": rec["verdict_reason"], "wall_s": round(time.time() - t0, 1),
                       "model_path": str(path)}
                if build:
                    row.update(build_s=build["build_s"], lib_bytes=build["lib_bytes"], tune_s=build.get("tune_s"),
                               tasks=build.get("tasks"), new_tasks=build.get("new_tasks"), build_cache_hit=build["cache_hit"])
                ref = next((r for r in rows if r["model"] == "teacher" and r["runtime"] == "onnxruntime"
                            and r["seq_len"] == seq), row)
                row["speedup_vs_ort_teacher"] = ref["p50_ms"] / row["p50_ms"]
                rows.append(row)
                print(f"{model:8s} {runtime:12s} trials={trials:4d} seq={seq:4d} p50={row['p50_ms']:9.3f} ms  "
                      f"p99={row['p99_ms']:9.3f} ms  x{row['speedup_vs_ort_teacher']:.2f} vs ORT teacher  "
                      f"acc={row['accuracy']:.3f}  {row['wall_s']:.0f}s", flush=True)
                atomic_write_json(OUT, {"command": "python bench/latency.py " + shlex.join(sys.argv[1:]), "rows": rows,
                                        "wall_s": round(time.time() - t_start, 1)})
    body = section(json.loads(OUT.read_text()), args.threads, args.min_count, args.min_duration_s)
    replace_section(ROOT / "docs/results.md", "latency", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
