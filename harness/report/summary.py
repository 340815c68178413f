"""Reports from the results database: `reports/<run>/index.html` (self-contained), `summary.md` and
`results.csv` (one flat row per variant x device x runtime, provenance included).

    from harness.report.summary import write_report, signoff
    write_report(store, run_id, Path("reports"))                       # -> {"html": ..., "md": ..., "csv": ...}
    signoff(store, run_id, "cross-kd+int8-lsq", parse_budget("size=2MB,memory=4MB,latency_ms=300,accuracy=0.88"))
"""

import json
import logging
import re
from pathlib import Path

from eibutil import UserError, atomic_write_text
from eibutil.files import writable_dir
from harness.report.data import COLUMNS, flat_rows
from harness.report.html import render_html
from harness.results.store import Store

log = logging.getLogger(__name__)

UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
# memory: the model's own peak on the device (VmHWM minus the runtime's baseline), not the whole process
# latency: the end-to-end p90 (text in, label out) where measured, else the model's p90 (rows say which: latency_basis)
BUDGET_KEYS = {"size": "size_bytes", "memory": "model_memory_bytes", "latency_ms": "latency_ms", "accuracy": "accuracy"}


def parse_budget(text: str) -> dict[str, float]:
    """`size=2MB,memory=4MB,latency_ms=300,accuracy=0.88` -> {"size": 2e6, ...}; sizes take B/KB/MB/GB/KiB/MiB/GiB."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in BUDGET_KEYS:
            raise UserError(f"--budget: unknown key {key!r}; allowed: {', '.join(BUDGET_KEYS)}")
        m = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)", value.strip())
        if not m:
            raise UserError(f"--budget: {key}={value!r} is not a number with an optional unit")
        unit = m.group(2).lower()
        if unit and (key not in ("size", "memory") or unit not in UNITS):
            raise UserError(f"--budget: {key}: unit {m.group(2)!r} not understood (sizes take {', '.join(UNITS)})")
        out[key] = float(m.group(1)) * (UNITS[unit] if unit else 1)
    if not out:
        raise UserError("--budget: empty; give e.g. size=2MB,memory=4MB,latency_ms=300,accuracy=0.88")
    return out


def signoff(store: Store, run_id: str, variant: str, budget: dict[str, float]) -> list[dict]:
    """PASS or FAIL per device and runtime for one variant (name or id), with the numbers and margins."""
    rows = [r for r in flat_rows(store, run_id) if variant in (r["variant"], r["variant_id"])]
    if not rows:
        names = sorted({r["variant"] for r in flat_rows(store, run_id)})
        raise UserError(f"--deploy {variant!r}: no on-device measurement of that variant in run {run_id}; variants: "
                        f"{', '.join(names)}")
    out = []
    for r in rows:
        checks, failed = {}, []
        for key, limit in budget.items():
            col = BUDGET_KEYS[key]
            value = r[col]
            ok = value is not None and (value >= limit if key == "accuracy" else value <= limit)
            margin = None if value is None else (value - limit if key == "accuracy" else limit - value)
            checks[key] = {"measured": value, "budget": limit, "margin": margin, "pass": ok,
                           **({"basis": r["latency_basis"]} if key == "latency_ms" else {})}
            if not ok:
                failed.append(key)
        if r["verdict"] != "VALID" and "latency_ms" in budget:
            failed.append(f"latency not valid ({r['verdict_reason']})")
        out.append({"device": r["device"], "runtime": r["runtime"], "variant": r["variant"],
                    "verdict": "FAIL" if failed else "PASS",
                    "failed": failed, "checks": checks, "size_bytes": r["size_bytes"], "peak_rss_bytes": r["peak_rss_bytes"],
                    "model_memory_bytes": r["model_memory_bytes"],
                    "p90_ms": r["p90_ms"], "latency_ms": r["latency_ms"], "latency_basis": r["latency_basis"],
                    "accuracy": r["accuracy"]})
    return out


def _md_cell(c: str) -> str:
    return str(c).replace("|", "/").replace("\n", " ")


def table_markdown(t) -> list[str]:
    out = [f"## {t.title}", ""] + ([t.note, ""] if t.note else [])
    if t.frame.empty:
        return out + ["None.", ""]
    out += ["| " + " | ".join(map(_md_cell, t.frame.columns)) + " |", "|" + "---|" * len(t.frame.columns)]
    out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in t.frame.itertuples(index=False)]
    return out + [""]


def render_markdown(model, tables: list, figures: list, fig_dir: str = "figures") -> str:
    from harness.report.html import place

    run = model.run
    lines = [f"# Run {run['run_id']} ({run['name']})", ""]
    for kind, obj in place(tables, figures):
        lines += table_markdown(obj) if kind == "table" else [f"![{obj.title}]({fig_dir}/{obj.png.name})", ""]
    p = model.provenance
    if p:
        lines += ["## Provenance", "", f"- git: `{p['git_sha']}`{' (dirty)' if p['git_dirty'] else ''}", f"- host: {p['host']}",
                  f"- data: {p['data']}", f"- seeds: {p['seeds']}",
                  f"- packages: {', '.join(f'{k} {v}' for k, v in (p['packages'] or {}).items() if v)}", ""]
    return "\n".join(lines)


def render_csv(model) -> str:
    df = model.devices.reindex(columns=COLUMNS)
    df = df.map(lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
    return df.to_csv(index=False)


def write_report(store: Store, run_id: str, reports_dir: Path, compare=None, signoff_rows=None, budget=None) -> dict[str, Path]:
    from harness.report.figures import figures
    from harness.report.model import build_model
    from harness.report.profile import profile_figures, with_profiles
    from harness.report.tables import tables

    if store.run(run_id) is None:
        raise UserError(f"no run {run_id!r} in {store.url} (see `eib runs`)")
    out = writable_dir(Path(reports_dir) / run_id)
    model = build_model(store, run_id, compare, signoff_rows, budget)
    tabs, figs = with_profiles(tables(model), model), figures(model, out / "figures") + profile_figures(model, out / "figures")
    return {"html": atomic_write_text(out / "index.html", render_html(model, tabs, figs)),
            "md": atomic_write_text(out / "summary.md", render_markdown(model, tabs, figs)),
            "csv": atomic_write_text(out / "results.csv", render_csv(model))}


def write_summary(store: Store, run_id: str, reports_dir: Path) -> Path:
    """Every report of a run; returns the HTML one's path."""
    return write_report(store, run_id, reports_dir)["html"]


def report_run(store: Store, run_id: str, cfg) -> Path:
    """The reports of a run that just ended, where its config puts them (`eib run`, `eib nightly`)."""
    path = write_summary(store, run_id, Path(cfg.results.reports_dir))
    log.info(f"report: {path}")
    return path
