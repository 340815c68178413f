"""Regression detection that knows each device's noise.

    flags = compare_runs(store, run_id, baselines=[last_run, older_run, ...])
    [f for f in flags if f["flag"] == "regression"]

For each variant x device x runtime: the relative change of the p50 latency with a bootstrap interval
(resampling the raw single-inference samples of both runs), and a threshold from the device's own
repeat-to-repeat noise: twice the largest relative p50 change between consecutive baseline runs on that
device (an assumed 25% until two baseline runs exist), never below `floor`. A change is a regression (or an
improvement) only when its whole interval lies beyond the threshold and the p50 moved by at least
`min_change_ms` (sub-millisecond models on a shared CPU were seen to move +82% between unchanged runs,
0.069 -> 0.127 ms: below a scheduler tick, a relative threshold alone cannot tell noise from a regression).
Accuracy is compared too; emulated devices are never judged on latency.
"""

from eibutil.stats import median_diff_ci
from harness.report.data import flat_rows

NOISE_FACTOR = 2.0
# Until a device has two baseline runs its run-to-run noise is unknown; small models on a shared CPU
# were seen to move 30% between unchanged runs, so assume that much rather than alarm on it.
PRIOR_NOISE = 0.25


def device_noise(store, baselines: list[str]) -> dict[str, float]:
    """Per device: the largest |p50_i / p50_(i+1) - 1| over consecutive baseline runs and every shared key
    (the range, not a typical value: a false alarm costs a night's trust)."""
    runs = [{(r["variant_id"], r["device"], r["runtime"]): r for r in flat_rows(store, b)} for b in baselines]
    diffs: dict[str, list[float]] = {}
    for a, b in zip(runs, runs[1:]):
        for key in a.keys() & b.keys():
            if a[key]["p50_ms"] and b[key]["p50_ms"]:
                diffs.setdefault(key[1], []).append(abs(a[key]["p50_ms"] / b[key]["p50_ms"] - 1))
    return {d: max(v) for d, v in diffs.items()}


MIN_CHANGE_MS = 0.25


def compare_runs(store, run_id: str, baselines: list[str], floor: float = 0.05,
                 min_change_ms: float = MIN_CHANGE_MS) -> list[dict]:
    if not baselines:
        return []
    noise = device_noise(store, baselines)
    base = {(r["variant_id"], r["device"], r["runtime"]): r for r in flat_rows(store, baselines[0])}
    out = []
    for r in flat_rows(store, run_id):
        key = (r["variant_id"], r["device"], r["runtime"])
        b = base.get(key)
        if not b or not r["samples"] or not b["samples"]:
            continue
        change, lo, hi = median_diff_ci(r["samples"], b["samples"])
        threshold = max(floor, NOISE_FACTOR * noise.get(r["device"], PRIOR_NOISE))
        flag = "ok"
        small = abs(r["p50_ms"] - b["p50_ms"]) < min_change_ms
        if r["emulated"]:
            flag = "emulated: not judged"
        elif small:
            flag = "ok"
        elif lo > threshold:
            flag = "regression"
        elif hi < -threshold:
            flag = "improvement"
        acc_flag = None
        if r["accuracy"] is not None and b["accuracy"] is not None and r["n"]:
            se = (max(b["accuracy"] * (1 - b["accuracy"]), 1e-6) / r["n"]) ** 0.5
            if r["accuracy"] < b["accuracy"] - max(0.005, 2 * se):
                acc_flag = "accuracy regression"
        out.append({"variant": r["variant"], "variant_id": r["variant_id"], "device": r["device"], "runtime": r["runtime"],
                    "p50_ms": r["p50_ms"], "base_p50_ms": b["p50_ms"], "change": change, "ci_low": lo, "ci_high": hi,
                    "threshold": threshold, "noise": noise.get(r["device"]), "accuracy": r["accuracy"],
                    "base_accuracy": b["accuracy"],
                    "flag": acc_flag if acc_flag and flag == "ok" else flag, "baseline": baselines[0]})
    return out


def regressions(flags: list[dict]) -> list[dict]:
    return [f for f in flags if f["flag"] in ("regression", "accuracy regression")]
