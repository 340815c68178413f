"""Statistics for reports: bootstrap intervals on medians and their differences, and Pareto frontiers.

    >>> pareto([(1.0, 0.8), (2.0, 0.9), (3.0, 0.85)])   # (cost, accuracy): lower cost, higher accuracy win
    [0, 1]
"""

import numpy as np

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
