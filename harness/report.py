"""Reports from the results database (Markdown for now).

    from harness.report import write_summary
    write_summary(Store("results/eib.sqlite"), run_id, Path("reports"))   # -> reports/<run>/summary.md
"""

import time
from pathlib import Path

from eibutil import atomic_write_text
from harness.store import Store


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _table(headers: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out


def render_summary(store: Store, run_id: str) -> str:
    run = store.run(run_id)
    if run is None:
        raise KeyError(run_id)
    lines = [f"# Run {run_id} ({run['name']})", ""]
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run["created_at"]))
    lines += [f"- status: **{run['status']}**", f"- started: {started} UTC", f"- config: `{run['config_path']}`", ""]
    variants = store.variants(run_id)
    lines += ["## Variants", ""] + _table(["variant", "name", "overrides"], [[v["variant_id"], v["name"], v["overrides"]] for v in variants]) + [""]
    names = {v["variant_id"]: v["name"] for v in variants}
    label = lambda vid: names.get(vid, vid) if vid else "(shared)"  # noqa: E731
    stages = store.stage_results(run_id)
    lines += ["## Stages", ""] + _table(
        ["variant", "stage", "status", "wall s", "error"],
        [[label(s["variant_id"]), s["stage"], s["status"], s["wall_s"], (s["error"] or "")[:120]] for s in stages],
    ) + [""]
    ms = store.measurements(run_id)
    lines += ["## Measurements", ""] + _table(
        ["variant", "subject", "device", "runtime", "accuracy", "n", "size bytes", "p50 ms", "p90 ms", "verdict"],
        [[label(m["variant_id"]), m["subject"], m["device"], m["runtime"], m["accuracy"], m["n"], m["size_bytes"],
          m["p50_ms"], m["p90_ms"], m["verdict"]] for m in ms],
    ) + [""]
    for p in store.provenance(run_id)[:1]:
        lines += ["## Provenance", "", f"- git: `{p['git_sha']}`{' (dirty)' if p['git_dirty'] else ''}",
                  f"- host: {p['host']}", f"- data: {p['data']}", f"- seeds: {p['seeds']}",
                  f"- packages: {', '.join(f'{k} {v}' for k, v in (p['packages'] or {}).items() if v)}", ""]
    return "\n".join(lines)


def write_summary(store: Store, run_id: str, reports_dir: Path) -> Path:
    return atomic_write_text(Path(reports_dir) / run_id / "summary.md", render_summary(store, run_id))
