"""Accuracy with its interval, and paired tests between two classifiers scored on the same rows.

    >>> lo, hi = wilson(0.5, 100); round(lo, 3), round(hi, 3)
    (0.404, 0.596)
    >>> mcnemar_exact([1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1])["p_value"]
    1.0
"""

import math


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
