"""The report model: everything a run's reports show, built once from the store as pandas DataFrames.
HTML, Markdown and CSV are rendered from these frames (and `report_tables` formats them once), so their
columns and numbers cannot drift apart.

    model = build_model(store, run_id, budget={"size": 2e6})
    model.devices      # one row per on-device measurement (teacher reference included)
    model.headline     # per device and runtime: the best variant within the budget, against the teacher there
"""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eibutil.stats import mcnemar_bits, paired_diff_ci, wilson
from harness.report.data import flat_rows
from harness.results.store import Store
from harness.stages import registry as reg

NOISE_RUNS = 5  # earlier finished runs of the same config whose spread is shown as run-to-run noise


@dataclass
class ReportModel:
    run: dict
    summary: dict[str, str]
    devices: pd.DataFrame
    host: pd.DataFrame
    ladder: pd.DataFrame
    stages: pd.DataFrame
    floors: pd.DataFrame
    headline: pd.DataFrame
    failures: pd.DataFrame
    noise: dict[str, float]
    provenance: dict | None
    compare: pd.DataFrame
    signoff: pd.DataFrame
    budget: dict | None


def _interval(acc, n) -> tuple[float, float]:
    if acc is None or not n or (isinstance(acc, float) and np.isnan(acc)):
        return float("nan"), float("nan")
    return wilson(float(acc), int(n))


def _host(store: Store, run_id: str, names: dict) -> pd.DataFrame:
    rows = []
    for m in store.measurements(run_id):
        if m["device"] != "host":
            continue
        lo, hi = _interval(m["accuracy"], m["n"])
        rows.append({"variant_id": m["variant_id"],
                     "variant": "(teacher)" if m["subject"] == "teacher" else names.get(m["variant_id"], m["variant_id"]),
                     "subject": m["subject"], "runtime": m["runtime"], "accuracy": m["accuracy"], "acc_lo": lo, "acc_hi": hi,
                     "n": m["n"],
                     "size_bytes": m["size_bytes"], "dev_correct": (m["metrics"] or {}).get("dev_correct")})
    return pd.DataFrame(rows,
                        columns=["variant_id", "variant", "subject", "runtime", "accuracy", "acc_lo", "acc_hi", "n", "size_bytes",
                                       "dev_correct"])


def _devices(rows: list[dict], host: pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["variant_id", "subject", "variant", "device", "runtime", "accuracy", "n", "acc_lo", "acc_hi",
                                     "host_n", "subset", "p50_ms", "p90_ms", "p99_ms", "size_bytes", "model_bytes",
                                     "peak_rss_bytes", "model_memory_bytes",
                                     "null_p50_ms", "null_p90_ms", "emulated", "verdict", "verdict_reason", "samples",
                                     "p50_ci_low_ms", "p50_ci_high_ms", "max_logit_drift", "host_accuracy", "int8_note",
                                     "e2e_p50_ms", "e2e_p90_ms", "e2e_tokenizer", "latency_ms", "latency_basis", "profile"])
    ci = [_interval(a, n) for a, n in zip(df["accuracy"], df["n"])]
    df["acc_lo"], df["acc_hi"] = [c[0] for c in ci], [c[1] for c in ci]
    host_n = {(r.variant_id, r.subject): r.n for r in host.itertuples()}
    host_acc = {(r.variant_id, r.subject): r.accuracy for r in host.itertuples()}
    df["host_n"] = [host_n.get((v, s)) for v, s in zip(df["variant_id"], df["subject"])]
    df["host_accuracy"] = [host_acc.get((v, s)) for v, s in zip(df["variant_id"], df["subject"])]
    df["subset"] = [bool(h) and n < h for n, h in zip(df["n"], df["host_n"])]
    return df


def ladder_frame(store: Store, run_id: str, host: pd.DataFrame) -> pd.DataFrame:
    """The ablation ladder: each rung's host accuracy with its interval, and a paired test against the rung before."""
    from harness.config.variants import ABLATIONS

    names = {v["name"]: v["variant_id"] for v in store.variants(run_id)}
    art = host[host["subject"] == "artifact"].set_index("variant_id") if not host.empty else host
    out, prev = [], None
    for rung, _ in ABLATIONS["eibert"]:
        name = next((n for n in names if n == rung or n.startswith(rung + "/")), None)
        if name is None or names[name] not in art.index:
            continue
        m = art.loc[names[name]]
        row = {"variant": name, "size_bytes": m["size_bytes"], "accuracy": m["accuracy"], "acc_lo": m["acc_lo"],
               "acc_hi": m["acc_hi"],
               "n": m["n"], "d_acc": None, "p_value": None, "verdict": ""}
        if prev is not None:
            row["d_acc"] = m["accuracy"] - prev["accuracy"]
            if m["dev_correct"] and prev["dev_correct"] and len(m["dev_correct"]) == len(prev["dev_correct"]):
                t = mcnemar_bits(m["dev_correct"], prev["dev_correct"])
                row["p_value"] = t["p_value"]
                row["verdict"] = "within noise" if t["within_noise"] else ("better" if row["d_acc"] > 0 else "worse")
            else:
                row["verdict"] = "no per-row results: not tested"
        out.append(row)
        prev = m
    return pd.DataFrame(out,
                        columns=["variant", "size_bytes", "accuracy", "acc_lo", "acc_hi", "n", "d_acc", "p_value", "verdict"])


