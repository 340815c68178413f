"""The INT8 artifact against onnxruntime's own references and TVM, in one run on the local device: the
artifact's model.onnx (integer format), the same student exported in fp32 (its int8 weights dequantized
and folded), that fp32 file through `onnxruntime.quantization.quantize_dynamic` (MatMulInteger), and
the artifact built by TVM (untuned and tuned, `--tvm-trials`). All are measured interleaved (round after
round, each through the same on-device runner the harness uses), with model memory (the process's peak
minus its baseline after the runtime import) and process memory; dev accuracy on every row of the dev
set for the onnxruntime rows (host onnxruntime, one row per call), on-device accuracy on the measured
rows for TVM.

    python bench/int8.py                       # the shipped model, models/sst2-2mb; TVM untuned and 64 trials
    python bench/int8.py --student ARTIFACT --rounds 5 --tvm-trials 0

Writes `ort_reference` in bench/results/latency.json (other keys kept) and the `int8` section of docs/results.md.
TVM builds and tuning records live in --cache-dir (outside the work tree), so a rerun reuses them.
"""

import argparse
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mdsection import replace_section  # noqa: E402
from devices.inventory import DeviceSpec  # noqa: E402
from eibert.data import load_task  # noqa: E402
from eibutil import atomic_write_json  # noqa: E402
from harness.measure.run import MeasureSettings, build_for, measure_on_device  # noqa: E402

OUT = ROOT / "bench/results/latency.json"


