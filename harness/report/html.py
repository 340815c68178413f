"""The self-contained HTML report: styles and SVG figures inline, no script, nothing fetched.

    html = render_html(model, tables(model), figures(model, out / "figures"))
"""

import html
import json

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1240px;color:#222;padding:0 16px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px} th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left} .note{color:#555;font-size:12px;max-width:1000px}
figure{margin:12px 0} figcaption{font-size:12px;color:#555} svg.figure{max-width:100%;height:auto}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def table_html(t) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t.frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in t.frame.itertuples(index=False))
    note = f'<p class="note">{_e(t.note)}</p>' if t.note else ""
    empty = "<p>None.</p>" if t.frame.empty else ""
    return (f'<section id="{_e(t.id)}"><h2>{_e(t.title)}</h2>{note}'
            + (empty or f'<table data-table="{_e(t.id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
            + "</section>")


def figure_html(f) -> str:
    return f'<figure id="fig-{_e(f.id)}" data-figure="{_e(f.id)}">{f.svg}<figcaption>{_e(f.title)}</figcaption></figure>'


def place(tables: list, figures: list) -> list[tuple[str, object]]:
    """("table", t) and ("figure", f) in reading order: each figure after the table it belongs to."""
    out: list[tuple[str, object]] = []
    last_device = max((i for i, t in enumerate(tables) if t.id.startswith("device-")), default=None)
    for i, t in enumerate(tables):
        out.append(("table", t))
        out += [("figure", f) for f in figures if f.after == t.id]
        if i == last_device:
            out += [("figure", f) for f in figures if f.after == "devices-end"]
    return out


def render_html(model, tables: list, figures: list) -> str:
    run = model.run
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>EI-BERT run {_e(run['run_id'])}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>EI-BERT run {_e(run['run_id'])} <small>({_e(run['name'])})</small></h1>"]
    for kind, obj in place(tables, figures):
        parts.append(table_html(obj) if kind == "table" else figure_html(obj))
    p = model.provenance
    if p:
        pk = ", ".join(f"{k} {v}" for k, v in (p["packages"] or {}).items() if v)
        parts.append(f"<section id=provenance><h2>Provenance</h2><ul><li>git <code>{_e(p['git_sha'])}</code>"
                     f"{' (dirty)' if p['git_dirty'] else ''}</li><li>packages: {_e(pk)}</li><li>host: "
                     f"{_e(json.dumps(p['host']))}</li><li>data: {_e(json.dumps(p['data']))}</li><li>seeds: "
                     f"{_e(json.dumps(p['seeds']))}</li></ul></section>")
    parts.append("</body></html>")
    return "\n".join(parts)
