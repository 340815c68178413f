"""The frontier's rows: each candidate and seed trained through compress, or taken from a stored result of the same
key, and timed on the local device.

A row's key is its artifact's (eibert.compress.planned_key computes it without training), so a row stored in a
results file (the frontier's own --out, or bench/quality.py's rows of the same recipe) is the row that training would
give: a cache that lost the student takes the row instead of training it again (~1-2 h each on one core). The key
starts from the fine-tuned structural teacher's bytes, so this holds where that fine-tune reproduces bit for bit: on
the machine that made the row, not across CPUs (session 21's AMD EPYC fine-tuned a MiniLM whose 5,000-token
vocabulary differs from the previous machine's from token 2,749 on: every key differed there, nothing was taken).
Timing needs the artifact's files: the cache's, or a folder whose model.onnx has the row's sha256 (the shipped model).
"""

import json
import time
from pathlib import Path

from bench.ladder import CKPT_EVERY, MAX_SEQ_LEN, STUDENT, weights_recipe
from eibutil.files import sha256_file
from eibutil.stats import wilson

# name: (student shape, vocabulary size, weight bits); in the order they train (the 2 MB comparison first)
CANDIDATES = {
    "2x256-int8": ({"layers": 2, "hidden": 256, "ffn": 512}, 5000, 8),
    "4x256-f384-int4": ({"layers": 4, "hidden": 256, "ffn": 384}, 5000, 4),  # 4x256 with ffn 512 is 2.06 MB
    "3x256-f768-int4": ({"layers": 3, "hidden": 256, "ffn": 768}, 5000, 4),
    "4x192-int4": ({"layers": 4, "hidden": 192, "heads": 6, "ffn": 768}, 5000, 4),
    "2x256-int4": ({"layers": 2, "hidden": 256, "ffn": 512}, 5000, 4),
    "1x256-int8": ({"layers": 1, "hidden": 256, "ffn": 512}, 5000, 8),
    "2x128-int8-v3000": ({"layers": 2, "hidden": 128, "heads": 4, "ffn": 512}, 3000, 8),
    "4x128-f256-int4-v3000": ({"layers": 4, "hidden": 128, "heads": 4, "ffn": 256}, 3000, 4),  # ffn 512: 1.05 MB
    "2x192-int4-v3000": ({"layers": 2, "hidden": 192, "heads": 6, "ffn": 768, "embedding_size": 96}, 3000, 4),
}
ROW_FIELDS = ("size_bytes", "parts", "dev_accuracy", "dev_ci95", "selection_accuracy", "key", "artifact_dir",
              "artifact_sha256", "wall_s", "predictions")  # what a stored row of another benchmark must give


def compress_args(name: str, seed: int, ctx: dict) -> dict:
    """Every argument of compress for this candidate and seed but the step hook (the recipe of ctx's rung)."""
    from eibert.compress import VocabSettings
    from eibert.distill import DistillSettings

    shape, vocab, bits = CANDIDATES[name]
    rung = ctx["rung"]
    quant, phases, qat = weights_recipe(rung["phases"], bits)  # INT4: quantization-aware from the prediction phase on
    return {"student": {**STUDENT, **shape}, "vocab": VocabSettings(size=vocab, importance_rows=20000),
            "distill": DistillSettings(mode="cross", seed=seed, phases=phases, ckpt_every=CKPT_EVERY, qat=qat),
            "quant": quant, "cache_dir": ctx["cache_dir"], "max_seq_len": MAX_SEQ_LEN, "augment": rung["augment"],
            "fold": True, "targets": ctx["targets"], "transfer": ctx["transfer"]}


def describe(name: str, seed: int, ctx: dict) -> dict:
    shape, vocab, bits = CANDIDATES[name]
    return {"candidate": name, "bits": bits, "layers": shape["layers"], "hidden": shape["hidden"], "vocab_size": vocab,
            "seed": seed, "qat": compress_args(name, seed, ctx)["distill"].qat is not None}


