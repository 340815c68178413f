"""The EI-BERT ablation on the full SST-2: size and dev accuracy of every compression stage.

    python bench/quality.py                          # all rows; reuses bench/teacher.py's cached teacher
    python bench/quality.py --only cross-kd+int8-lsq --vocab 3000

Rows: the teacher; the pruned-vocabulary student after plain fine-tuning, standard distillation and
cross-distillation (float); cross-distillation + INT8 per-tensor (min-max), per-channel (min-max) and
modular LSQ; and the LSQ model at every other vocabulary size. Accuracy is always the exported
artifact's under onnxruntime on the 872-row dev set. Each finished row is written at once to
`bench/results/quality.json` and `docs/results.md`; everything is cached in `.eib-cache`, so an
interrupted run picks up where it stopped.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eibert.compress import VocabSettings, compress  # noqa: E402
from eibert.data import load_task  # noqa: E402
from eibert.distill import DistillSettings  # noqa: E402
from eibert.quant import QuantSettings  # noqa: E402
from eibert.teacher import finetune_teacher  # noqa: E402
from bench.mdsection import replace_section  # noqa: E402
from eibutil import atomic_write_json  # noqa: E402

BUDGET_BYTES = 2_000_000
TARGET_ACC = 0.88


def plan(args) -> list[tuple[str, str, int, dict, QuantSettings | None]]:
    """(variant, stage, vocab size, distill overrides, quant) for each row, cheapest reuse first."""
    v = args.vocab[len(args.vocab) // 2] if args.main_vocab is None else args.main_vocab
    lsq = QuantSettings(granularity="per-channel", method="lsq", steps_per_block=args.lsq_steps)
    rows = [
        (f"finetune/v{v}", "finetune", v, {"mode": "finetune"}, None),
        (f"standard-kd/v{v}", "standard-kd", v, {"mode": "standard"}, None),
        (f"cross-kd/v{v}", "cross-kd", v, {"mode": "cross"}, None),
        (f"cross-kd+int8-per-tensor/v{v}", "int8-per-tensor", v, {"mode": "cross"}, QuantSettings(granularity="per-tensor", method="minmax")),
        (f"cross-kd+int8-per-channel/v{v}", "int8-per-channel", v, {"mode": "cross"}, QuantSettings(granularity="per-channel", method="minmax")),
        (f"cross-kd+int8-lsq/v{v}", "int8-modular-lsq", v, {"mode": "cross"}, lsq),
    ]
    rows += [(f"cross-kd+int8-lsq/v{o}", "int8-modular-lsq", o, {"mode": "cross"}, lsq) for o in args.vocab if o != v]
    if args.only:
        rows = [r for r in rows if r[0].split("/")[0] in args.only]
    return rows


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "## Compression quality on SST-2 (full train set, 872-row dev set)",
        "",
        f"Produced by `{command}` (`bench/results/quality.json`). Accuracy is the exported artifact's under",
        "onnxruntime (the teacher: PyTorch). Size is the deployed bytes (model.onnx + vocab.txt; the teacher: its",
        f"fp32 weights + vocabulary). Budget: {BUDGET_BYTES:,} bytes and {TARGET_ACC:.1%} dev accuracy.",
        "",
        "| variant | stage | vocab | size bytes | dev accuracy | retention | coverage | [UNK] rate | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ret = r["dev_accuracy"] / r["teacher_dev_accuracy"] if r["teacher_dev_accuracy"] else float("nan")
        cov = f"{r['coverage']:.3f}" if r.get("coverage") is not None else "-"
        unk = f"{r['unk_rate']:.4f}" if r.get("unk_rate") is not None else "-"
        lines.append(f"| {r['variant']} | {r['stage']} | {r.get('vocab_size') or '-'} | {r['size_bytes']:,} | {r['dev_accuracy']:.4f} | "
                     f"{ret:.3f} | {cov} | {unk} | {r['wall_s']:.0f} |")
    met = [r for r in rows if r["stage"] != "teacher" and r["size_bytes"] <= BUDGET_BYTES and r["dev_accuracy"] >= TARGET_ACC]
    lines += ["", f"Rows within the budget (<= {BUDGET_BYTES:,} bytes and >= {TARGET_ACC:.1%}): "
              + (", ".join(r["variant"] for r in met) if met else "none"), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/sst2")
    ap.add_argument("--teacher", default="bundled")
    ap.add_argument("--teacher-epochs", type=float, default=1.0, help="as bench/teacher.py, to reuse its cached teacher")
    ap.add_argument("--vocab", type=int, nargs="+", default=[2000, 3000, 4000])
    ap.add_argument("--main-vocab", type=int, default=None, help="vocabulary size of the ablation ladder (default: the middle one)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--embedding-size", type=int, default=128)
    ap.add_argument("--epochs", type=float, default=1.0, help="student training epochs")
    ap.add_argument("--student-lr", type=float, default=3e-4)
    ap.add_argument("--teacher-lr", type=float, default=1e-5)
    ap.add_argument("--importance-rows", type=int, default=20000)
    ap.add_argument("--lsq-steps", type=int, default=200)
    ap.add_argument("--max-seq-len", type=int, default=64)
    ap.add_argument("--only", nargs="+", help="variant families to run (e.g. cross-kd cross-kd+int8-lsq)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".eib-cache")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/quality.json")
    ap.add_argument("--md", type=Path, default=ROOT / "docs/results.md")
    args = ap.parse_args()
    command = " ".join(["python bench/quality.py", shlex.join(sys.argv[1:])]).strip()

    data = load_task(source="files", train_file=args.data / "train.tsv", dev_file=args.data / "validation.tsv", text_fields=["sentence"])
    t0 = time.perf_counter()
    teacher = finetune_teacher(args.teacher, data, cache_dir=str(args.cache_dir), hp={"epochs": args.teacher_epochs}, max_seq_len=args.max_seq_len)
    tdir = Path(teacher.model_dir)
    t_size = sum((tdir / f).stat().st_size for f in ("model.safetensors", "vocab.txt") if (tdir / f).is_file())
    rows = [{"variant": "teacher", "stage": "teacher", "vocab_size": 30522, "size_bytes": t_size, "dev_accuracy": teacher.dev_accuracy,
             "teacher_dev_accuracy": teacher.dev_accuracy, "wall_s": teacher.train_s if teacher.cache_hit else time.perf_counter() - t0,
             "cache_hit": teacher.cache_hit}]
    student = {"layers": args.layers, "hidden": args.hidden, "heads": args.heads, "ffn": args.ffn, "embedding_size": args.embedding_size}

    def flush() -> None:
        atomic_write_json(args.out, {"command": command, "rows": rows})
        replace_section(args.md, "quality", markdown(rows, command))

    flush()
    for variant, stage, vsize, dist, quant in plan(args):
        t1 = time.perf_counter()
        integrate = dist["mode"] == "cross"
        res = compress(str(tdir), data, student={**student, "integrate": integrate},
                       vocab=VocabSettings(size=vsize, importance_rows=args.importance_rows),
                       distill=DistillSettings(epochs=args.epochs, student_lr=args.student_lr, teacher_lr=args.teacher_lr, **dist),
                       quant=quant, cache_dir=str(args.cache_dir), max_seq_len=args.max_seq_len)
        rows.append({
            "variant": variant, "stage": stage, "vocab_size": vsize, "size_bytes": res["size_bytes"], "dev_accuracy": res["dev_accuracy"],
            "teacher_dev_accuracy": teacher.dev_accuracy, "wall_s": time.perf_counter() - t1, "float_dev_accuracy": res["float_dev_accuracy"],
            "max_logit_diff_vs_torch": res["max_logit_diff_vs_torch"], "parts": res["parts"], "coverage": res["stages"]["vocab"]["coverage"],
            "unk_rate": res["stages"]["vocab"]["unk_rate"], "quant": quant.to_json() if quant else None, "cache_hit": res["cache_hit"],
            "student_train_s": res["stages"]["student"]["wall_s"], "teacher_dev_accuracy_after": res["stages"]["student"].get("teacher_dev_accuracy_after"),
            "artifact_dir": res["artifact_dir"],
        })
        flush()
        print(json.dumps({k: rows[-1][k] for k in ("variant", "size_bytes", "dev_accuracy", "wall_s")}), flush=True)


if __name__ == "__main__":
    main()