def _stages(store: Store, run_id: str, names: dict) -> pd.DataFrame:
    rows = store.stage_results(run_id)
    cached_keys = [r["node_key"] for r in rows if r["status"] == "cached" and r["node_key"]]
    made = store.producers(cached_keys) if cached_keys else {}
    out = []
    order = list(reg.ORDER)
    for stage in sorted(dict.fromkeys(r["stage"] for r in rows), key=lambda st: order.index(st) if st in order else len(order)):
        mine = [r for r in rows if r["stage"] == stage]
        ran = [r for r in mine if r["status"] == "ok"]
        cached = [r for r in mine if r["status"] == "cached"]
        origin = [made[r["node_key"]] for r in cached if r["node_key"] in made]
        out.append({"stage": stage, "rows": len(mine), "computed": len(ran), "cached": len(cached),
                    "failed": sum(r["status"] in ("failed", "skipped") for r in mine),
                    "computed_s": sum(r["wall_s"] or 0.0 for r in ran),
                    "cached_original_s": sum(o["wall_s"] or 0.0 for o in origin) if cached else None,
                    "cached_from": ", ".join(sorted({o["run_id"] for o in origin}))
                    or ("-" if not cached else "an earlier cache")})
    return pd.DataFrame(out, columns=["stage", "rows", "computed", "cached", "failed", "computed_s", "cached_original_s",
                                      "cached_from"])


def _floors(devices: pd.DataFrame) -> pd.DataFrame:
    if devices.empty or devices["null_p50_ms"].isna().all():
        return pd.DataFrame(columns=["device", "null_p50_ms", "null_p90_ms", "measurements", "min_p50_ms"])
    g = devices.groupby("device", sort=False)
    return pd.DataFrame({"null_p50_ms": g["null_p50_ms"].median(), "null_p90_ms": g["null_p90_ms"].median(),
                         "measurements": g["null_p50_ms"].count(), "min_p50_ms": g["p50_ms"].min()}).reset_index()


BUDGET_COLUMNS = {"size": "size_bytes", "memory": "model_memory_bytes", "latency_ms": "latency_ms", "accuracy": "host_accuracy"}


def within(row, budget: dict | None) -> bool:
    for key, limit in (budget or {}).items():
        v = row[BUDGET_COLUMNS[key]]
        if v is None or (isinstance(v, float) and np.isnan(v)) or (v < limit if key == "accuracy" else v > limit):
            return False
    return True


def _headline(devices: pd.DataFrame, host: pd.DataFrame, budget: dict | None) -> pd.DataFrame:
    cols = ["device", "runtime", "variant", "within_budget", "candidates", "size_bytes", "x_smaller", "p50_ms", "x_faster",
            "peak_rss_bytes", "teacher_peak_rss_bytes", "model_memory_bytes", "teacher_model_memory_bytes", "accuracy",
            "teacher_accuracy", "d_acc", "d_acc_lo", "d_acc_hi", "emulated", "fastest"]
    if devices.empty:
        return pd.DataFrame(columns=cols)
    teacher_host = host[host["subject"] == "teacher"]
    t_bits = teacher_host["dev_correct"].iloc[0] if len(teacher_host) else None
    t_acc = teacher_host["accuracy"].iloc[0] if len(teacher_host) else None
    bits = {r.variant_id: r.dev_correct for r in host[host["subject"] == "artifact"].itertuples()}
    out = []
    for (dev, rt), g in devices.groupby(["device", "runtime"], sort=False):
        arts = g[g["subject"] == "artifact"]
        if arts.empty:
            continue
        ok = arts[[within(r, budget) for _, r in arts.iterrows()]]
        pick = ok if len(ok) else arts
        best = pick.sort_values(["host_accuracy", "size_bytes"], ascending=[False, True], na_position="last").iloc[0]
        teacher = devices[(devices["device"] == dev) & (devices["subject"] == "teacher")]
        t = teacher.iloc[0] if len(teacher) else None
        d = (best["host_accuracy"] - t_acc, float("nan"),
             float("nan")) if t_acc is not None and best["host_accuracy"] is not None else (None,) * 3
        if t_bits and bits.get(best["variant_id"]) and len(t_bits) == len(bits[best["variant_id"]]):
            d = paired_diff_ci(bits[best["variant_id"]], t_bits)
        out.append({"device": dev, "runtime": rt, "variant": best["variant"], "within_budget": bool(len(ok)) if budget else None,
                    "candidates": len(arts), "size_bytes": best["size_bytes"],
                    "x_smaller": (t["model_bytes"] / best["size_bytes"]) if t is not None and best["size_bytes"] else None,
                    "p50_ms": best["p50_ms"],
                    "x_faster": (t["p50_ms"] / best["p50_ms"]) if t is not None and best["p50_ms"] else None,
                    "peak_rss_bytes": best["peak_rss_bytes"],
                    "teacher_peak_rss_bytes": t["peak_rss_bytes"] if t is not None else None,
                    "model_memory_bytes": best["model_memory_bytes"],
                    "teacher_model_memory_bytes": t["model_memory_bytes"] if t is not None else None,
                    "accuracy": best["host_accuracy"], "teacher_accuracy": t_acc, "d_acc": d[0], "d_acc_lo": d[1],
                    "d_acc_hi": d[2],
                    "emulated": bool(best["emulated"])})
    for o in out:  # the runtime with the lowest p50 on each device (each runtime's own best variant)
        rivals = [x["p50_ms"] for x in out if x["device"] == o["device"] and x["p50_ms"] is not None]
        o["fastest"] = o["p50_ms"] is not None and len(rivals) > 1 and o["p50_ms"] == min(rivals)
    return pd.DataFrame(out, columns=cols)


