"""The end-to-end pass of the on-device runner, staged beside eib_device.py: text in, label out.

    e2e = end_to_end(opts, np, infer_arrays, seq_len, min_count, min_s, max_s)

Tokenises with `tokenizers` when the device has it, else with the pure-Python WordPiece staged beside it
(wordpiece.py: the same ids, tests/test_wordpiece.py).
"""

import json
import os
import sys
import time


def tokenizer(vocab, seq_len):
    """(encode(text) -> ids, what tokenised): `tokenizers` when the device has it, else the pure-Python WordPiece
    staged beside this script (the same ids; tests/test_wordpiece.py)."""
    try:
        import tokenizers
        from tokenizers import BertWordPieceTokenizer

        tok = BertWordPieceTokenizer(vocab, lowercase=True)
        tok.enable_truncation(seq_len)
        return (lambda t: tok.encode(t).ids), "tokenizers " + tokenizers.__version__
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from wordpiece import WordPiece

        wp = WordPiece.from_vocab(vocab)
        return (lambda t: wp.encode(t, max_length=seq_len)), "pure-python wordpiece"


def end_to_end(o, np, infer_arrays, seq_len, min_count, min_s, max_s):
    """Text in, label out, one sentence per call: tokenise, pad to the model's length, run, argmax; timed with
    the model pass's warm-up and run rules (the model-only numbers above stay as they were)."""
    with open(o["texts"], encoding="utf-8") as f:
        texts = json.load(f)
    encode, how = tokenizer(o["vocab"], seq_len)
    pad = int(o.get("pad_id", "0"))

    def label(text):
        got = encode(text)
        a = np.full((1, seq_len), pad, dtype=np.int64)
        m = np.zeros((1, seq_len), dtype=np.int64)
        a[0, : len(got)] = got
        m[0, : len(got)] = 1
        return int(infer_arrays(a, m)[0].argmax())

    n = len(texts)
    for k in range(int(o.get("warmup", "10"))):
        label(texts[k % n])
    samples, start = [], time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if (len(samples) >= min_count and elapsed >= min_s) or elapsed >= max_s:
            break
        t = time.perf_counter_ns()
        label(texts[len(samples) % n])
        samples.append(time.perf_counter_ns() - t)
    return {"latencies_ns": samples, "duration_s": time.perf_counter() - start, "tokenizer": how,
            "predictions": [label(t) for t in texts]}
