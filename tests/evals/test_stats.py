"""The verdict's statistics against values worked out by hand (no scipy): the Wilson interval and the exact
one-sided binomial (McNemar) test on discordant prompts."""

from __future__ import annotations

import math

import pytest

from workbench.evals.stats import binom_tail_ge, mcnemar_one_sided, wilson


@pytest.mark.parametrize(("k", "n", "expected"), [
    (0, 10, (0.0, 0.2775)),      # no successes: the interval is not [0, 0] (the normal one would be)
    (5, 10, (0.2366, 0.7634)),   # symmetric around one half
    (10, 10, (0.7225, 1.0)),
    (160, 170, (0.8951, 0.9677)),  # the tiny world's iter_80: 160 of 170
    (1, 1, (0.2065, 1.0)),
])
def test_wilson_interval_matches_known_values(k, n, expected):
    assert wilson(k, n) == pytest.approx(expected, abs=1e-4)


def test_wilson_interval_is_none_without_trials_and_refuses_impossible_counts():
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(11, 10)


@pytest.mark.parametrize(("k", "n", "p", "expected"), [
    (9, 9, 0.5, 1 / 512),                    # 0.5^9
    (3, 3, 0.5, 0.125),
    (5, 6, 0.5, 7 / 64),                     # C(6,5)+C(6,6) = 7 of 64
    (0, 4, 0.5, 1.0),
    (5, 4, 0.5, 0.0),
    (2, 5, 0.2, 1 - 0.8**5 - 5 * 0.2 * 0.8**4),
])
def test_binomial_upper_tail_is_exact(k, n, p, expected):
    assert math.isclose(binom_tail_ge(k, n, p), expected, rel_tol=1e-12)


def test_mcnemar_counts_only_the_prompts_that_changed():
    # 3 lost and none gained could be chance; 9 lost and none gained is not; a loss balanced by gains is nothing
    assert mcnemar_one_sided(3, 0) == 0.125
    assert mcnemar_one_sided(9, 0) == pytest.approx(0.001953125)
    assert mcnemar_one_sided(5, 5) > 0.5
    assert mcnemar_one_sided(0, 0) == 1.0
    assert mcnemar_one_sided(4, 0) > 0.05 > mcnemar_one_sided(5, 0)  # the smallest significant loss at alpha 0.05
