"""End-to-end latency: what a user of the device waits for, text in and label out, tokeniser included.

    files, opts = e2e_inputs(model_dir, split, settings, cache_dir)   # texts.json, vocab.txt, wordpiece.py for the runner
    metrics["end_to_end"] = e2e_metrics(result.pop("end_to_end", None), model_predictions)

The on-device runner (devices/remote/eib_device.py) times, after the model-only pass and with the same
warm-up and run rules, one sentence per call: tokenise (with `tokenizers` when the device has it, else the
pure-Python WordPiece staged beside it, devices/remote/textpass.py and wordpiece.py), pad to the model's length, run,
argmax. Its labels must equal the model pass's on the same rows (`predictions_agree`).
"""

import json
from pathlib import Path

from eibutil import atomic_write_text
from eibutil.cache import Cache
from eibutil.stats import summarize

REMOTE = Path(__file__).resolve().parents[2] / "devices" / "remote"


def e2e_inputs(model_dir, split, settings, cache_dir: Path) -> tuple[dict, dict]:
    """(files to stage, runner options) for the end-to-end pass; empty when it does not apply (turned off, a
    sentence-pair task, or a model without a WordPiece vocab.txt)."""
    vocab = Path(model_dir) / "vocab.txt"
    if not settings.end_to_end or split is None or "text_b" in split.column_names or not vocab.is_file():
        return {}, {}
    n = len(split) if settings.rows is None else min(settings.rows, len(split))
    texts = list(split["text_a"])[:n]
    tokens = vocab.read_text(encoding="utf-8").splitlines()
    pad = tokens.index("[PAD]") if "[PAD]" in tokens else 0
    path = Cache(cache_dir).file("e2e", f"{split._fingerprint}-{n}")
    if not path.exists():
        atomic_write_text(path, json.dumps(texts))
    return {"texts.json": path, "vocab.txt": vocab, "textpass.py": REMOTE / "textpass.py",
            "wordpiece.py": REMOTE / "wordpiece.py"}, {"texts": "texts.json", "vocab": "vocab.txt", "pad_id": pad}


def e2e_metrics(e2e: dict | None, model_predictions) -> dict | None:
    """p50/p90/p99 of text -> label per sentence, the tokeniser the device used, and the labels' agreement."""
    if not e2e:
        return None
    s = summarize([ns / 1e6 for ns in e2e["latencies_ns"]])
    preds = list(e2e["predictions"])
    agree = sum(int(a) == int(b) for a, b in zip(preds, model_predictions))
    return {"p50_ms": s.get("p50_ms"), "p90_ms": s.get("p90_ms"), "p99_ms": s.get("p99_ms"), "count": s.get("count"),
            "tokenizer": e2e.get("tokenizer"), "predictions_agree": agree, "n": len(preds), "duration_s": e2e.get("duration_s")}
