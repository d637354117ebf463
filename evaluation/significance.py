"""Paired significance tests between two runs and the spread of reruns (robustness).

Both tests compare per-query values of one measure over the same queries (every qrels query, trec_eval
``-c``), run B against run A:

- paired t-test: ``scipy.stats.ttest_rel(b, a)``, two-sided; p = 1 when every difference is 0;
- paired randomization (sign-flip permutation) test: under H0 each query's difference d_i is as likely to be
  -d_i, so p = (1 + #{s : |mean(s * d)| >= |mean(d)|}) / (1 + S) over S random sign vectors s (two-sided,
  the +1 keeps p > 0 as for an exact test).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats


def paired_tests(
    a: Sequence[float], b: Sequence[float], permutations: int = 10000, seed: int = 0
) -> dict[str, float]:
    """Mean of A and B, their difference, the t statistic and both p-values (module docstring)."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"paired tests need two equal-length vectors, got {first.shape} and {second.shape}")
    diff = second - first
    if len(diff) < 2 or not np.any(diff):
        t_stat, p_t = 0.0, 1.0
    else:
        result = stats.ttest_rel(second, first)
        t_stat, p_t = float(result.statistic), float(result.pvalue)
        if not np.isfinite(p_t):  # all differences equal and nonzero: zero variance
            p_t = 0.0
    return {
        "queries": len(diff),
        "mean_a": float(first.mean()) if len(diff) else 0.0,
        "mean_b": float(second.mean()) if len(diff) else 0.0,
        "delta": float(diff.mean()) if len(diff) else 0.0,
        "t": t_stat,
        "p_ttest": p_t,
        "p_randomization": randomization_p(diff, permutations, seed),
    }


def randomization_p(diff: np.ndarray, permutations: int = 10000, seed: int = 0) -> float:
    """Two-sided paired sign-flip randomization p-value of the mean difference."""
    if len(diff) == 0 or not np.any(diff):
        return 1.0
    rng = np.random.default_rng(seed)
    observed = abs(diff.mean())
    hits = 0
    for start in range(0, permutations, 1000):  # chunks bound memory for many queries
        signs = rng.choice([-1.0, 1.0], size=(min(1000, permutations - start), len(diff)))
        hits += int((np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum())
    return (hits + 1) / (permutations + 1)


def spread(values: Mapping[str, float]) -> dict[str, float]:
    """Mean, population std, min, max and range of one measure over reruns named by their initial order."""
    array = np.asarray(list(values.values()), dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "min": float(array.min()),
        "max": float(array.max()),
        "range": float(array.max() - array.min()),
    }