def train(name: str, seed: int, ctx: dict) -> dict:
    """One candidate and seed through compress (cached by content): the row of its artifact."""
    from eibert.compress import compress

    t0 = time.perf_counter()
    res = compress(ctx["tdir"], ctx["data"], on_step=ctx["on_step"], **compress_args(name, seed, ctx))
    art = Path(res["artifact_dir"])
    return {**describe(name, seed, ctx), "size_bytes": res["size_bytes"], "parts": res["parts"],
            "dev_accuracy": res["dev_accuracy"], "dev_ci95": wilson(res["dev_accuracy"], res["dev_n"]),
            "selection_accuracy": res["selection_accuracy"], "key": res["cache_key"], "artifact_dir": str(art),
            "artifact_sha256": sha256_file(art / "model.onnx"), "wall_s": time.perf_counter() - t0,
            "predictions": json.loads((art / "predictions.json").read_text())}


def stored_rows(files: list[Path]) -> dict[str, tuple[dict, Path]]:
    """{artifact key: (row, its file)} of every row in these results files that carries predictions; the first file
    wins a key that several hold."""
    out = {}
    for f in files:
        for r in (json.loads(f.read_text()).get("rows", []) if f.is_file() else []):
            if r.get("key") and r.get("predictions") and all(k in r for k in ROW_FIELDS if k != "artifact_sha256"):
                out.setdefault(r["key"], (r, f))
    return out


def reuse(name: str, seed: int, ctx: dict, stored: dict[str, tuple[dict, Path]], artifact_dirs: list[Path],
          own: Path | None = None) -> dict | None:
    """The stored row of this candidate and seed's planned key, or None; its artifact_dir is the cache's folder or
    another with the same model.onnx, or None where neither is here (it cannot be timed then). stored_in names the
    file it came from, unless that is `own` (the run's own results: a resumed run keeps what its row said)."""
    from eibert.compress import planned_key

    if not stored:  # nothing to match: no key to compute
        return None
    hit = stored.get(planned_key(ctx["tdir"], ctx["data"], **compress_args(name, seed, ctx)))
    if hit is None:
        return None
    old, f = hit
    row = {**describe(name, seed, ctx), **{k: old.get(k) for k in ROW_FIELDS}, "latency": old.get("latency"),
           "stored_in": old.get("stored_in") if own is not None and f.resolve() == own.resolve() else f.name}
    if not (Path(row["artifact_dir"] or "/nonexistent") / "model.onnx").is_file():
        row["artifact_dir"] = next((str(d) for d in artifact_dirs if row["artifact_sha256"] and (d / "model.onnx").is_file()
                                    and sha256_file(d / "model.onnx") == row["artifact_sha256"]), None)
    return row


def timed(row: dict, ctx: dict) -> dict:
    """p50 / p90 (ms) of the artifact on this machine, onnxruntime and untuned TVM, batch 1, seq 64, 2 threads."""
    from devices.inventory import DeviceSpec
    from harness.measure.run import MeasureSettings, build_for, measure_on_device

    spec = DeviceSpec(transport="local", target="x86-64-host", threads=2, workdir="/tmp/eib-bench-frontier")
    st = MeasureSettings(seq_len=64, rows=64, warmup=10, min_count=300, min_duration_s=5.0, max_duration_s=120,
                         end_to_end=False)
    out = {}
    for runtime in ("onnxruntime", "tvm"):
        build = build_for(row["artifact_dir"], spec.target, st, Path(ctx["cache_dir"])) if runtime == "tvm" else None
        rec = measure_on_device(row["artifact_dir"], "local", spec, runtime, ctx["data"].dev, st, ctx["cache_dir"], build=build)
        out[runtime] = {"p50_ms": rec["p50_ms"], "p90_ms": rec["p90_ms"], "count": rec["metrics"]["count"],
                        "accuracy_rows": rec["n"], "predictions_agree": rec["metrics"].get("predictions_agree"),
                        **({"int8_path": build.get("int8_path"), "int4_path": build.get("int4_path")} if build else {})}
    return out
