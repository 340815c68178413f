"""The model shipped under models/sst2-2mb: within 2,000,000 deployed bytes, byte-identical to the bench's
headline row, and the model card's standalone snippet (onnxruntime + tokenizers, no eibert) gives the
dev accuracy that `eib evaluate` and the manifest report."""

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/sst2-2mb"
DEV = ROOT.parent / "shared/datasets/sst2/validation.tsv"


def test_shipped_model_is_within_budget_and_is_the_headline_artifact():
    man = json.loads((MODEL / "manifest.json").read_text())
    deployed = sum((MODEL / n).stat().st_size for n, f in man["files"].items() if f["deployed"])
    assert deployed == man["size_bytes"] <= 2_000_000
    from eibutil import sha256_file

    for name, f in man["files"].items():
        assert sha256_file(MODEL / name) == f["sha256"], name
    rows = json.loads((ROOT / "bench/results/quality.json").read_text())["rows"]
    (head,) = [r for r in rows if r.get("headline")]
    assert head["artifact_sha256"] == man["files"]["model.onnx"]["sha256"] and head["key"] == man["provenance"]["cache_key"]


def test_standalone_snippet_reproduces_the_dev_accuracy():
    import onnxruntime as ort
    from tokenizers import BertWordPieceTokenizer

    man = json.loads((MODEL / "manifest.json").read_text())
    tok = BertWordPieceTokenizer(str(MODEL / "vocab.txt"), lowercase=True)
    tok.enable_truncation(64)
    sess = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    lines = DEV.read_text(encoding="utf-8").splitlines()[1:]
    right = 0
    for line in lines:
        text, label = line.rsplit("\t", 1)
        ids = np.array([tok.encode(text).ids], dtype=np.int64)
        logits = sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        right += int(logits.argmax()) == int(label)
    assert len(lines) == 872
    assert right / len(lines) == man["accuracy"]["dev_accuracy"]


def test_eib_evaluate_reproduces_the_manifest_accuracy():
    from eibert.evaluate import evaluate

    man = json.loads((MODEL / "manifest.json").read_text())
    res = evaluate(str(MODEL), DEV)
    assert res["n"] == 872 and res["accuracy"] == man["accuracy"]["dev_accuracy"]
