"""Erlang C for the M/M/c queue, and the batch-means 95 % interval.

Copied (not imported) from the peer baselines, ``/work/shared/bench/peers/erlang.py``, so that this
folder runs on its own::

    a   = lambda / mu            offered load (Erlangs)
    rho = a / c                  server utilisation (< 1)
    C(c, a) = (a^c / c!) / (1 - rho)
              -----------------------------------------------
              sum_{k=0}^{c-1} a^k / k!  +  (a^c / c!) / (1 - rho)
    Wq  = C(c, a) / (c * mu - lambda)      mean wait in queue

``python bench/erlang.py`` prints the figures of the benchmark model (c = 4, lambda = 3.6, mu = 1).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence

#: Two-sided 95 % Student t quantiles by degrees of freedom (1.96 beyond the table).
T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    24: 2.064,
    29: 2.045,
    39: 2.023,
    59: 2.001,
}


def t975(dof: int) -> float:
    if dof in T975:
        return T975[dof]
    below = [d for d in T975 if d <= dof]
    return T975[max(below)] if dof < 60 and below else 1.96


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival has to wait (all ``c`` servers busy) at offered load ``a``."""
    rho = a / c
    if not 0 <= rho < 1:
        raise ValueError(f"unstable queue: rho = {rho!r}")
    top = a**c / math.factorial(c) / (1 - rho)
    bottom = sum(a**k / math.factorial(k) for k in range(c)) + top
    return top / bottom


def mmc_wq(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of M/M/c."""
    return erlang_c(c, lam / mu) / (c * mu - lam)


def batch_means_ci95(
    values: Sequence[float], warmup_frac: float = 0.1, batches: int = 20
) -> tuple[float, float]:
    """Mean and 95 % half-width by batch means (t with 19 d.o.f. for 20 batches), after dropping
    the first ``warmup_frac`` of the values. Waiting times in a busy queue are strongly
    correlated, so the naive standard error would be far too small. (Same as the peers' helper.)"""
    vals = values[int(len(values) * warmup_frac) :]
    size = len(vals) // batches
    means = [statistics.fmean(vals[i * size : (i + 1) * size]) for i in range(batches)]
    t = {20: 2.093, 10: 2.262, 5: 2.776}.get(batches, 2.0)
    return statistics.fmean(means), t * statistics.stdev(means) / batches**0.5


def mean_ci95(means: Sequence[float]) -> tuple[float, float]:
    """Mean of independent estimates (one per seed) and its 95 % half-width (t, k-1 d.o.f.)."""
    if len(means) < 2:
        return (means[0] if means else math.nan), math.nan
    k = len(means)
    return statistics.fmean(means), t975(k - 1) * statistics.stdev(means) / math.sqrt(k)


if __name__ == "__main__":
    c, mu = 4, 1.0
    lam = 0.9 * c * mu
    print(
        json.dumps(
            {
                "c": c,
                "lambda": lam,
                "mu": mu,
                "erlang_c": erlang_c(c, lam / mu),
                "wq": mmc_wq(lam, mu, c),
                "w": mmc_wq(lam, mu, c) + 1 / mu,
            }
        )
    )
