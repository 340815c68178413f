"""The self-contained HTML report: styles and SVG plots inline, no script, nothing fetched.

    html = render_html(store, run_id, rows, against=None)
"""

import html
import json
import time

from harness.rstats import pareto

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd} h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0;font-size:13px} th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .VALID{color:#176c2a} .INVALID{color:#a15c00} .FAIL,.failed{color:#b00020}
.PASS{color:#176c2a;font-weight:bold} .plots{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0}
figcaption{font-size:12px;color:#555} .note{color:#666;font-size:12px}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _f(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(headers: list[str], body: list[list], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    trs = []
    for r in body:
        tds = []
        for i, c in enumerate(r):
            cls = ("l " if i < left else "") + (str(c) if c in ("VALID", "INVALID", "PASS", "FAIL", "failed") else "")
            tds.append(f'<td class="{cls.strip()}">{c if isinstance(c, Raw) else _e(c)}</td>')
        trs.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><tr>{th}</tr>{''.join(trs)}</table>"


class Raw(str):
    """Already-escaped HTML."""


def scatter(points: list[dict], x: str, y: str, xlabel: str, ylabel: str, title: str, log_x: bool = False) -> str:
    """An SVG scatter plot with the Pareto frontier (lower x, higher y) drawn and its points ringed."""
    import math

    pts = [p for p in points if p.get(x) is not None and p.get(y) is not None]
    W, H, L, B, T, R = 460, 300, 64, 44, 28, 16
    if not pts:
        return f'<svg class="pareto" width="{W}" height="{H}" role="img"><text x="20" y="40">{_e(title)}: no data</text></svg>'
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [tx(p[x]) for p in pts], [p[y] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    padx, pady = (x1 - x0) * 0.08 or 0.5, (y1 - y0) * 0.12 or 0.01
    x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - pady, y1 + pady
    sx = lambda v: L + (tx(v) - x0) / (x1 - x0) * (W - L - R)
    sy = lambda v: H - B - (v - y0) / (y1 - y0) * (H - B - T)
    front = pareto([(p[x], p[y]) for p in pts])
    fpts = sorted((pts[i] for i in front), key=lambda p: p[x])
    out = [f'<svg class="pareto" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{_e(title)}">', f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{_e(title)}</text>',
           f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - B - T}" fill="none" stroke="#999"/>']
    for k in range(5):
        gy = y0 + (y1 - y0) * k / 4
        out.append(f'<text x="{L - 6}" y="{sy(gy) + 4:.1f}" text-anchor="end" font-size="10">{gy:.3f}</text>')
        gx = x0 + (x1 - x0) * k / 4
        label = 10 ** gx if log_x else gx
        out.append(f'<text x="{L + (gx - x0) / (x1 - x0) * (W - L - R):.1f}" y="{H - B + 14}" text-anchor="middle" font-size="10">'
                   f'{label:.3g}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" font-size="11">{_e(xlabel)}</text>')
    out.append(f'<text x="14" y="{H / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 14 {H / 2})">{_e(ylabel)}</text>')
    if len(fpts) > 1:
        path = " ".join(f"{sx(p[x]):.1f},{sy(p[y]):.1f}" for p in fpts)
        out.append(f'<polyline class="frontier" points="{path}" fill="none" stroke="#1f6feb" stroke-width="1.5" stroke-dasharray="4 3"/>')
    for i, p in enumerate(pts):
        on = i in front
        out.append(f'<circle class="{"front" if on else "point"}" cx="{sx(p[x]):.1f}" cy="{sy(p[y]):.1f}" r="{5 if on else 4}" '
                   f'fill="{"#1f6feb" if on else "#bbb"}" stroke="#333" stroke-width="{1 if on else 0.5}">'
                   f'<title>{_e(p.get("variant"))}: {p[x]:.4g} / {p[y]:.4f}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def render_html(run: dict, rows: list[dict], stages: list[dict], variants: list[dict], provenance: list[dict],
                ladder: list[dict], failures: list[dict], compare: list[dict] | None = None, signoff: list[dict] | None = None) -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>EI-BERT run {_e(run['run_id'])}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>EI-BERT run {_e(run['run_id'])} <small>({_e(run['name'])})</small></h1>",
             f"<p>status <b>{_e(run['status'])}</b>; started {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(run['created_at']))} UTC; "
             f"config <code>{_e(run['config_path'])}</code>; {len(variants)} variant(s); summary {_e(json.dumps(run.get('summary') or {}))}</p>"]
    if signoff:
        parts.append("<h2>Deployment sign-off</h2>" + table(
            ["device", "runtime", "verdict", "size bytes", "peak memory bytes", "p90 ms", "accuracy", "failed budgets"],
            [[s["device"], s["runtime"], s["verdict"], _f(s["size_bytes"]), _f(s["peak_rss_bytes"]), _f(s["p90_ms"]),
              _f(s["accuracy"], 4), ", ".join(s["failed"]) or "-"] for s in signoff]))
    devices = list(dict.fromkeys(r["device"] for r in rows))
    for dev in devices:
        mine = [r for r in rows if r["device"] == dev]
        emu = any(r["emulated"] for r in mine)
        parts.append(f'<h2 id="device-{_e(dev)}">Device {_e(dev)}{" (emulated: latency not comparable with native devices)" if emu else ""}</h2>')
        parts.append(table(
            ["variant", "runtime", "size bytes", "accuracy (on device)", "n", "p50 ms [95% CI]", "p90 ms", "p99 ms", "peak RSS MiB", "drift", "verdict"],
            [[r["variant"], r["runtime"], _f(r["size_bytes"]), _f(r["accuracy"], 4), r["n"],
              f"{_f(r['p50_ms'], 3)} [{_f(r['p50_ci_low_ms'], 3)}, {_f(r['p50_ci_high_ms'], 3)}]", _f(r["p90_ms"], 3), _f(r["p99_ms"], 3),
              _f((r["peak_rss_bytes"] or 0) / 2**20, 1), f"{r['max_logit_drift']:.1e}" if r["max_logit_drift"] is not None else "-",
              Raw(f'<span class="{_e(r["verdict"])}" title="{_e(r["verdict_reason"])}">{_e(r["verdict"])}</span>')] for r in mine]))
        for runtime in dict.fromkeys(r["runtime"] for r in mine):
            pts = [r for r in mine if r["runtime"] == runtime]
            parts.append('<div class="plots">')
            parts.append("<figure>" + scatter(pts, "size_bytes", "accuracy", "deployed size (bytes)", "accuracy",
                                               f"{dev} / {runtime}: accuracy vs size") + "<figcaption>Pareto frontier: dashed; ringed points are on it.</figcaption></figure>")
            parts.append("<figure>" + scatter(pts, "p50_ms", "accuracy", "p50 latency (ms)", "accuracy",
                                               f"{dev} / {runtime}: accuracy vs latency", log_x=True) + "</figure>")
            parts.append("</div>")
    if compare:
        parts.append("<h2>Against the baseline</h2>" + table(
            ["variant", "device", "runtime", "p50 now ms", "p50 before ms", "change", "95% CI", "noise threshold", "flag"],
            [[c["variant"], c["device"], c["runtime"], _f(c["p50_ms"], 3), _f(c["base_p50_ms"], 3), f"{c['change']:+.1%}",
              f"[{c['ci_low']:+.1%}, {c['ci_high']:+.1%}]", f"±{c['threshold']:.1%}", c["flag"]] for c in compare]))
    if ladder:
        parts.append("<h2>Ablation ladder</h2><p class=note>Host accuracy of each rung's artifact (onnxruntime, full dev set), "
                     "and what the rung changed against the one before.</p>" + table(
                         ["rung", "size bytes", "accuracy", "Δ accuracy", "Δ size bytes"],
                         [[r["variant"], _f(r["size_bytes"]), _f(r["accuracy"], 4), r["d_acc"], r["d_size"]] for r in ladder]))
    by_stage: dict[str, list[float]] = {}
    for s in stages:
        by_stage.setdefault(s["stage"], []).append(s["wall_s"] or 0.0)
    parts.append("<h2>Time per stage</h2>" + table(["stage", "rows", "total s", "max s"],
                                                  [[k, len(v), _f(sum(v), 1), _f(max(v), 1)] for k, v in by_stage.items()]))
    parts.append("<h2>Failures</h2>" + (table(["stage", "variant", "status", "kind", "message"],
                                              [[f["stage"], f["variant"], f["status"], f["error_kind"], f["error"]] for f in failures])
                                        if failures else "<p>None.</p>"))
    p = next((x for x in provenance if x["variant_id"] == ""), provenance[0] if provenance else None)
    if p:
        pk = ", ".join(f"{k} {v}" for k, v in (p["packages"] or {}).items() if v)
        parts.append(f"<h2>Provenance</h2><ul><li>git <code>{_e(p['git_sha'])}</code>{' (dirty)' if p['git_dirty'] else ''}</li>"
                     f"<li>packages: {_e(pk)}</li><li>host: {_e(json.dumps(p['host']))}</li><li>data: {_e(json.dumps(p['data']))}</li>"
                     f"<li>seeds: {_e(json.dumps(p['seeds']))}</li></ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