def variants(artifact: Path, tmp: Path) -> dict[str, Path]:
    """Three artifact folders that differ only in model.onnx."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from eibert.export import load_deploy_model

    out = {"artifact (integer format)": artifact}
    fp32, dyn = tmp / "fp32", tmp / "dynamic"
    for d in (fp32, dyn):
        shutil.copytree(artifact, d)
    model = load_deploy_model(artifact)
    ids = torch.ones((1, 16), dtype=torch.long)
    torch.onnx.export(model, (ids, torch.ones_like(ids)), str(fp32 / "model.onnx"), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], opset_version=17, dynamo=False, do_constant_folding=True,
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}, "logits": {0: "b"}})
    quantize_dynamic(str(fp32 / "model.onnx"), str(dyn / "model.onnx"), weight_type=QuantType.QInt8)
    restamp(fp32), restamp(dyn)
    out["same student, fp32"] = fp32
    out["fp32 + quantize_dynamic"] = dyn
    return out


def restamp(folder: Path) -> None:
    """A copied artifact whose model.onnx was swapped: its manifest names the new file's size and sha256, so the
    artifact checks (eibert/verify.py) accept it as what it is."""
    from eibutil import sha256_file

    man = json.loads((folder / "manifest.json").read_text())
    man["files"]["model.onnx"].update(bytes=(folder / "model.onnx").stat().st_size, sha256=sha256_file(folder / "model.onnx"))
    atomic_write_json(folder / "manifest.json", man)


def nncf_int8(fp32: Path, tmp: Path, seq_len: int) -> Path:
    """OpenVINO's own INT8 reference: NNCF post-training quantization (transformer preset) of the fp32 student's ONNX
    file, calibrated on the same 200 training rows as our QDQ export (never dev); a copy of the fp32 folder."""
    import nncf
    import numpy as np
    import onnx

    from eibert.deploy import prepare_inputs
    from eibert.qdq import CALIBRATION_ROWS

    out = tmp / "nncf"
    shutil.copytree(fp32, out)
    prepare_inputs(fp32, load_task().train, seq_len, tmp / "nncf-calibration.npz", limit=CALIBRATION_ROWS)
    d = np.load(tmp / "nncf-calibration.npz")
    items = [{"input_ids": d["input_ids"][i : i + 1], "attention_mask": d["attention_mask"][i : i + 1]}
             for i in range(len(d["input_ids"]))]
    q = nncf.quantize(onnx.load(str(fp32 / "model.onnx")), nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=len(items))
    onnx.save(q, str(out / "model.onnx"))
    restamp(out)
    return out


def dev_accuracy(folder: Path, data_file: Path) -> float:
    from eibert.evaluate import evaluate

    return evaluate(str(folder), data_file)["accuracy"]  # what `eib evaluate` prints: one row per call


def openvino_accuracy(model: Path, folder: Path, data_file: Path, threads: int) -> float:
    """Dev accuracy of `model` run by OpenVINO on the host, one row per call, tokenised as `eib evaluate` does."""
    import numpy as np
    import openvino as ov

    from eibert.data import load_eval_file
    from eibert.deploy import prepare_inputs

    with tempfile.TemporaryDirectory() as tmp:
        prepare_inputs(folder, load_eval_file(data_file)[0], 64, Path(tmp) / "dev.npz")
        d = np.load(Path(tmp) / "dev.npz")
    compiled = ov.Core().compile_model(str(model), "CPU", {"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    preds = [int(req.infer([d["input_ids"][i : i + 1], d["attention_mask"][i : i + 1]])[compiled.output(0)].argmax())
             for i in range(len(d["labels"]))]
    return float((np.array(preds) == d["labels"]).mean())


def targets(out: list[dict]) -> list[dict]:
    """The benchmark's targets, judged on this run's medians (only those whose rows were measured)."""
    by = {r["model"]: r for r in out}
    nncf, qdq = by.get("NNCF INT8 of the fp32 student, OpenVINO"), by.get("QDQ export, OpenVINO")
    art = by.get("artifact (integer format)")
    tvm = min((r for r in out if r["runtime"] == "tvm"), key=lambda r: r["p50_ms"], default=None)
    res = []
    if nncf and qdq:
        ratio = qdq["p50_ms"] / nncf["p50_ms"]
        res.append({"target": "OpenVINO on our QDQ export within 1.1x of OpenVINO's NNCF INT8 (p50)",
                    "measured": f"{ratio:.2f}x", "met": ratio <= 1.1})
    if qdq and art:
        d = 100 * (qdq["dev_accuracy"] - art["dev_accuracy"])
        res.append({"target": "QDQ export on OpenVINO within 0.3 points of the artifact's dev accuracy",
                    "measured": f"{d:+.2f} points",
                    "met": abs(d) <= 0.3})
    if nncf and tvm:
        ratio = tvm["p50_ms"] / nncf["p50_ms"]
        res.append({"target": f"TVM p50 <= OpenVINO NNCF INT8 p50 ({tvm['model']})",
                    "measured": f"{tvm['p50_ms']:.3f} vs {nncf['p50_ms']:.3f} ms ({ratio:.2f}x)",
                    "met": ratio <= 1.0})
        mem = tvm["model_peak_bytes"] / nncf["model_peak_bytes"]
        res.append({"target": "TVM model memory <= 1/4 of OpenVINO NNCF INT8's", "measured": f"{mem:.2f}x", "met": mem <= 0.25})
    return res


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", default=str(ROOT / "models/sst2-2mb"), help="artifact folder (default: the shipped model)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-duration-s", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dev-file", type=Path, default=ROOT.parent / "shared/datasets/sst2/validation.tsv")
    ap.add_argument("--tvm-trials", type=int, nargs="*", default=[0, 64],
                    help="TVM builds to add (MetaSchedule trials; none: no TVM)")
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache/eibert/bench-int8",
                    help="TVM builds and tuning records")
    ap.add_argument("--openvino", action=argparse.BooleanOptionalAction, default=True,
                    help="add the QDQ export (onnxruntime, OpenVINO) and OpenVINO on the fp32 student")
    ap.add_argument("--nncf", action=argparse.BooleanOptionalAction, default=True,
                    help="with --openvino: add NNCF's INT8 quantization of the fp32 student, run by OpenVINO (needs nncf)")
    args = ap.parse_args()
    if not args.student:
        sys.exit("no student artifact: run bench/quality.py first or pass --student ARTIFACT_DIR")
    return args


def row(name: str, runtime: str, model_file: Path, dev_accuracy: float | None, **extra) -> dict:
    return {"model": name, "runtime": runtime, "file_bytes": model_file.stat().st_size, "dev_accuracy": dev_accuracy,
            "rounds": [], **extra}


def openvino_jobs(args, folders: dict[str, Path], tmp: Path) -> list[tuple[dict, Path, str, None]]:
    """The QDQ export through onnxruntime and OpenVINO; OpenVINO on the fp32 student as its own reference; NNCF."""
    from eibert.qdq import qdq_model

    qdq = tmp / "qdq"
    shutil.copytree(args.student, qdq)
    shutil.copy2(qdq_model(args.student, args.cache_dir, load_task().train, 64), qdq / "model.onnx")
    restamp(qdq)
    fp32 = folders["same student, fp32"]
    jobs = [(row("QDQ export", "onnxruntime", qdq / "model.onnx", dev_accuracy(qdq, args.dev_file)), qdq, "onnxruntime", None)]
    ov = [("QDQ export, OpenVINO", Path(args.student), qdq), ("same student fp32, OpenVINO", fp32, fp32)]
    if args.nncf:
        nn = nncf_int8(fp32, tmp, 64)
        ov.append(("NNCF INT8 of the fp32 student, OpenVINO", nn, nn))
    for name, f, src in ov:
        acc = openvino_accuracy(src / "model.onnx", f, args.dev_file, args.threads)
        jobs.append((row(name, "openvino", src / "model.onnx", acc), f, "openvino", None))
    return jobs


def tvm_jobs(args, target: str, st) -> list[tuple[dict, Path, str, dict]]:
    """One TVM build per --tvm-trials, all built before the first round: no build shares the CPU with a measurement."""
    jobs = []
    for trials in args.tvm_trials:
        b = build_for(args.student, target, replace(st, trials=trials), args.cache_dir)
        name = f"artifact, TVM {'tuned ' + str(trials) + ' trials' if trials else 'untuned'}"
        keep = ("build_s", "tune_s", "tasks", "new_tasks", "cache_hit", "lib_sha256", "int8_layers")
        r = {"model": name, "runtime": "tvm", "file_bytes": b["lib_bytes"], "dev_accuracy": None, "rounds": [],
             "build": {k: b.get(k) for k in keep}}
        jobs.append((r, Path(args.student), "tvm", b))
    return jobs


def measure_rounds(jobs: list, spec, st, rounds: int, cache: Path) -> None:
    """Each round measures every job in turn (interleaved), appending to its row's rounds."""
    dev = load_task().dev
    for k in range(rounds):
        for r, f, runtime, b in jobs:
            rec = measure_on_device(f, "local", spec, runtime, dev, st, cache, build=b)
            mem = rec["metrics"]["memory"]
            r["rounds"].append({"p50_ms": rec["p50_ms"], "p90_ms": rec["p90_ms"], "model_peak_bytes": mem["model_peak_bytes"],
                                "model_resident_bytes": mem["model_resident_bytes"], "peak_rss_bytes": rec["peak_rss_bytes"],
                                "drift": rec["metrics"]["max_logit_drift"], "accuracy": rec["accuracy"], "n": rec["n"]})
            print(f"round {k + 1} {r['model']:28s} p50 {rec['p50_ms']:.3f} ms  model memory "
                  f"{mem['model_peak_bytes'] / 2**20:.1f} MiB", flush=True)


