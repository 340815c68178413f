"""bench/frontier.py's verdicts, table and figure: per budget the chosen shape (best selection accuracy of its first
seed among the candidates that fit), the best INT8 and the best INT4 shape, their means over seeds, a McNemar test
on the INT4 and INT8 shapes' pooled dev predictions and their latency ratio; the targets of issue #20 judged where
the rows allow."""

from pathlib import Path

from eibutil.stats import mcnemar_exact

TARGETS = {2_000_000: {"int4_gain_points": 1.0, "accuracy": 0.88}, 1_000_000: {"accuracy": 0.85}}
P50_RATIO_MAX = 1.2  # INT4 artifact p50 under onnxruntime against the INT8 artifact of the same budget


def _mean(rs: list[dict], k: str) -> float | None:
    vals = [r[k] for r in rs if r.get(k) is not None]
    return sum(vals) / len(vals) if vals else None


def _best(rows: list[dict], seed: int, budget: int, bits: int | None = None) -> str | None:
    first = [r for r in rows if r["seed"] == seed and r["size_bytes"] <= budget and (bits is None or r["bits"] == bits)]
    return max(first, key=lambda r: (r["selection_accuracy"] or 0, -r["size_bytes"]))["candidate"] if first else None


def _pooled(rows: list[dict], a: str, b: str, labels: list[int]) -> dict | None:
    """McNemar on both candidates' dev predictions over the seeds both have, concatenated."""
    by = {(r["candidate"], r["seed"]): r for r in rows}
    seeds = sorted({s for (c, s) in by if c == a} & {s for (c, s) in by if c == b})
    if a == b or not seeds:
        return None
    pa = [p for s in seeds for p in by[(a, s)]["predictions"]["dev"]]
    pb = [p for s in seeds for p in by[(b, s)]["predictions"]["dev"]]
    return {**mcnemar_exact(pa, pb, labels * len(seeds)), "seeds": seeds}


def summarize(rows: list[dict], budgets: list[int], labels: dict) -> dict:
    """Per budget: the chosen shape (the accuracy target's), and the best INT8 and best INT4 shapes (the INT4 gain's
    and the latency ratio's), each to be trained with every seed, so the comparison of the two widths never stops at
    one seed because the chosen shape happens to be INT8."""
    seed = min((r["seed"] for r in rows), default=0)
    out = {}
    for b in budgets:
        chosen, int8, int4 = _best(rows, seed, b), _best(rows, seed, b, bits=8), _best(rows, seed, b, bits=4)
        of = {n: [r for r in rows if r["candidate"] == n] for n in (chosen, int8, int4)}
        s = {"chosen": chosen, "best_int8": int8, "best_int4": int4,
             "train_every_seed": [n for n in dict.fromkeys([chosen, int8, int4]) if n],
             "chosen_seeds": [r["seed"] for r in of[chosen]], "chosen_dev_mean": _mean(of[chosen], "dev_accuracy"),
             "chosen_size_bytes": max((r["size_bytes"] for r in of[chosen]), default=None),
             "int8_dev_mean": _mean(of[int8], "dev_accuracy"), "int8_seeds": [r["seed"] for r in of[int8]],
             "int4_dev_mean": _mean(of[int4], "dev_accuracy"), "int4_seeds": [r["seed"] for r in of[int4]]}
        if s["int4_dev_mean"] is not None and s["int8_dev_mean"] is not None:
            s["gain_points"] = 100 * (s["int4_dev_mean"] - s["int8_dev_mean"])
        s["mcnemar_int4_vs_int8"] = _pooled(rows, int4, int8, labels["dev"]) if int4 and int8 else None
        lat = {n: next((r["latency"] for r in of[n] if r.get("latency")), None) for n in (int8, int4)}
        if lat[int4] and lat[int8]:
            s["p50_ratio_onnxruntime"] = lat[int4]["onnxruntime"]["p50_ms"] / lat[int8]["onnxruntime"]["p50_ms"]
        s["verdicts"] = _verdicts(b, s)
        out[str(b)] = s
    return out


def _verdicts(b: int, s: dict) -> dict:
    """Each target of this budget: met, missed, or not judged (too few seeds or rows), with the figure."""
    t, out = TARGETS.get(b, {}), {}
    if "accuracy" in t:
        m = s["chosen_dev_mean"]
        out["accuracy"] = "not judged (one seed)" if len(s["chosen_seeds"]) < 2 or m is None else (
            f"{'met' if m >= t['accuracy'] else 'missed'}: {m:.4f} against {t['accuracy']:.2f}")
    if "int4_gain_points" in t:
        g = s.get("gain_points")
        out["int4_gain"] = ("not judged (no INT4 or no INT8 shape fits)" if not (s["best_int4"] and s["best_int8"]) else
                            "not judged (one seed)" if min(len(s["int4_seeds"]), len(s["int8_seeds"])) < 2 or g is None else
                            f"{'met' if g >= t['int4_gain_points'] else 'missed'}: {g:+.2f} points")
    if (r := s.get("p50_ratio_onnxruntime")) is not None:
        out["p50_ratio"] = f"{'met' if r <= P50_RATIO_MAX else 'missed'}: {r:.2f}x the INT8 artifact (at most {P50_RATIO_MAX})"
    return out


