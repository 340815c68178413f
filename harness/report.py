"""Reports from the results database: `reports/<run>/index.html` (self-contained), `summary.md` and
`results.csv` (one flat row per variant x device x runtime, provenance included).

    from harness.report import write_report, signoff
    write_report(store, run_id, Path("reports"))                       # -> {"html": ..., "md": ..., "csv": ...}
    signoff(store, run_id, "cross-kd+int8-lsq", parse_budget("size=2MB,memory=4MB,latency_ms=300,accuracy=0.88"))
"""

import csv
import io
import json
import re
import time
from pathlib import Path

from eibutil import UserError, atomic_write_text
from harness.report_data import COLUMNS, flat_rows
from harness.report_html import render_html
from harness.store import Store

UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
BUDGET_KEYS = {"size": "size_bytes", "memory": "peak_rss_bytes", "latency_ms": "p90_ms", "accuracy": "accuracy"}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _table(headers: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_fmt(c).replace("|", "/") for c in r) + " |" for r in rows]
    return out


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
        raise UserError(f"--deploy {variant!r}: no on-device measurement of that variant in run {run_id}; variants: {', '.join(names)}")
    out = []
    for r in rows:
        checks, failed = {}, []
        for key, limit in budget.items():
            col = BUDGET_KEYS[key]
            value = r[col]
            ok = value is not None and (value >= limit if key == "accuracy" else value <= limit)
            margin = None if value is None else (value - limit if key == "accuracy" else limit - value)
            checks[key] = {"measured": value, "budget": limit, "margin": margin, "pass": ok}
            if not ok:
                failed.append(key)
        if r["verdict"] != "VALID" and "latency_ms" in budget:
            failed.append(f"latency not valid ({r['verdict_reason']})")
        out.append({"device": r["device"], "runtime": r["runtime"], "variant": r["variant"], "verdict": "FAIL" if failed else "PASS",
                    "failed": failed, "checks": checks, "size_bytes": r["size_bytes"], "peak_rss_bytes": r["peak_rss_bytes"],
                    "p90_ms": r["p90_ms"], "accuracy": r["accuracy"]})
    return out


def ablation_ladder(store: Store, run_id: str) -> list[dict]:
    from harness.variants import ABLATIONS

    variants = store.variants(run_id)
    host = {m["variant_id"]: m for m in store.measurements(run_id) if m["subject"] == "artifact" and m["device"] == "host"}
    out, prev = [], None
    for rung, _ in ABLATIONS["eibert"]:
        v = next((v for v in variants if v["name"] == rung or v["name"].startswith(rung + "/")), None)
        if not v or v["variant_id"] not in host:
            continue
        m = host[v["variant_id"]]
        row = {"variant": v["name"], "size_bytes": m["size_bytes"], "accuracy": m["accuracy"], "d_acc": "-", "d_size": "-"}
        if prev:
            row["d_acc"] = f"{m['accuracy'] - prev['accuracy']:+.4f}"
            row["d_size"] = f"{m['size_bytes'] - prev['size_bytes']:+,}"
        out.append(row)
        prev = m
    return out


def _failures(store: Store, run_id: str) -> list[dict]:
    names = {v["variant_id"]: v["name"] for v in store.variants(run_id)}
    rows = store.stage_results(run_id)
    return [{"stage": s["stage"], "variant": names.get(s["variant_id"], "(shared)"), "status": s["status"], "error_kind": s["error_kind"],
             "error": (s["error"] or "")[:300]} for s in rows if s["status"] in ("failed", "skipped")]