def medians(rows: list[dict]) -> list[dict]:
    """Each row with the medians over its rounds and its p50 against fp32 + quantize_dynamic."""
    out = []
    for r in rows:
        med = lambda key, r=r: statistics.median(x[key] for x in r["rounds"])
        out.append({**r, "p50_ms": med("p50_ms"), "p90_ms": med("p90_ms"), "model_peak_bytes": med("model_peak_bytes"),
                    "device_accuracy": r["rounds"][0]["accuracy"], "device_rows": r["rounds"][0]["n"],
                    "model_resident_bytes": med("model_resident_bytes"), "peak_rss_bytes": med("peak_rss_bytes")})
    ref = next(r for r in out if r["model"] == "fp32 + quantize_dynamic")
    for r in out:
        r["p50_vs_quantize_dynamic"] = r["p50_ms"] / ref["p50_ms"]
    return out


def markdown(res: dict, args) -> str:
    lines = ["## INT8 against onnxruntime's references (local device, batch 1, seq 64)", "",
             f"`{res['command'].strip()}`: {args.rounds} interleaved rounds through the on-device runner "
             f"({args.threads} threads, >= 200 runs and {args.min_duration_s:g} s each; medians over rounds), "
             f"{res['wall_s']:.0f} s wall. Model memory: the process's peak minus its resident size once "
             f"the runtime is imported. Accuracy: onnxruntime rows, `eib evaluate` on {args.dev_file.name} (all rows, one row "
             "per call); TVM rows, on the device over the measured rows (its integer kernels where the CPU's flags allow: "
             "`int8_path` in the build record). File bytes: model.onnx, or TVM's model.so. OpenVINO rows: dev accuracy on "
             "the host by OpenVINO, one row per call; the QDQ export's activation steps and NNCF's are calibrated on the same "
             "200 training rows (never dev); NNCF ran its transformer preset (smooth quant, fast bias correction).", "",
             "| model | runtime | file bytes | p50 ms | p90 ms | p50 vs quantize_dynamic | model memory MiB (peak / resident) | "
             "process peak MiB | accuracy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        acc = (f"{100 * r['dev_accuracy']:.2f}% (dev)" if r["dev_accuracy"] is not None
               else f"{100 * r['device_accuracy']:.2f}% ({r['device_rows']} rows)")
        lines.append(f"| {r['model']} | {r['runtime']} | {r['file_bytes']:,} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | "
                     f"{r['p50_vs_quantize_dynamic']:.2f}x | {r['model_peak_bytes'] / 2**20:.1f} / "
                     f"{r['model_resident_bytes'] / 2**20:.1f} | {r['peak_rss_bytes'] / 2**20:.1f} | {acc} |")
    lines += ["", "Targets (issue #24), judged in this run:", ""]
    lines += [f"- {t['target']}: {t['measured']} -> **{'met' if t['met'] else 'not met'}**" for t in res["targets"]] \
        or ["- not judged: the run lacks the NNCF or TVM rows they compare"]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    spec = DeviceSpec(transport="local", target="x86-64-host", threads=args.threads, workdir="/tmp/eib-bench-int8",
                      runtimes=["onnxruntime", "tvm", "openvino"])
    st = MeasureSettings(seq_len=64, rows=64, warmup=20, min_count=200, min_duration_s=args.min_duration_s, null_floor=False)
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="eib-int8-") as tmp:
        folders = variants(Path(args.student), Path(tmp))
        jobs = [(row(name, "onnxruntime", f / "model.onnx", dev_accuracy(f, args.dev_file)), f, "onnxruntime", None)
                for name, f in folders.items()]
        jobs += openvino_jobs(args, folders, Path(tmp)) if args.openvino else []
        jobs += tvm_jobs(args, spec.target, st)
        measure_rounds(jobs, spec, st, args.rounds, Path(tmp) / "cache")
    out = medians([r for r, *_ in jobs])
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc["ort_reference"] = {"command": "python bench/int8.py " + shlex.join(sys.argv[1:]), "student": str(args.student),
                            "rows": out, "threads": args.threads, "wall_s": round(time.time() - t_start, 1),
                            "targets": targets(out)}
    atomic_write_json(OUT, doc)
    replace_section(ROOT / "docs/results.md", "int8", markdown(doc["ort_reference"], args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
