"""Score a model on a labelled file: `eib evaluate MODEL --data FILE`.

    from eibert.evaluate import evaluate
    evaluate("bundled", "eibert/data/sst2/validation.tsv")
    # {"accuracy": 0.51, "n": 872, "sha256": "f727...", "model": "bundled", ...}

MODEL is a compressed artifact folder (scored with onnxruntime on its model.onnx, tokenised with its
own pruned tokenizer), a model folder (a cached teacher, any `save_pretrained` folder), `bundled`, or
a Hugging Face id (scored with torch).
"""

import time
from pathlib import Path

from eibert.data import load_eval_file
from eibert.hub import load_classifier, load_tokenizer, resolve_model
from eibutil import UserError


def evaluate(model: str, data_file: str | Path, *, text_fields: list[str] | None = None, label_field: str | None = None,
             max_seq_len: int = 128, batch_size: int = 128) -> dict:
    """Accuracy of `model` on `data_file`; returns a JSON-ready dict (see module doc)."""
    from eibert.export import is_artifact, ort_logits
    from eibert.textcls import accuracy, encode, predict_logits

    t0 = time.perf_counter()
    ds, sha, _ = load_eval_file(data_file, text_fields, label_field)
    extra = {}
    if is_artifact(model):
        from eibert.verify import verify_artifact

        manifest = verify_artifact(model)  # every file as exported, or one line naming the one that is not
        try:
            positions = int(manifest["spec"]["max_positions"])
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise UserError(f"{Path(model) / 'manifest.json'}: not an artifact manifest ({type(e).__name__}: "
                            f"{str(e)[:80]})") from None
        tok = load_tokenizer(model)
        rows = encode(tok, ds, min(max_seq_len, positions))  # the graph has that many positions
        try:
            logits = ort_logits(model, rows, pad_id=tok.pad_token_id or 0)  # one call per row, as deployed
        except Exception as e:  # onnxruntime raises its own types for a truncated or foreign file
            raise UserError(f"{Path(model) / 'model.onnx'}: onnxruntime cannot run it ({str(e).splitlines()[0][:120]})") from None
        extra = {"runtime": "onnxruntime", "size_bytes": manifest["size_bytes"]}
    else:
        path = resolve_model(model)
        tok = load_tokenizer(path)
        clf = load_classifier(path)
        rows = encode(tok, ds, max_seq_len)
        logits = predict_logits(clf, rows, batch_size=batch_size, pad_id=tok.pad_token_id or 0)
    return {
        "accuracy": accuracy(logits, [y for _, y in rows]),
        "n": len(rows),
        "sha256": sha,
        "data": str(data_file),
        "model": model,
        "runtime": "torch",
        "wall_s": round(time.perf_counter() - t0, 3),
        **extra,
    }
