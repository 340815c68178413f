"""The history page of a config's nightly runs: per device, p50/p90 and accuracy of every variant over
the last N finished runs, the noise band the nightly check used at each run, and its flagged points.

    eib history configs/nightly.yaml [--last 20]      # -> reports/history/<name>/index.html
    frame = history_frame(store, "nightly", last=20)  # one row per run x variant x device x runtime
"""

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from eibutil import UserError, atomic_write_text  # noqa: E402
from eibutil.files import writable_dir  # noqa: E402
from harness.report.data import flat_rows  # noqa: E402
from harness.report.figures import save_figure  # noqa: E402
from harness.report.html import CSS, figure_html, table_html  # noqa: E402
from harness.report.nightly import MIN_CHANGE_MS, compare_runs  # noqa: E402
from harness.report.tables import Table, ms, pct  # noqa: E402

BASELINES = 5  # what `eib nightly` compares each run with (its --last default)


def history_frame(store, name: str, last: int = 20, floor: float = 0.05, min_change_ms: float = MIN_CHANGE_MS) -> pd.DataFrame:
    everything = [r for r in sorted(store.runs(name), key=lambda r: r["created_at"]) if r["status"] == "done"]
    if not everything:
        raise UserError(f"no finished run of config {name!r} in {store.url} (see `eib runs`)")
    first = max(0, len(everything) - last)
    out = []
    for i, run in enumerate(everything[first:]):
        pos = first + i
        baselines = [r["run_id"] for r in reversed(everything[max(0, pos - BASELINES):pos])]
        flags = {(f["variant_id"], f["device"], f["runtime"]): f
                 for f in compare_runs(store, run["run_id"], baselines, floor=floor, min_change_ms=min_change_ms)}
        for r in flat_rows(store, run["run_id"]):
            f = flags.get((r["variant_id"], r["device"], r["runtime"]), {})
            out.append({"index": i, "run_id": run["run_id"], "created_at": run["created_at"], "variant": r["variant"],
                        "device": r["device"], "runtime": r["runtime"], "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"],
                        "accuracy": r["accuracy"], "emulated": r["emulated"],
                        "flag": f.get("flag", "first run" if not baselines else "-"),
                        "base_p50_ms": f.get("base_p50_ms"), "threshold": f.get("threshold"), "change": f.get("change")})
    return pd.DataFrame(out)


def _device_figure(df: pd.DataFrame, dev: str, out_dir: Path):
    d = df[df["device"] == dev]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 5.6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    marked = False
    for k, ((variant, rt), g) in enumerate(d.groupby(["variant", "runtime"], sort=False)):
        c = f"C{k % 10}"
        ax.plot(g["index"], g["p50_ms"], "-o", c=c, ms=4, label=f"{variant} ({rt}) p50")
        ax.plot(g["index"], g["p90_ms"], ":", c=c, lw=1, label=f"{variant} ({rt}) p90")
        band = g[g["base_p50_ms"].notna()]
        ax.fill_between(band["index"], band["base_p50_ms"] * (1 - band["threshold"]),
                        band["base_p50_ms"] * (1 + band["threshold"]),
                        color=c, alpha=0.12, lw=0)
        bad = g[g["flag"] == "regression"]
        if len(bad):
            ax.scatter(bad["index"], bad["p50_ms"], marker="X", s=120, c="#b00020", zorder=5, gid=f"flagged-regression-{k}",
                       label=None if marked else "flagged regression")
            marked = True
        ax2.plot(g["index"], g["accuracy"], "-o", c=c, ms=3)
        bad_acc = g[g["flag"] == "accuracy regression"]
        if len(bad_acc):
            ax2.scatter(bad_acc["index"], bad_acc["accuracy"], marker="X", s=100, c="#b00020", zorder=5, gid="flagged-accuracy")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    ax2.set_ylabel("accuracy on device")
    ax2.set_xlabel("nightly run (oldest to newest); band: the noise threshold the check used")
    ax2.grid(alpha=0.3)
    runs = d.drop_duplicates("index")
    ax2.set_xticks(runs["index"], [r[-6:] for r in runs["run_id"]], fontsize=7)
    return save_figure(fig, f"history-{dev}", f"{dev}: latency and accuracy over the last {runs['index'].nunique()} runs",
                       out_dir, "")


def write_history(store, name: str, reports_dir: Path, last: int = 20) -> tuple[Path, int]:
    """(the page, how many run x variant x device x runtime rows were compared with earlier runs); nothing
    compared is a UserError (one run only, or runs that share no variant)."""
    writable_dir(Path(reports_dir) / "history" / name)
    df = history_frame(store, name, last)
    compared = int(df["base_p50_ms"].notna().sum()) if len(df) else 0
    if compared == 0:
        raise UserError(f"history of {name!r}: nothing compared ({df['run_id'].nunique() if len(df) else 0} finished run(s) "
                        "that share no variant x device x runtime row with a run before them)")
    out = Path(reports_dir) / "history" / name
    figs = [_device_figure(df, dev, out / "figures") for dev in dict.fromkeys(df["device"])]
    flagged = df[df["flag"].isin(["regression", "accuracy regression", "improvement"])]
    flag_table = Table("flagged", "Flagged points", "Each run judged against the runs before it, as `eib nightly` judges it.",
                       pd.DataFrame([[r.run_id, r.variant, r.device, r.runtime, ms(r.p50_ms), ms(r.base_p50_ms),
                                      f"{r.change:+.1%}", f"±{r.threshold:.1%}", r.flag] for r in flagged.itertuples()],
                                    columns=["run", "variant", "device", "runtime", "p50 ms", "baseline p50 ms", "change",
                                             "threshold", "flag"]))
    runs = df.drop_duplicates("run_id")
    run_table = Table("runs", "Runs", "", pd.DataFrame(
        [[r.run_id, pd.Timestamp(r.created_at, unit="s").strftime("%Y-%m-%d %H:%M"),
          (df[df["run_id"] == r.run_id]["flag"] == "regression").sum(),
          pct(df[df["run_id"] == r.run_id]["accuracy"].mean())] for r in runs.itertuples()],
        columns=["run", "started (UTC)", "regressions", "mean accuracy on device"]))
    page = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>History of {html.escape(name)}</title>"
            f"<style>{CSS}</style></head><body><h1>History of {html.escape(name)} <small>({len(runs)} runs)</small></h1>"]
    page += [figure_html(f) for f in figs] + [table_html(flag_table), table_html(run_table), "</body></html>"]
    return atomic_write_text(out / "index.html", "\n".join(page)), compared