def _noise(store: Store, run: dict) -> dict[str, float]:
    from harness.report.nightly import device_noise

    earlier = [r["run_id"] for r in sorted(store.runs(run["name"]), key=lambda r: r["created_at"], reverse=True)
               if r["status"] == "done" and r["created_at"] < run["created_at"]]
    return device_noise(store, earlier[:NOISE_RUNS]) if len(earlier) >= 2 else {}


def _summary(run: dict) -> dict[str, str]:
    s = run.get("summary") or {}
    out = {"status": run["status"], "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run["created_at"])),
           "config": str(run["config_path"])}
    if "wall_s" in s:
        out["wall time"] = f"{s['wall_s']:.1f} s"
    if "variants" in s:
        out["variants / stages"] = f"{s['variants']} / {s.get('stages', '-')}"
    keys = ("done", "cached", "resumed", "failed", "skipped", "retried", "invalid")
    if any(k in s for k in keys):
        out["stages"] = ", ".join(f"{s.get(k, 0)} {k}" for k in keys)
    if "executor" in s:
        out["executor"] = (f"{s['executor']} (setup {s.get('executor_setup_s', 0):.1f} s, "
                           f"driver's own work {s.get('driver_overhead_s', 0):.2f} s)")
    if "error" in s:
        out["error"] = str(s["error"])
    return out


def _failures(store: Store, run_id: str, names: dict) -> pd.DataFrame:
    rows = [{"stage": s["stage"], "variant": names.get(s["variant_id"], "(shared)"), "status": s["status"],
             "kind": s["error_kind"] or "-", "message": (s["error"] or "")[:300]}
            for s in store.stage_results(run_id) if s["status"] in ("failed", "skipped")]
    return pd.DataFrame(rows, columns=["stage", "variant", "status", "kind", "message"])


def _bits(host: pd.DataFrame) -> dict[str, tuple[float, str | None]]:
    return {r.variant_id: (r.accuracy, r.dev_correct) for r in host[host["subject"] == "artifact"].itertuples()}


def paired_compare(store: Store, host: pd.DataFrame, compare: list[dict]) -> pd.DataFrame:
    """The comparison rows with each variant's host accuracy (`host`: this run's) tested against the baseline
    run's, on the same rows."""
    now, before, out = _bits(host), {}, []
    for c in compare:
        if c["baseline"] not in before:
            before[c["baseline"]] = _bits(_host(store, c["baseline"], {}))
        b = before[c["baseline"]]
        (a_acc, a_bits), (b_acc, b_bits) = now.get(c["variant_id"], (None, None)), b.get(c["variant_id"], (None, None))
        row = {**c, "host_d_acc": None if a_acc is None or b_acc is None else a_acc - b_acc, "mcnemar_p": None,
               "acc_reading": "-"}
        if a_bits and b_bits and len(a_bits) == len(b_bits):
            t = mcnemar_bits(a_bits, b_bits)
            row["mcnemar_p"] = t["p_value"]
            row["acc_reading"] = "within noise" if t["within_noise"] else ("better" if row["host_d_acc"] > 0 else "worse")
        out.append(row)
    return pd.DataFrame(out)


def build_model(store: Store, run_id: str, compare: list[dict] | None = None, signoff: list[dict] | None = None,
                budget: dict | None = None) -> ReportModel:
    run = store.run(run_id)
    names = {v["variant_id"]: v["name"] for v in store.variants(run_id)}
    host = _host(store, run_id, names)
    devices = _devices(flat_rows(store, run_id), host)
    prov = next((p for p in store.provenance(run_id) if p["variant_id"] == ""), None)
    return ReportModel(run=run, summary=_summary(run), devices=devices, host=host, ladder=ladder_frame(store, run_id, host),
                       stages=_stages(store, run_id, names), floors=_floors(devices), headline=_headline(devices, host, budget),
                       failures=_failures(store, run_id, names), noise=_noise(store, run), provenance=prov,
                       compare=paired_compare(store, host, compare or []), signoff=pd.DataFrame(signoff or []), budget=budget)
