"""The reports' per-operator view: per device, a stacked bar per variant and runtime (milliseconds per inference
by kind of operator) and a table of the top operators, from the profiles measurements stored
(`measure.profile: true`, `eib measure --profile`; harness/measure/profile.py).

    tabs = with_profiles(tables(model), model)         # an "ops-<device>" table after each profiled device's table
    figs = figures(model, out) + profile_figures(model, out)
"""

from pathlib import Path

import numpy as np

from harness.measure.profile import KINDS
from harness.report.figures import Figure, _slug, plt, save_figure  # plt with the Agg backend set there
from harness.report.model import ReportModel
from harness.report.tables import Table, _frame, ms

TOP_SHOWN = 5
COLOURS = {"embedding": "#8250df", "attention": "#1f6feb", "feed-forward": "#2da44e", "norms": "#bf8700", "head": "#cf222e",
           "quantize": "#0a7f86", "other": "#8c959f"}


def _profiled(m: ReportModel, dev: str) -> list:
    if m.devices.empty or "profile" not in m.devices:
        return []
    d = m.devices[m.devices["device"] == dev]
    return [r for r in d.itertuples() if isinstance(r.profile, dict) and not r.profile.get("error")]


def _label(r) -> str:
    return f"{r.variant} ({r.runtime})"


def _sum_share(p: dict) -> str:
    """The profile's sum against the timed p50 and against the unprofiled inferences interleaved with it."""
    parts = [f"{p['sum_over_p50']:.2f} x p50"] if p.get("sum_over_p50") else []
    if p.get("sum_over_plain"):
        parts.append(f"{p['sum_over_plain']:.2f} x interleaved")
    return ", ".join(parts) or "-"


def profile_table(m: ReportModel, dev: str) -> Table | None:
    rows = []
    for r in _profiled(m, dev):
        p = r.profile
        for o in p["top"][:TOP_SHOWN]:
            rows.append([_label(r), o["op"], o["kind"], o["calls"], ms(o["ms"]), f"{100 * (o['share'] or 0):.0f}%"])
        rows.append([_label(r), "(all operators)", "", p["calls"], ms(p["sum_ms"]), _sum_share(p)])
    if not rows:
        return None
    note = ("Time per inference by operator, from a profiled pass after the timed one (onnxruntime: session profiling, "
            "by operator type; TVM: the VM's call instrument, by kernel). Each profiler's own cost per call, estimated as its "
            "cheapest call's median, is subtracted; the last row of each model compares the profile's sum with the "
            "unprofiled p50 and with the median of unprofiled inferences run between the profiled ones (the machine at "
            "the same moment). "
            "onnxruntime's profiler also serialises its thread pool, so at 2 threads its sum can exceed the p50.")
    return Table(f"ops-{dev}", f"Top operators on {dev}", note,
                 _frame(rows, ["model", "operator", "kind", "calls", "ms per inference", "share"]))


def with_profiles(tables: list[Table], m: ReportModel) -> list[Table]:
    out = []
    for t in tables:
        out.append(t)
        if t.id.startswith("device-") and (extra := profile_table(m, t.id[len("device-"):])) is not None:
            out.append(extra)
    return out


def _panels(rows: list) -> list[list]:
    """The rows in panels of one scale: a teacher several times slower than every compressed model gets its own
    panel, so the models' bars are not squeezed to slivers."""
    total = lambda r: max(sum(r.profile["by_kind_ms"].values()), r.p50_ms or 0)  # noqa: E731
    big = [r for r in rows if getattr(r, "subject", None) == "teacher"]
    small = [r for r in rows if getattr(r, "subject", None) != "teacher"]
    if big and small and min(map(total, big)) > 3 * max(map(total, small)):
        return [big, small]
    return [rows]


def _bars(ax, rows: list, legend: bool) -> None:
    ys = np.arange(len(rows))
    left = np.zeros(len(rows))
    for kind in KINDS:
        vals = np.array([r.profile["by_kind_ms"].get(kind, 0.0) for r in rows])
        ax.barh(ys, vals, left=left, color=COLOURS[kind], label=kind)
        left += vals
    ax.scatter([r.p50_ms for r in rows], ys, marker="|", s=300, c="black", label="unprofiled p50", zorder=3)
    ax.set_yticks(ys, [_label(r) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.5 * max(max(left), *(r.p50_ms or 0 for r in rows)))  # room on the right for the legend
    ax.grid(alpha=0.3, axis="x")
    if legend:
        ax.legend(fontsize=7, ncol=1, loc="center right")


def profile_figure(m: ReportModel, dev: str, out_dir: Path) -> Figure | None:
    rows = _profiled(m, dev)
    if not rows:
        return None
    panels = _panels(rows)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8.5, 1.6 + 0.45 * len(rows) + 0.5 * (len(panels) - 1)), squeeze=False,
                             gridspec_kw={"height_ratios": [len(p) + 0.6 for p in panels]})
    for k, (ax, panel) in enumerate(zip(axes[:, 0], panels)):
        _bars(ax, panel, legend=k == len(panels) - 1)
    axes[-1, 0].set_xlabel("ms per inference by operator kind" + (" (each panel on its own scale)" if len(panels) > 1 else ""))
    fig.tight_layout()
    return save_figure(fig, _slug("profile", dev), f"{dev}: where the time goes, per operator kind", out_dir, f"ops-{dev}")


def profile_figures(m: ReportModel, out_dir: Path) -> list[Figure]:
    devs = dict.fromkeys(m.devices["device"]) if not m.devices.empty else {}
    return [f for d in devs if (f := profile_figure(m, d, out_dir)) is not None]
