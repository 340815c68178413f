"""The report's figures, drawn with matplotlib from the report model: SVG for the self-contained HTML
(text kept as text), PNG beside the Markdown.

    figs = figures(model, out_dir / "figures")    # [Figure(id, title, svg, png)]
"""

import io
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from eibutil.stats import pareto  # noqa: E402
from harness.report.model import ReportModel  # noqa: E402
from harness.report.tables import human_bytes  # noqa: E402

TEACHER = "#c2410c"
FRONT = "#1f6feb"


@dataclass
class Figure:
    id: str
    title: str
    svg: str
    png: Path
    labels: list[str]  # the axis labels, as drawn
    after: str = ""  # the table it follows in the reports


def _bytes_axis(ax, axis: str = "x") -> None:
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(FuncFormatter(lambda v, _: human_bytes(v)))


def _pct_axis(ax) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.0f}%"))


def save_figure(fig, fid: str, title: str, out_dir: Path, after: str) -> Figure:
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    labels = [t for ax in fig.axes for t in (ax.get_xlabel(), ax.get_ylabel()) if t]
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{fid}.png"
    fig.savefig(png, dpi=110)
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": fid}):
        fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = svg.replace("<svg ", f'<svg class="figure" role="img" aria-label="{title}" ', 1)
    return Figure(fid, title, svg, png, labels, after)


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", "-".join(parts)).strip("-").lower()


def pareto_figure(m: ReportModel, dev: str, rt: str, out_dir: Path) -> Figure:
    d = m.devices[(m.devices["device"] == dev) & (m.devices["runtime"] == rt) & (m.devices["subject"] == "artifact")]
    t = m.devices[(m.devices["device"] == dev) & (m.devices["subject"] == "teacher")]
    th = m.host[m.host["subject"] == "teacher"]
    t_acc = th["accuracy"].iloc[0] if len(th) else None
    y = d["host_accuracy"].where(d["host_accuracy"].notna(), d["accuracy"]).astype(float)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, col, xlabel in zip(axes, ("size_bytes", "p90_ms", "model_memory_bytes"),
                               ("deployed size (log scale)", "p90 latency (ms)", "model memory (peak above the runtime)")):
        x = d[col].astype(float)
        front = set(pareto(list(zip(x, y))))
        ax.scatter(x, y, c=[FRONT if i in front else "#aaa" for i in range(len(x))], edgecolors="#333", linewidths=0.5, zorder=3,
                   label="variants (Pareto front in blue)")
        fx = sorted((x.iloc[i], y.iloc[i]) for i in front)
        if len(fx) > 1:
            ax.plot(*zip(*fx), ls="--", c=FRONT, lw=1)
        if t_acc is not None:
            ax.axhline(t_acc, ls=":", c=TEACHER, lw=1.2, label=f"teacher {100 * t_acc:.1f}%")
            tcol = "model_bytes" if col == "size_bytes" else col
            if len(t) and not np.isnan(float(t[tcol].iloc[0] or np.nan)):
                ax.scatter([float(t[tcol].iloc[0])], [t_acc], marker="*", s=140, c=TEACHER, zorder=4,
                           label="teacher on this device")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("dev accuracy")
        _pct_axis(ax)
        if col == "size_bytes":
            ax.set_xscale("log")
        if col != "p90_ms":
            _bytes_axis(ax)
        if col == "model_memory_bytes":
            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    return save_figure(fig, _slug("pareto", dev, rt), f"{dev} / {rt}: accuracy against size, latency and memory", out_dir,
                 f"device-{dev}")


def latency_figure(m: ReportModel, dev: str, rt: str, out_dir: Path) -> Figure:
    d = m.devices[(m.devices["device"] == dev) & ((m.devices["runtime"] == rt) | (m.devices["subject"] == "teacher"))]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for i, r in enumerate(d.itertuples()):
        s = np.sort(np.asarray(r.samples or [], float))
        if not len(s):
            continue
        colour = TEACHER if r.subject == "teacher" else f"C{i % 10}"
        ax.step(s, np.arange(1, len(s) + 1) / len(s), where="post", c=colour, lw=1.2, label=f"{r.variant} ({r.runtime})")
        for q, mk in ((0.5, "o"), (0.9, "s"), (0.99, "^")):
            ax.plot([np.quantile(s, q)], [q], marker=mk, c=colour, ms=5)
    ax.set_xscale("log")
    ax.set_xlabel("single-inference latency (ms, log scale)")
    ax.set_ylabel("share of inferences at or below")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right", title="markers: p50 o, p90 s, p99 ^", title_fontsize=7)
    return save_figure(fig, _slug("latency", dev, rt), f"{dev} / {rt}: latency distribution (every raw sample)", out_dir,
                 f"device-{dev}")


def ladder_figure(m: ReportModel, out_dir: Path) -> Figure:
    lad = m.ladder
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    acc = lad["accuracy"].astype(float)
    err = np.vstack([acc - lad["acc_lo"].astype(float), lad["acc_hi"].astype(float) - acc])
    ax.bar(range(len(lad)), acc, yerr=err, capsize=4, color=FRONT, alpha=0.8)
    th = m.host[m.host["subject"] == "teacher"]
    if len(th):
        ax.axhline(th["accuracy"].iloc[0], ls=":", c=TEACHER, label="teacher")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(lad)), lad["variant"], rotation=20, ha="right", fontsize=7)
    lo = float(np.nanmin(lad["acc_lo"].astype(float))) if len(lad) else 0.0
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_xlabel("rung")
    ax.set_ylabel("dev accuracy (95% CI)")
    _pct_axis(ax)
    return save_figure(fig, "ladder", "Ablation ladder: accuracy of each rung with its 95% interval", out_dir, "ladder")


def devices_figure(m: ReportModel, out_dir: Path) -> Figure:
    d = m.devices[m.devices["subject"] == "artifact"]
    keys = list(dict.fromkeys(zip(d["device"], d["runtime"])))
    variants = list(dict.fromkeys(d["variant"]))
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    w = 0.8 / max(1, len(keys))
    for k, (dev, rt) in enumerate(keys):
        g = d[(d["device"] == dev) & (d["runtime"] == rt)].set_index("variant")
        p50 = [float(g["p50_ms"].get(v, np.nan)) for v in variants]
        p90 = [float(g["p90_ms"].get(v, np.nan)) for v in variants]
        xs = np.arange(len(variants)) + k * w
        ax.bar(xs, p50, w, label=f"{dev} / {rt}", yerr=[np.zeros(len(p50)), np.subtract(p90, p50)], capsize=2)
    ax.set_xticks(np.arange(len(variants)) + w * (len(keys) - 1) / 2, variants, rotation=20, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("variant")
    ax.set_ylabel("p50 latency (ms; whisker to p90)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y", which="both")
    return save_figure(fig, "across-devices", "The same variants across devices", out_dir, "devices-end")


def figures(m: ReportModel, out_dir: Path) -> list[Figure]:
    out = []
    if not m.ladder.empty:
        out.append(ladder_figure(m, out_dir))
    arts = m.devices[m.devices["subject"] == "artifact"] if not m.devices.empty else m.devices
    for dev, rt in dict.fromkeys(zip(arts["device"], arts["runtime"])) if len(arts) else []:
        out.append(pareto_figure(m, dev, rt, out_dir))
        out.append(latency_figure(m, dev, rt, out_dir))
    if len(arts):
        out.append(devices_figure(m, out_dir))
    return out
