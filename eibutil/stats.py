"""The project's statistics, in one module.

Latency over raw single-inference samples (MLPerf LoadGen's rules: nearest rank):
    >>> summarize([3.0, 1.0, 2.0, 4.0])["p50_ms"]
    2.0
Accuracy: Wilson intervals, exact McNemar tests and paired differences over per-row correctness:
    >>> lo, hi = wilson(0.5, 100); round(lo, 3), round(hi, 3)
    (0.404, 0.596)
Reports: bootstrap intervals on medians and their differences, and Pareto frontiers:
    >>> pareto([(1.0, 0.8), (2.0, 0.9), (3.0, 0.85)])   # (cost, accuracy): lower cost, higher accuracy win
    [0, 1]
"""

import math

import numpy as np

# latency ------------------------------------------------------------------------------------------------------

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


# accuracy -----------------------------------------------------------------------------------------------------

def wilson(acc: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) of an accuracy measured on `n` rows."""
    if n <= 0:
        return float("nan"), float("nan")
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(pred_a: list[int], pred_b: list[int], labels: list[int]) -> dict:
    """Exact (binomial) McNemar test on the rows where exactly one of the two is right.

    Returns the discordant counts (`a_only`: rows only A gets right, `b_only`) and the two-sided
    p-value; p >= 0.05 reads as "within noise"."""
    if not (len(pred_a) == len(pred_b) == len(labels)):
        raise ValueError("paired test: both classifiers must be scored on the same rows")
    a_only = sum(1 for a, b, y in zip(pred_a, pred_b, labels) if a == y and b != y)
    b_only = sum(1 for a, b, y in zip(pred_a, pred_b, labels) if b == y and a != y)
    n, k = a_only + b_only, min(a_only, b_only)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {"a_only": a_only, "b_only": b_only, "p_value": p, "within_noise": p >= 0.05}


def paired_diff_ci(correct_a: str, correct_b: str, z: float = 1.959964) -> tuple[float, float, float]:
    """Accuracy of A minus accuracy of B on the same rows ('1'/'0' per row), with a 95% interval from the
    paired (discordant-pair) variance: (diff, low, high)."""
    if len(correct_a) != len(correct_b) or not correct_a:
        raise ValueError("paired difference: both must be scored on the same, non-empty rows")
    n = len(correct_a)
    a_only = sum(1 for a, b in zip(correct_a, correct_b) if a == "1" and b == "0")
    b_only = sum(1 for a, b in zip(correct_a, correct_b) if a == "0" and b == "1")
    diff = (a_only - b_only) / n
    se = math.sqrt(max((a_only + b_only) / n - diff * diff, 0.0) / n)
    return diff, diff - z * se, diff + z * se


def mcnemar_bits(correct_a: str, correct_b: str) -> dict:
    """`mcnemar_exact` on two '1'/'0' correctness strings of the same rows."""
    return mcnemar_exact([int(c) for c in correct_a], [int(c) for c in correct_b], [1] * len(correct_a))


# reports ------------------------------------------------------------------------------------------------------

BOOT = 2000


def median_ci(samples: list[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of `samples`."""
    x = np.asarray(samples, dtype=float)
    if len(x) < 2:
        v = float(x[0]) if len(x) else float("nan")
        return v, v
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), (BOOT, len(x)))], axis=1)
    a = (1 - level) / 2
    return float(np.quantile(meds, a)), float(np.quantile(meds, 1 - a))


def median_diff_ci(new: list[float], old: list[float], level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(relative change of the median, low, high): bootstrap interval of median(new)/median(old) - 1."""
    a, b = np.asarray(new, float), np.asarray(old, float)
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, len(a), (BOOT, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), (BOOT, len(b)))], axis=1)
    rel = ma / mb - 1
    q = (1 - level) / 2
    return float(np.median(a) / np.median(b) - 1), float(np.quantile(rel, q)), float(np.quantile(rel, 1 - q))


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (cost no higher and accuracy no lower, one strictly)."""
    keep = []
    for i, (c, a) in enumerate(points):
        if not any((c2 <= c and a2 >= a and (c2 < c or a2 > a)) for j, (c2, a2) in enumerate(points) if j != i):
            keep.append(i)
    return keep
