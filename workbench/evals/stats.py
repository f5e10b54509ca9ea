"""The small statistics the verdict needs, exact and dependency-free (no scipy): a Wilson score interval for a
rate, and the one-sided exact binomial (sign / McNemar) test on paired changes.

Why these two: eval sets are small (a few dozen to a few hundred prompts) and rates sit near 0 or 1, where the
normal approximation gives intervals outside [0, 1] and a p-value of nonsense; Wilson's interval and the exact
binomial tail stay right at n = 3.
"""

from __future__ import annotations

import math

#: z for a two-sided 95% interval (the normal quantile 0.975).
Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a rate of `k` successes in `n` trials, or None when n == 0.

    >>> wilson(0, 10)
    (0.0, 0.2775)
    """
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k={k} is not within 0..n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def binom_tail_ge(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly (n is a count of discordant prompts: small)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def mcnemar_one_sided(lost: int, gained: int) -> float:
    """The exact one-sided McNemar p-value for "the checkpoint answers fewer prompts than the base".

    Only the discordant prompts carry evidence: under "no change" a prompt that changed is as likely to have been
    lost as gained, so `lost` of the `lost + gained` changes is Binomial(lost + gained, 1/2). 1.0 when nothing
    changed. 3 lost and 0 gained gives 0.125 (could be chance); 9 lost and 0 gained gives 0.002.
    """
    return binom_tail_ge(lost, lost + gained, 0.5)