def render_markdown(store: Store, run_id: str, rows: list[dict], compare=None, signoff_rows=None) -> str:
    run = store.run(run_id)
    lines = [f"# Run {run_id} ({run['name']})", ""]
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run["created_at"]))
    lines += [f"- status: **{run['status']}**", f"- started: {started} UTC", f"- config: `{run['config_path']}`",
              f"- summary: {json.dumps(run.get('summary') or {})}", ""]
    if signoff_rows:
        lines += ["## Deployment sign-off", ""] + _table(
            ["device", "runtime", "verdict", "size bytes", "peak memory bytes", "p90 ms", "accuracy", "failed"],
            [[s["device"], s["runtime"], s["verdict"], s["size_bytes"], s["peak_rss_bytes"], s["p90_ms"], s["accuracy"], ", ".join(s["failed"]) or "-"]
             for s in signoff_rows]) + [""]
    variants = store.variants(run_id)
    names = {v["variant_id"]: v["name"] for v in variants}
    host = [m for m in store.measurements(run_id) if m["device"] == "host"]
    lines += ["## Host accuracy (onnxruntime / torch, full dev set)", ""] + _table(
        ["variant", "subject", "runtime", "accuracy", "n", "size bytes"],
        [[names.get(m["variant_id"], "(teacher)"), m["subject"], m["runtime"], m["accuracy"], m["n"], m["size_bytes"]] for m in host]) + [""]
    for dev in dict.fromkeys(r["device"] for r in rows):
        mine = [r for r in rows if r["device"] == dev]
        lines += [f"## Device {dev}{' (emulated)' if any(r['emulated'] for r in mine) else ''}", ""] + _table(
            ["variant", "runtime", "size bytes", "accuracy", "n", "p50 ms", "p50 95% CI", "p90 ms", "p99 ms", "peak RSS bytes", "verdict"],
            [[r["variant"], r["runtime"], r["size_bytes"], r["accuracy"], r["n"], r["p50_ms"],
              f"[{_fmt(r['p50_ci_low_ms'])}, {_fmt(r['p50_ci_high_ms'])}]", r["p90_ms"], r["p99_ms"], r["peak_rss_bytes"],
              r["verdict"] + (f" ({r['verdict_reason']})" if r["verdict_reason"] else "")] for r in mine]) + [""]
    if compare:
        lines += ["## Against the baseline", ""] + _table(
            ["variant", "device", "runtime", "p50 ms", "baseline p50 ms", "change", "95% CI", "threshold", "flag"],
            [[c["variant"], c["device"], c["runtime"], c["p50_ms"], c["base_p50_ms"], f"{c['change']:+.1%}",
              f"[{c['ci_low']:+.1%}, {c['ci_high']:+.1%}]", f"±{c['threshold']:.1%}", c["flag"]] for c in compare]) + [""]
    stages = store.stage_results(run_id)
    lines += ["## Stages", ""] + _table(["variant", "stage", "status", "wall s", "error"],
                                        [[names.get(s["variant_id"], "(shared)"), s["stage"], s["status"], s["wall_s"], (s["error"] or "")[:120]]
                                         for s in stages]) + [""]
    for p in [p for p in store.provenance(run_id) if p["variant_id"] == ""][:1]:
        lines += ["## Provenance", "", f"- git: `{p['git_sha']}`{' (dirty)' if p['git_dirty'] else ''}", f"- host: {p['host']}",
                  f"- data: {p['data']}", f"- seeds: {p['seeds']}",
                  f"- packages: {', '.join(f'{k} {v}' for k, v in (p['packages'] or {}).items() if v)}", ""]
    return "\n".join(lines)


def render_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    return buf.getvalue()


def write_report(store: Store, run_id: str, reports_dir: Path, compare=None, signoff_rows=None) -> dict[str, Path]:
    run = store.run(run_id)
    if run is None:
        raise UserError(f"no run {run_id!r} in {store.url} (see `eib runs`)")
    rows = flat_rows(store, run_id)
    out = Path(reports_dir) / run_id
    html = render_html(run, rows, store.stage_results(run_id), store.variants(run_id), store.provenance(run_id),
                       ablation_ladder(store, run_id), _failures(store, run_id), compare, signoff_rows)
    return {"html": atomic_write_text(out / "index.html", html),
            "md": atomic_write_text(out / "summary.md", render_markdown(store, run_id, rows, compare, signoff_rows)),
            "csv": atomic_write_text(out / "results.csv", render_csv(rows))}


def write_summary(store: Store, run_id: str, reports_dir: Path) -> Path:
    """Every report of a run; returns the HTML one's path."""
    return write_report(store, run_id, reports_dir)["html"]
