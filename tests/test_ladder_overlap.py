"""``ladder_overlap``: how well one rung's samples cover the next temperature, from their own energies.

Exact answer: a d-dimensional harmonic well, E = ½|x|², sampled at T_from has E/kT_from ~ Gamma(d/2, 1).
Its energy-only weights to T_to are w = exp(−a·u), a = T_from/T_to − 1, so E[w] = (1 + a)^(−k) and
E[w²] = (1 + 2a)^(−k) with k = d/2, and the ESS fraction (E w)²/E w² = (1 + 2a)^k / (1 + a)^(2k).
The Gamma distribution is skewed, so a sign error in a (weights toward a hotter, not a colder, state)
gives a different answer, which a Gaussian energy would not show.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzpath.methods.pita import ladder_overlap
from boltzpath.metrics.convergence import smc_warning

K = 20  # d = 40 harmonic coordinates
N = 400_000


def exact_ess(a: float) -> float:
    return math.exp(K * (math.log1p(2 * a) - 2 * math.log1p(a)))


def harmonic_energies(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).gamma(float(K), 1.0, N))


def test_the_ess_of_one_rung_matches_the_harmonic_well():
    u = harmonic_energies()
    t_from = 3.0
    for t_to in (2.6, 2.4):
        a = t_from / t_to - 1
        got = ladder_overlap(u, t_from, t_to, ess_goal=0.0)["ess_fraction"]
        # relative SD of the estimator ≈ sqrt((E w⁴/(E w²)² − 1)/N) ≤ 0.02 for these a (ESS ≥ 0.1):
        # 5 % is > 2.5 SD
        assert got == pytest.approx(exact_ess(a), rel=0.05), t_to
        # weights toward a hotter state (the sign of a flipped) give another value, well outside 5 %
        flipped = math.exp(K * (math.log1p(-2 * a) - 2 * math.log1p(-a)))
        assert abs(flipped - exact_ess(a)) > 0.25 * exact_ess(a)


def test_it_suggests_the_fewest_temperatures_equally_spaced_in_inverse_temperature():
    u = harmonic_energies(1)
    t_from, goal = 3.0, 0.2
    # a rung whose overlap is fine suggests nothing
    assert ladder_overlap(u, t_from, 2.8, goal)["insert"] == []
    for t_to in (2.0, 1.6, 1.3):  # one, two and three insertions
        b0, b1 = 1 / t_from, 1 / t_to
        a_full = t_from / t_to - 1
        # exact smallest m: the first of m + 1 equal steps in 1/T has a = λ·a_full, λ = 1/(m + 1)
        m = next(m for m in range(1, 9) if exact_ess(a_full / (m + 1)) >= goal)
        # keep away from the boundary so that the estimator's noise cannot move the answer
        assert exact_ess(a_full / (m + 1)) > 1.1 * goal and exact_ess(a_full / m) < 0.9 * goal
        out = ladder_overlap(u, t_from, t_to, goal)
        assert out["ess_fraction"] < goal
        assert out["insert"] == pytest.approx([1 / (b0 + j * (b1 - b0) / (m + 1)) for j in range(1, m + 1)])
        assert all(t_to < t < t_from for t in out["insert"])


def test_the_collapse_warning_names_the_suggested_temperatures():
    stages = [{"stage": 0, "temperature": 3.0, "final_ess_fraction": None,
               "next_rung_overlap": {"ess_fraction": 0.014, "insert": [2.4]}},
              {"stage": 1, "temperature": 2.0, "final_ess_fraction": 0.018}]
    w = smc_warning({"stages": stages})
    assert w is not None and "collapsed" in w and "T = 2.4" in w
    # without the record the warning is as before
    w = smc_warning({"stages": [{"stage": 0, "temperature": 3.0}, stages[1]]})
    assert "collapsed" in w and "suggest" not in w
