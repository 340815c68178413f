"""The report's tables as formatted text, made once from the report model: the HTML and the Markdown
renderers print exactly these strings, so their headers and numbers are the same.

    for t in tables(model): t.id, t.title, t.note, t.frame   # frame: a DataFrame of strings
"""

import math
from dataclasses import dataclass

import pandas as pd

from harness.report.model import ReportModel


@dataclass
class Table:
    id: str
    title: str
    note: str
    frame: pd.DataFrame


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def human_bytes(v) -> str:
    if _missing(v):
        return "-"
    v = float(v)
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}" if abs(v) < 100 * div else f"{v / div:.0f} {unit}"
    return f"{v:.0f} B"


def mib(v) -> str:
    return "-" if _missing(v) else f"{float(v) / 2**20:.1f} MiB"


def ms(v, digits: int = 3) -> str:
    return "-" if _missing(v) else f"{float(v):.{digits}f}"


def pct(v, lo=None, hi=None) -> str:
    if _missing(v):
        return "-"
    s = f"{100 * float(v):.2f}%"
    return s if _missing(lo) else f"{s} [{100 * float(lo):.1f}, {100 * float(hi):.1f}]"


def signed_pts(v, lo=None, hi=None) -> str:
    if _missing(v):
        return "-"
    s = f"{100 * float(v):+.2f} pts"
    return s if _missing(lo) else f"{s} [{100 * float(lo):+.1f}, {100 * float(hi):+.1f}]"


def times(v) -> str:
    return "-" if _missing(v) else f"{float(v):.1f}x"


def _frame(rows: list[list], headers: list[str]) -> pd.DataFrame:
    return pd.DataFrame([[str(c) for c in r] for r in rows], columns=headers)


def headline(m: ReportModel) -> Table:
    rows = []
    for r in m.headline.itertuples():
        noise = m.noise.get(r.device)
        rows.append([r.device + (" (emulated)" if r.emulated else ""), r.runtime + (" (fastest here)" if r.fastest else ""),
                     r.variant,
                     "-" if r.within_budget is None else ("yes" if r.within_budget else "none fits: best shown"),
                     human_bytes(r.size_bytes), times(r.x_smaller), ms(r.p50_ms), times(r.x_faster),
                     f"{mib(r.model_memory_bytes)} vs {mib(r.teacher_model_memory_bytes)}",
                     f"{mib(r.peak_rss_bytes)} vs {mib(r.teacher_peak_rss_bytes)}", pct(r.accuracy),
                     signed_pts(r.d_acc, r.d_acc_lo, r.d_acc_hi), "-" if noise is None else f"±{100 * noise:.1f}%"])
    budget = ", ".join(f"{k}={human_bytes(v) if k in ('size', 'memory') else f'{v:g}'}" for k, v in (m.budget or {}).items())
    note = ("The best variant on each device "
            f"{'within the budget (' + budget + ')' if budget else '(highest dev accuracy; no budget given)'}, "
            "against the teacher measured by the same runner on the same device. Accuracy is on the full dev set "
            "(host); its change against the teacher is paired on the same rows, with a 95% interval. Run-to-run noise: the "
            "largest p50 change between earlier runs of this config on that device. Where a device ran several runtimes, the one "
            "with the lowest p50 is marked 'fastest here'.")
    return Table("headline", "Headline", note, _frame(rows, [
        "device", "runtime", "best variant", "within budget", "size", "x smaller", "p50 ms", "x faster",
        "model memory (vs teacher)",
        "process peak (vs teacher)",
        "dev accuracy [95% CI]", "vs teacher [95% CI]", "run-to-run noise"]))


def host(m: ReportModel) -> Table:
    rows = [[r.variant, r.subject, r.runtime, pct(r.accuracy, r.acc_lo, r.acc_hi), r.n, human_bytes(r.size_bytes)]
            for r in m.host.itertuples()]
    return Table("host", "Host accuracy (full dev set)",
                 "onnxruntime for artifacts, torch for the teacher; 95% Wilson intervals.",
                 _frame(rows, ["variant", "subject", "runtime", "accuracy [95% CI]", "n", "size"]))


def device(m: ReportModel, dev: str) -> Table:
    d = m.devices[m.devices["device"] == dev]
    rows = []
    for r in d.itertuples():
        acc = pct(r.accuracy, r.acc_lo, r.acc_hi) + (f" (subset: {r.n} of {r.host_n} rows)" if r.subset else "")
        note = getattr(r, "int8_note", "")
        rows.append([r.variant, r.runtime + (f" ({note})" if isinstance(note, str) and note else ""),
                     human_bytes(r.size_bytes if not _missing(r.size_bytes) else r.model_bytes), acc, r.n,
                     ms(r.p50_ms), f"[{ms(r.p50_ci_low_ms)}, {ms(r.p50_ci_high_ms)}]", ms(r.p90_ms), ms(r.p99_ms),
                     ms(getattr(r, "e2e_p50_ms", None)), ms(getattr(r, "e2e_p90_ms", None)), ms(r.null_p50_ms),
                     mib(r.model_memory_bytes), mib(r.peak_rss_bytes),
                     "-" if _missing(r.max_logit_drift) else f"{r.max_logit_drift:.1e}",
                     r.verdict + (f" ({r.verdict_reason})" if r.verdict_reason else "")])
    emu = bool(d["emulated"].any()) if len(d) else False
    note = ("On-device accuracy is on the rows the device ran (a subset where marked). The p50 interval is a bootstrap "
            "within this run; run-to-run noise (headline) is usually wider. The null model's p50 is the harness's own floor "
            "under every latency. End to end: one sentence per call, text in and label out, tokeniser included (the p50/p90 "
            "before it are the model alone on token ids); a latency budget judges the end-to-end p90 where it was measured.")
    return Table(f"device-{dev}", f"Device {dev}" + (" (emulated: latency not comparable with native devices)" if emu else ""),
                 note,
                 _frame(rows,
                        ["variant", "runtime", "size", "accuracy on device [95% CI]", "n", "p50 ms", "p50 95% CI (within run)",
                               "p90 ms", "p99 ms", "end-to-end p50 ms", "end-to-end p90 ms", "null-model p50 ms", "model memory",
                         "process peak RSS", "logit drift", "verdict"]))


