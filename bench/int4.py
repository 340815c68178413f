"""INT4 against INT8 under onnxruntime at batch 1: which MatMulNBits settings run the student fastest.

    python bench/int4.py                       # the 2x256 and 4x256 students, seq 64, 2 threads, 5 rounds
    python bench/int4.py --shapes 2x256 --rounds 3

For each student shape (random weights: latency does not depend on them; bytes are exact) it exports the INT8
artifact (DynamicQuantizeLinear -> MatMulInteger) and INT4 artifacts: per-channel steps on the INT8 kernels (the
packed bytes unpacked by constant integer ops that onnxruntime folds at load: eibert's default), and on
com.microsoft MatMulNBits with per-channel steps (block = the input width, up to 256) and with blocks of 32, each
at accuracy level 4 (int8 activations, integer dot products: what eibert exports) and level 0 (fp32
activations). Every model is timed in the same process, interleaved round by round (a round runs each
model --runs times after a warm-up; the p50 of each is kept; the median over rounds is reported), so that ratios
come from one run. Writes bench/results/int4.json and the int4 section of docs/results.md. Time it on an idle
machine: nothing else on the cores.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mdsection import replace_section  # noqa: E402
from eibutil import atomic_write_json  # noqa: E402

SHAPES = {"2x256": {"layers": 2, "hidden": 256, "heads": 8, "ffn": 512},
          "4x256": {"layers": 4, "hidden": 256, "heads": 8, "ffn": 512}}
# (name, bits, block, int4 kernel, MatMulNBits accuracy level)
VARIANTS = [("int8", 8, None, None, None), ("int4 per-channel, INT8 kernels", 4, None, "int8", None),
            ("int4 per-channel, MatMulNBits level 4", 4, None, "nbits", 4),
            ("int4 per-channel, MatMulNBits level 0", 4, None, "nbits", 0),
            ("int4 block 32, MatMulNBits level 4", 4, 32, "nbits", 4), ("int4 block 32, MatMulNBits level 0", 4, 32, "nbits", 0)]


def export(shape: dict, bits: int, block: int | None, kernel: str | None, level: int | None, out: Path) -> int:
    """The folded student with random weights, quantized and exported; MatMulNBits nodes set to `level`."""
    import onnx
    import torch

    from eibert.deploy_layers import to_deploy
    from eibert.export import export_onnx
    from eibert.quant import QuantSettings, quantize
    from eibert.student import Student, StudentSpec, fold_head

    torch.manual_seed(0)
    spec = StudentSpec(vocab_size=5000, num_labels=2, teacher_hidden=384, max_positions=64, embedding_size=128,
                       integrate=True, **shape)
    model = fold_head(Student(spec).eval())
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    q = QuantSettings(granularity="per-channel", method="minmax", bits=bits, block=block)
    export_onnx(to_deploy(quantize(model, replace(q)), int4_kernel=kernel or "int8"), out, spec.vocab_size)
    if level is not None:
        m = onnx.load(str(out))
        for node in m.graph.node:
            if node.op_type == "MatMulNBits":
                for a in node.attribute:
                    if a.name == "accuracy_level":
                        a.i = level
        onnx.save(m, str(out))
    return out.stat().st_size


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def p50_ms(sess, feed: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(["logits"], feed)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/int4.json")
    ap.add_argument("--md", type=Path, default=ROOT / "docs/results.md")
    args = ap.parse_args()
    command = " ".join(["python bench/int4.py", shlex.join(sys.argv[1:])]).strip()
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(1, 5000, (1, args.seq)).astype(np.int64),
            "attention_mask": np.ones((1, args.seq), dtype=np.int64)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = []
        for sname in args.shapes:
            for name, bits, block, kernel, level in VARIANTS:
                path = Path(tmp) / f"{sname}-{len(models)}.onnx"
                size = export(SHAPES[sname], bits, block, kernel, level, path)
                models.append(({"shape": sname, "variant": name, "bits": bits, "block": block, "kernel": kernel,
                                "accuracy_level": level,
                                "model_onnx_bytes": size}, session(path, args.threads)))
        for _, sess in models:  # warm-up
            p50_ms(sess, feed, 50)
        per = [[] for _ in models]
        for _ in range(args.rounds):
            for i, (_, sess) in enumerate(models):
                per[i].append(p50_ms(sess, feed, args.runs))
    for (meta, _), p50s in zip(models, per):
        rows.append({**meta, "p50_ms": statistics.median(p50s), "p50_ms_rounds": p50s})
    for r in rows:
        base = next(b for b in rows if b["shape"] == r["shape"] and b["bits"] == 8)
        r["vs_int8"] = r["p50_ms"] / base["p50_ms"]
    host = f"{os.cpu_count()} CPU cores, {args.threads} threads, onnxruntime " + __import__("onnxruntime").__version__
    atomic_write_json(args.out, {"command": command, "host": host, "seq_len": args.seq, "rows": rows})
    lines = ["## INT4 against INT8 under onnxruntime (batch 1)", "",
             f"Produced by `{command}` (`bench/results/int4.json`) on {host}, seq {args.seq}; random weights, exact bytes; "
             "every model timed in one process, interleaved over rounds (median of the rounds' p50s).", "",
             "| shape | artifact | model.onnx bytes | p50 ms | vs INT8 |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['shape']} | {r['variant']} | {r['model_onnx_bytes']:,} | {r['p50_ms']:.3f} | {r['vs_int8']:.2f}x |"
              for r in rows]
    for sname in args.shapes:
        rs = [r for r in rows if r["shape"] == sname and r["bits"] == 4]
        best = min(rs, key=lambda r: r["p50_ms"])
        small = min(rs, key=lambda r: r["model_onnx_bytes"])
        lines += ["", f"{sname}: fastest INT4 form **{best['variant']}**, {best['vs_int8']:.2f}x the INT8 artifact's p50 "
                  f"({best['model_onnx_bytes']:,} bytes); smallest {small['variant']} ({small['model_onnx_bytes']:,} bytes, "
                  f"{small['vs_int8']:.2f}x)."]
    lines += ["", "eibert exports INT4 layers with one step a row on the INT8 kernels (the file holds the packed bytes and "
              "a few integer ops that onnxruntime folds at load, so memory holds int8) and block-wise ones as MatMulNBits."]
    replace_section(args.md, "int4", "\n".join(lines))
    print(json.dumps([{k: r[k] for k in ("shape", "variant", "model_onnx_bytes", "p50_ms", "vs_int8")} for r in rows], indent=1))


if __name__ == "__main__":
    main()
