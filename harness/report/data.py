"""One flat row per variant x device x runtime, from the results database: what every report shows.

    rows = flat_rows(store, run_id)      # list of dicts; `results.csv` is exactly these
"""

from eibutil.stats import median_ci
from harness.measure.profile import KINDS
from harness.results.store import Store

COLUMNS = [
    "run_id", "variant_id", "subject", "variant", "overrides", "device", "runtime", "target", "emulated", "size_bytes",
    "accuracy",
    "host_accuracy", "n", "p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "p90_ms", "p99_ms", "count", "e2e_p50_ms", "e2e_p90_ms",
    "e2e_tokenizer", "latency_ms", "latency_basis", *(f"profile_{k.replace('-', '_')}_ms" for k in KINDS), "profile_sum_ms",
    "peak_rss_bytes",
    "model_memory_bytes", "model_bytes", "null_p50_ms", "null_p90_ms", "max_logit_drift", "verdict", "verdict_reason",
    "device_machine", "device_cpu", "git_sha", "git_dirty",
    "artifact_manifest_sha256", "data_sha256", "tuning_db_sha256", "seeds", "created_at",
]


def flat_rows(store: Store, run_id: str) -> list[dict]:
    variants = {v["variant_id"]: v for v in store.variants(run_id)}
    prov = {p["variant_id"]: p for p in store.provenance(run_id)}
    ms = store.measurements(run_id)
    host = {m["variant_id"]: m for m in ms if m["subject"] == "artifact" and m["device"] == "host"}
    out = []
    for m in ms:
        if m["device"] == "host":
            continue
        v = variants.get(m["variant_id"], {})
        p = prov.get(m["variant_id"]) or prov.get("") or {}
        met = m["metrics"] or {}
        facts = met.get("device_facts") or {}
        lo, hi = median_ci(m["samples"]) if m["samples"] else (None, None)
        build = met.get("build") or {}
        out.append({
            "run_id": run_id, "variant_id": m["variant_id"], "subject": m["subject"],
            "variant": "(teacher)" if m["subject"] == "teacher" else v.get("name", m["variant_id"]),
            "overrides": v.get("overrides"), "device": m["device"], "runtime": m["runtime"], "target": m["target"],
            "emulated": bool(met.get("emulated")), "size_bytes": m["size_bytes"], "accuracy": m["accuracy"],
            "host_accuracy": host.get(m["variant_id"], {}).get("accuracy"), "n": m["n"], "p50_ms": m["p50_ms"],
            "p50_ci_low_ms": lo, "p50_ci_high_ms": hi, "p90_ms": m["p90_ms"], "p99_ms": m["p99_ms"], "count": met.get("count"),
            "peak_rss_bytes": m["peak_rss_bytes"], "max_logit_drift": met.get("max_logit_drift"), "verdict": m["verdict"],
            "verdict_reason": m["verdict_reason"], "device_machine": facts.get("machine"),
            "device_cpu": facts.get("cpu_model") or facts.get("cpu_part"), "git_sha": p.get("git_sha"),
            "git_dirty": p.get("git_dirty"),
            "artifact_manifest_sha256": (p.get("extra") or {}).get("artifact_manifest_sha256"),
            "data_sha256": ";".join(sorted(set((p.get("data") or {}).values()))) or None,
            "tuning_db_sha256": build.get("db_sha256"), "seeds": p.get("seeds"), "created_at": m["created_at"],
            "null_p50_ms": (met.get("null") or {}).get("p50_ms"), "null_p90_ms": (met.get("null") or {}).get("p90_ms"),
            "model_bytes": met.get("model_bytes"), "model_memory_bytes": (met.get("memory") or {}).get("model_peak_bytes"),
            "samples": m["samples"],
            "int8_note": _int8_note(build, met.get("settings") or {}), **_latency(m, met.get("end_to_end") or {}),
            **_profile(met.get("profile")),
        })
    return out


def _int8_note(build: dict, settings: dict) -> str:
    """Why a TVM build that was asked for integer compute runs the dequantized float graph ("" otherwise)."""
    if build.get("int8_path") == "float" and settings.get("int8_compute", True):
        return f"integer path unavailable: {build.get('int8_reason', 'no reason recorded')}"
    return ""


def _latency(m: dict, e2e: dict) -> dict:
    """The end-to-end numbers (text -> label, tokeniser included) beside the model's, and the latency a budget
    judges: the end-to-end p90 where it was measured, else the model's p90 (the basis says which)."""
    e90 = e2e.get("p90_ms")
    return {"e2e_p50_ms": e2e.get("p50_ms"), "e2e_p90_ms": e90, "e2e_tokenizer": e2e.get("tokenizer"),
            "latency_ms": e90 if e90 is not None else m["p90_ms"],
            "latency_basis": "end-to-end p90" if e90 is not None else "model p90"}


def _profile(p: dict | None) -> dict:
    """The stored profile (the reports' bars and top-operator table) and its milliseconds per kind (CSV columns)."""
    ok = bool(p) and not p.get("error")
    kinds = {f"profile_{k.replace('-', '_')}_ms": p["by_kind_ms"].get(k) if ok else None for k in KINDS}
    return {"profile": p, **kinds, "profile_sum_ms": p["sum_ms"] if ok else None}