def floors(m: ReportModel) -> Table:
    rows = [[r.device, ms(r.null_p50_ms, 4), ms(r.null_p90_ms, 4), r.measurements, ms(r.min_p50_ms),
             "-" if _missing(r.min_p50_ms) or not r.min_p50_ms else f"{100 * r.null_p50_ms / r.min_p50_ms:.1f}%"]
            for r in m.floors.itertuples()]
    return Table("floor", "Harness floor (null model)",
                 "A graph that returns a constant, timed by the same runner right after each "
                 "measurement: what the runner, its timer and the transport cost. Latencies near it measure the harness, "
                 "not the model.",
                 _frame(rows, ["device", "null p50 ms", "null p90 ms", "measurements", "fastest model p50 ms",
                               "floor share of fastest"]))


def ladder(m: ReportModel) -> Table:
    rows = [[r.variant, human_bytes(r.size_bytes), pct(r.accuracy, r.acc_lo, r.acc_hi), r.n, signed_pts(r.d_acc),
             "-" if _missing(r.p_value) else f"{r.p_value:.3f}", r.verdict or "-"] for r in m.ladder.itertuples()]
    return Table("ladder", "Ablation ladder",
                 "Host accuracy of each rung's artifact; each step is tested against the rung before on "
                 "the same rows (exact McNemar): p >= 0.05 is within noise.",
                 _frame(rows, ["rung", "size", "accuracy [95% CI]", "n", "change", "McNemar p", "reading"]))


def stages(m: ReportModel) -> Table:
    rows = [[r.stage, r.rows, r.computed, r.cached, r.failed, f"{r.computed_s:.1f}",
             "-" if _missing(r.cached_original_s) else f"{r.cached_original_s:.1f}", r.cached_from]
            for r in m.stages.itertuples()]
    return Table("stages", "Time per stage",
                 "Cached stages cost nothing in this run; the time shown for them is what the run that "
                 "computed them spent.", _frame(rows, ["stage", "rows", "computed", "cached", "failed", "computed s",
                                                        "cached: original s", "cached from run"]))


def compare(m: ReportModel) -> Table:
    rows = [[c["variant"], c["device"], c["runtime"], ms(c["p50_ms"]), ms(c["base_p50_ms"]), f"{c['change']:+.1%}",
             f"[{c['ci_low']:+.1%}, {c['ci_high']:+.1%}]", f"±{c['threshold']:.1%}", c["flag"], signed_pts(c["host_d_acc"]),
             "-" if _missing(c["mcnemar_p"]) else f"{c['mcnemar_p']:.3f}", c["acc_reading"]]
            for c in m.compare.to_dict("records")]
    return Table("compare", "Against the baseline",
                 "Latency: the p50 change with a bootstrap interval against the device's noise "
                 "threshold. Accuracy: the host dev accuracy change, tested on the same rows (exact McNemar).",
                 _frame(rows, ["variant", "device", "runtime", "p50 ms", "baseline p50 ms", "change", "95% CI", "noise threshold",
                               "flag", "dev accuracy change", "McNemar p", "accuracy reading"]))


def signoff(m: ReportModel) -> Table:
    rows = [[s["device"], s["runtime"], s["variant"], s["verdict"], human_bytes(s["size_bytes"]), mib(s["model_memory_bytes"]),
             mib(s["peak_rss_bytes"]),
             ms(s["p90_ms"]), pct(s["accuracy"]), ", ".join(s["failed"]) or "-"] for s in m.signoff.to_dict("records")]
    return Table("signoff", "Deployment sign-off",
                 "The memory budget is judged on model memory: the process's peak (VmHWM) minus "
                 "its resident size once the runtime is imported and before the model loads; the whole process is "
                 "shown beside it.",
                 _frame(rows, ["device", "runtime", "variant", "verdict", "size", "model memory", "process peak",
                                                                      "p90 ms", "accuracy", "failed budgets"]))


def failures(m: ReportModel) -> Table:
    return Table("failures", "Failures", "", m.failures.astype(str))


def summary(m: ReportModel) -> Table:
    return Table("summary", "Run", "", _frame([[k, v] for k, v in m.summary.items()], ["field", "value"]))


def tables(m: ReportModel) -> list[Table]:
    out = [summary(m)]
    if not m.signoff.empty:
        out.append(signoff(m))
    if not m.headline.empty:
        out.append(headline(m))
    out.append(host(m))
    out += [device(m, d) for d in dict.fromkeys(m.devices["device"])]
    if not m.floors.empty:
        out.append(floors(m))
    if not m.compare.empty:
        out.append(compare(m))
    if not m.ladder.empty:
        out.append(ladder(m))
    out += [stages(m), failures(m)]
    return out
