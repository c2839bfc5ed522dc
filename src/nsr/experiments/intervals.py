"""Uncertainty of every reported number: 95% intervals and how consistent a published number is with ours.

Every experiment reports its shares and means with a 95% interval in ``results.csv`` (columns
``NAME_ci_low``, ``NAME_ci_high``) and says in ``results.md``, for each published number, how probable
it is under our measurement:

- a **share** (k of n trials): the Wilson score interval; a published count K of N is compared by the
  exact two-sided binomial test under our share (the probability of a count at most as probable as K
  in N trials; our share taken as (k + 1/2) / (n + 1), so that 0 of n is not a share of exactly 0);
- a **mean** over trials: the Student t interval; a published mean of N trials is compared with a
  normal test of the difference, using our spread for both (the publication gives no spread).

>>> lo, hi = wilson(38, 50)
>>> round(lo, 3), round(hi, 3)
(0.626, 0.857)
>>> round(binomial_p_value(38, 50, 0.76), 2)
1.0
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` of a share of ``k`` successes in ``n`` trials."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k <= 0 else max(0.0, centre - half)  # exactly 0 and 1 at the ends (no rounding residue)
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return lo, hi


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (exact up to 5, a series in
    1/df beyond, within 2e-3)."""
    if df <= 0:
        return math.nan
    exact = {1: 12.706204736174698, 2: 4.302652729749464, 3: 3.182446305284263, 4: 2.7764451051977987,
             5: 2.570581835636314}
    if df in exact:
        return exact[df]
    z = Z95
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def mean_interval(values: Iterable[float]) -> tuple[float, float, float, float]:
    """``(mean, low, high, sd)``: the mean of ``values`` with its 95% t interval, and their standard
    deviation (non-finite values are left out)."""
    v = [float(x) for x in values if math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    m = sum(v) / n
    if n == 1:
        return m, math.nan, math.nan, math.nan
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return m, m - half, m + half, sd


def share_ci(row: dict, name: str, n: int, share: Optional[float] = None) -> dict:
    """Add ``NAME_ci_low`` and ``NAME_ci_high`` (Wilson, ``n`` trials) for the share ``row[name]``
    (or ``share``) to ``row``; returns ``row``."""
    p = row[name] if share is None else share
    lo, hi = wilson(round(p * n), n)
    row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
    return row


def shares_ci(row: dict, names: Iterable[str], n: int) -> dict:
    """:func:`share_ci` for every share ``names`` of ``row``."""
    for name in names:
        share_ci(row, name, n)
    return row


def mean_ci(row: dict, name: str, values) -> dict:
    """Set ``row[name]`` to the mean of ``values`` and add its t interval ``NAME_ci_low``, ``NAME_ci_high``."""
    m, lo, hi, _ = mean_interval(values)
    row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = m, lo, hi
    return row


def binomial_pmf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 1.0 if k == 0 else 0.0
    if p >= 1:
        return 1.0 if k == n else 0.0
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_p_value(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial test: the probability, in ``n`` trials at share ``p``, of a count at
    most as probable as ``k`` (1 when ``k`` is the most probable count)."""
    pk = binomial_pmf(k, n, p)
    return min(1.0, sum(q for q in (binomial_pmf(j, n, p) for j in range(n + 1)) if q <= pk * (1 + 1e-7)))


def normal_p_value(z: float) -> float:
    """Two-sided tail probability of a standard normal beyond ``|z|``."""
    return math.erfc(abs(z) / math.sqrt(2))


def in_words(p: float) -> str:
    """A p-value as a verdict a reader understands."""
    if not math.isfinite(p):
        return "cannot be judged"
    if p >= 0.05:
        return "consistent with ours"
    if p >= 0.001:
        return "unlikely under ours (a real difference or a rare draw)"
    return "not consistent with ours (a real difference)"


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def share_verdict(label: str, ours: float, n_ours: int, count: int, n_pub: int) -> str:
    """One sentence on a published count ``count`` of ``n_pub`` against our share ``ours`` of ``n_ours``."""
    k = round(ours * n_ours)
    lo, hi = wilson(k, n_ours)
    p = binomial_p_value(int(count), int(n_pub), (k + 0.5) / (n_ours + 1))  # 0 of n is not a share of exactly 0
    return (f"{label}: published {count} of {n_pub} ({count / n_pub:.2f}); ours {ours:.3f} [{lo:.3f}, {hi:.3f}] "
            f"of {n_ours}. If ours is the true share, {n_pub} trials give a count as rare as {count} or rarer "
            f"(expected {ours * n_pub:.1f}) with probability {_fmt_p(p)}: {in_words(p)}.")


def mean_verdict(label: str, values, published: float, n_pub: int, unit: str = "") -> str:
    """One sentence on a published mean of ``n_pub`` trials against our trials ``values``."""
    m, lo, hi, sd = mean_interval(values)
    n = sum(1 for x in values if math.isfinite(float(x)))
    if not (n > 1 and math.isfinite(sd)):
        return f"{label}: published {published:g}; ours {m:.3g} (too few trials to judge)."
    se = sd * math.sqrt(1 / n_pub + 1 / n)
    if se == 0:
        p = 1.0 if abs(published - m) < 1e-9 else 0.0
    else:
        p = normal_p_value((published - m) / se)
    return (f"{label}: published {published:g}{unit} (mean of {n_pub}); ours {m:.3g} [{lo:.3g}, {hi:.3g}] of {n}. "
            f"With our spread (sd {sd:.2g}), a published mean this far from ours happens with probability "
            f"{_fmt_p(p)}: {in_words(p)}.")


def percentile(values, x: float) -> float:
    """The percentile (0-100) at which ``x`` falls among ``values``: the share below it plus half the
    share equal to it (mid-rank)."""
    v = [float(a) for a in values]
    if not v:
        return math.nan
    below = sum(1 for a in v if a < x)
    equal = sum(1 for a in v if a == x)
    return 100.0 * (below + 0.5 * equal) / len(v)