def markdown(doc: dict, figure: Path) -> str:
    lines = ["## The frontier: accuracy against deployed bytes (INT8 and INT4 students)", "",
             f"Produced by `{doc['command']}` (`bench/results/frontier.json`){'' if doc['complete'] else ' (in progress)'}. "
             f"Every student learns the {doc['rung']} rung of the ladder (transfer set of {doc['transfer'].get('rows', 0):,} "
             "rows); INT4 students train quantization-aware from the prediction phase. Chosen per budget on the first "
             "seed's selection accuracy; the chosen, the best INT8 and the best INT4 shape train with every seed. "
             "Teachers' dev accuracy: "
             + ", ".join(f"{k} {v:.4f}" for k, v in doc["teachers"].items()) + ".", "",
             f"![frontier]({figure})", "",
             "| candidate | bits | seed | size bytes | dev [95% CI] | selection | onnxruntime p50 ms | TVM p50 ms |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in sorted(doc["rows"], key=lambda r: (r["size_bytes"], r["candidate"], r["seed"])):
        lo, hi = r["dev_ci95"]
        lat = r.get("latency") or {}
        p50 = {k: f"{v['p50_ms']:.3f}" if v and v.get("p50_ms") else "-" for k, v in
               (("ort", lat.get("onnxruntime")), ("tvm", lat.get("tvm")))}
        lines.append(f"| {r['candidate']} | {r['bits']} | {r['seed']} | {r['size_bytes']:,} | {r['dev_accuracy']:.4f} "
                     f"[{lo:.3f}, {hi:.3f}] | {r['selection_accuracy'] or 0:.4f} | {p50['ort']} | {p50['tvm']} |")
    lines += ["", "| budget | chosen | dev mean (seeds) | best INT8 | INT8 dev mean | best INT4 | INT4 dev mean | "
              "INT4 - INT8 (points) | McNemar p | verdicts |", "|---:|---|---|---|---|---|---|---:|---:|---|"]
    for b, s in doc["summary"].items():
        f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        p = (s.get("mcnemar_int4_vs_int8") or {}).get("p_value")
        lines.append(f"| {int(b):,} | {s['chosen']} | {f(s['chosen_dev_mean'])} ({s['chosen_seeds']}) | {s['best_int8']} | "
                     f"{f(s['int8_dev_mean'])} | {s['best_int4']} | {f(s['int4_dev_mean'])} | "
                     f"{'-' if s.get('gain_points') is None else format(s['gain_points'], '+.2f')} | "
                     f"{'-' if p is None else format(p, '.3f')} | {'; '.join(f'{k}: {v}' for k, v in s['verdicts'].items())} |")
    cands = ", ".join(f"{n} {c['size_bytes']:,}{'' if c['fits'] else ' (over)'}" for n, c in doc["candidates"].items())
    off = [r["candidate"] for r in doc["rows"] if r.get("planned_bytes") not in (None, r["size_bytes"])]
    lines += ["", f"Candidates and their deployed bytes as planned (an untrained export of each shape): {cands}; "
              + (f"the artifacts of {', '.join(sorted(set(off)))} came out at other sizes (see the rows)." if off
                 else f"every trained artifact has exactly its planned bytes ({len(doc['rows'])} rows).")]
    stored = {}
    for r in doc["rows"]:
        if r.get("stored_in"):
            stored.setdefault(r["stored_in"], []).append(f"{r['candidate']} seed {r['seed']}")
    if stored:
        lines += ["", "Rows taken from a stored result of the same artifact key, not trained in this run: "
                  + "; ".join(f"{', '.join(v)} ({f})" for f, v in stored.items()) + "."]
    return "\n".join(lines)


def plot(doc: dict, out: Path) -> None:
    """Dev accuracy (95% interval) against bytes, INT8 and INT4 marked, the teacher's line; p50 beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, lx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for bits, colour in ((8, "#1f6feb"), (4, "#2da44e")):
        rs = [r for r in doc["rows"] if r["bits"] == bits]
        ax.errorbar([r["size_bytes"] / 1e6 for r in rs], [100 * r["dev_accuracy"] for r in rs],
                    yerr=[[100 * (r["dev_accuracy"] - r["dev_ci95"][0]) for r in rs],
                          [100 * (r["dev_ci95"][1] - r["dev_accuracy"]) for r in rs]],
                    fmt="o", color=colour, label=f"INT{bits}", capsize=3)
        timed = [r for r in rs if (r.get("latency") or {}).get("onnxruntime")]
        lx.scatter([r["size_bytes"] / 1e6 for r in timed], [r["latency"]["onnxruntime"]["p50_ms"] for r in timed],
                   color=colour, label=f"INT{bits} (onnxruntime)")
    for (name, acc), ls in zip(doc["teachers"].items(), ("--", ":")):
        ax.axhline(100 * acc, color="#c2410c", ls=ls, label=f"teacher: {name}")
    for b in doc["budgets"]:
        ax.axvline(b / 1e6, color="#999", lw=0.8)
    ax.set(xlabel="deployed bytes (MB)", ylabel="SST-2 dev accuracy (%)", title="accuracy against bytes")
    lx.set(xlabel="deployed bytes (MB)", ylabel="p50 ms (batch 1, seq 64)", title="latency, this machine")
    ax.legend(loc="lower right")
    lx.legend(loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
