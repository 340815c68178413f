"""Where the time goes: per-operator profiles from the device, grouped by what the operator does.

    files, opts = profile_inputs(settings)                     # opprofile.py staged, `--profile RUNS` for the runner
    metrics["profile"] = summarize_profile(result.pop("profile", None), p50_ms, spec)

The runner (devices/remote/opprofile.py) returns the operators of one inference in the order they ran, timed by
onnxruntime's session profiler or by the TVM Relax VM's call instrument, in a pass after the timed one. Here
each operator gets a kind (embedding, attention, feed-forward, norms, head, quantize: the activation
quantization and dequantization of the integer layers, other) and, where it can be told,
a layer; the summary holds the milliseconds per kind and per layer, the top operators, the profile's sum
against the timed pass's p50 (`sum_over_p50`) and against the median of the unprofiled inferences interleaved with
the profiled ones (`plain_ms`, `sum_over_plain`: the same machine at the same moment, so a load that comes and goes
between the passes does not move it), and the profiler's own overhead (its inferences' wall time against the
interleaved plain ones, or the p50).
"""

import re
from pathlib import Path

KINDS = ("embedding", "attention", "feed-forward", "norms", "head", "quantize", "other")
_QUANTIZE_OPS = {"DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "FakeQuantize"}
PROFILER = Path(__file__).resolve().parents[2] / "devices" / "remote" / "opprofile.py"
TOP = 10

_LAYER = re.compile(r"/layers?[._](\d+)/")
_RESIDUAL = re.compile(r"/layers?[._]\d+/Add_\d+$")
_NAMED = (  # onnxruntime node names (our students and Hugging Face exports); the first match wins
    ("norms", ("layernorm", "layer_norm", "/norm/", "_norm/", " mvn")),
    ("attention", ("/query/", "/key/", "/value/", "/attn_out/", "/attention/", "softmax")),
    ("feed-forward", ("/ffn_in/", "/ffn_out/", "/intermediate/", "/output/", "gelu")),
    ("embedding", ("/embeddings/",)),
    ("head", ("/pooler/", "/classifier", "/head", "/bridge", " tanh")),
)


def profile_inputs(settings) -> tuple[dict, dict]:
    """(files to stage, runner options): nothing unless the settings ask for a profile."""
    if not settings.profile:
        return {}, {}
    return {"opprofile.py": PROFILER}, {"profile": settings.profile_runs}


def _ort_kind(call: dict) -> tuple[str, int | None]:
    """onnxruntime keeps the exporter's node names (fused nodes keep their first node's): the module path says
    the kind; an unnamed node inside a layer (the per-head products, the mask) counts as attention, except the
    residual adds (`other`)."""
    m = _LAYER.search(call["name"])
    layer = int(m.group(1)) if m else None
    if call.get("op") in _QUANTIZE_OPS:
        return "quantize", layer
    key = f"{call['name']} {call.get('op', '')}".lower()
    for kind, marks in _NAMED:
        if any(mark in key for mark in marks):
            return kind, layer
    if layer is None or _RESIDUAL.search(call["name"]):
        return "other", layer
    return "attention", layer


def _tvm_by_name(name: str) -> str:
    if name.startswith("int8_quantize"):
        return "quantize"
    if "layer_norm" in name:
        return "norms"
    if "softmax" in name:
        return "attention"
    if "gelu" in name:
        return "feed-forward"
    return "embedding" if name.startswith("take") else "other"


def _tvm_kinds(calls: list[dict], spec: dict) -> tuple[list[str], list[int | None]]:
    """TVM kernels keep no layer names, but the VM runs them in the graph's order. Post-norm BERT runs the
    embedding norm, then per layer the attention, its norm, the feed-forward block and its norm, then the head:
    the norms seen before a call say its kind and layer (a dense whose shapes carry the embedding width, when
    that differs from the hidden width, is the embedding's projection; the VM's builtins are `other`). Without
    that pattern, kinds come from kernel names alone and no layer is claimed."""
    layers, emb, hidden = spec.get("layers"), spec.get("embedding_size"), spec.get("hidden")
    names = [c["name"] for c in calls]
    norms = [i for i, n in enumerate(names) if "layer_norm" in n]
    if not layers or len(norms) != 1 + 2 * layers:
        return [_tvm_by_name(n) for n in names], [None] * len(calls)
    kinds, layer_of, seen = [], [], 0
    for i, c in enumerate(calls):
        layer = (seen - 1) // 2 if 0 < seen <= 2 * layers else None
        if i in norms:
            kind = "norms"
        elif c["name"].startswith("int8_quantize"):
            kind = "quantize"
        elif c["name"].startswith("vm."):
            kind = "other"
        elif seen == 0 or (emb and emb != hidden and seen == 1 and any(emb in s for s in c.get("shapes", []))):
            kind, layer = "embedding", None
        elif seen > 2 * layers:
            kind = "head"
        else:
            kind = "attention" if seen % 2 else "feed-forward"
        kinds.append(kind)
        layer_of.append(layer if kind != "other" else None)
        seen += i in norms
    return kinds, layer_of


def summarize_profile(prof: dict | None, p50_ms: float | None, spec: dict | None = None) -> dict | None:
    """The stored profile: ms per kind and per layer, the top operators, the sum against the p50, the overhead."""
    if not prof:
        return None
    if prof.get("error"):
        return {"error": prof["error"], "tool": prof.get("tool")}
    calls, spec, tvm = prof["calls"], spec or {}, prof["tool"].startswith("tvm")
    if tvm:
        kinds, layer_of = _tvm_kinds(calls, spec)
    else:
        kinds, layer_of = zip(*[_ort_kind(c) for c in calls]) if calls else ((), ())
    by_kind = {k: 0.0 for k in KINDS}
    by_layer: dict[str, float] = {}
    ops: dict[str, dict] = {}
    for c, kind, layer in zip(calls, kinds, layer_of):
        ms = c["us"] / 1000.0
        by_kind[kind] += ms
        if layer is not None:
            by_layer[str(layer)] = by_layer.get(str(layer), 0.0) + ms
        name = c["name"] if tvm else c["op"]  # TVM: the kernel; onnxruntime, OpenVINO: the operator type (and kernel)
        op = ops.setdefault((name, kind), {"op": name, "kind": kind, "ms": 0.0, "calls": 0})
        op["ms"] += ms
        op["calls"] += 1
    total = sum(by_kind.values())
    top = sorted(ops.values(), key=lambda o: -o["ms"])[:TOP]
    for o in top:
        o["share"] = o["ms"] / total if total else None
    wall, plain = prof.get("wall_ms"), prof.get("plain_ms")
    ref = plain or p50_ms
    return {"tool": prof["tool"], "runs": prof["runs"], "calls": len(calls), "sum_ms": total, "by_kind_ms": by_kind,
            "by_layer_ms": by_layer, "top": top, "wall_ms": wall, "p50_ms": p50_ms, "plain_ms": plain,
            "sum_over_p50": total / p50_ms if p50_ms else None, "sum_over_plain": total / plain if plain else None,
            "overhead": wall / ref - 1 if wall and ref else None, "overhead_us_per_call": prof.get("overhead_us_per_call")}


def profile_text(p: dict) -> str:
    """The profile in a few lines for the terminal."""
    if p.get("error"):
        return f"profile ({p.get('tool')}): {p['error']}"
    kinds = "  ".join(f"{k} {v:.3f}" for k, v in p["by_kind_ms"].items() if v)
    top = "  ".join(f"{o['op']} ({o['kind']}) {o['ms']:.3f}" for o in p["top"][:5])
    over = f"{p['overhead']:+.0%}" if p.get("overhead") is not None else "?"
    ratio = f"{p['sum_over_p50']:.2f}" if p.get("sum_over_p50") is not None else "?"
    plain = (f" ({p['sum_over_plain']:.2f} x the {p['plain_ms']:.3f} ms of the unprofiled inferences between the profiled ones)"
             if p.get("sum_over_plain") is not None else "")
    return (f"profile ({p['tool']}, {p['runs']} inferences, {p['calls']} calls): ms per inference: {kinds}\n"
            f"  sum {p['sum_ms']:.3f} ms = {ratio} x the p50{plain}; the profiler's own overhead {over}\n"
            f"  top: {top}")
