"""Latency statistics over raw single-inference samples (MLPerf LoadGen's rules: nearest rank).

    >>> summarize([3.0, 1.0, 2.0, 4.0])["p50_ms"]
    2.0
"""

import math


def nearest_rank(sorted_ms: list[float], q: float) -> float:
    """The q-th percentile by nearest rank: the smallest sample with at least q% of samples at or below it."""
    if not sorted_ms:
        return float("nan")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_ms)))
    return sorted_ms[rank - 1]


def summarize(samples_ms: list[float]) -> dict:
    s = sorted(samples_ms)
    if not s:
        return {"count": 0}
    mean = sum(s) / len(s)
    out = {"count": len(s), "min_ms": s[0], "max_ms": s[-1], "mean_ms": mean}
    for q in (50, 90, 95, 97, 99):
        out[f"p{q}_ms"] = nearest_rank(s, q)
    var = sum((x - mean) ** 2 for x in s) / max(1, len(s) - 1)
    out["cv"] = math.sqrt(var) / mean if mean else None
    return out
