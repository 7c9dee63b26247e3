"""Distribution metrics against scipy, POT, brute force and Gaussian closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import ot
import pytest
import scipy.stats
import torch

from boltzpath.errors import BadInput
from boltzpath.metrics.distributions import (
    coordinate_w2,
    energy_w,
    high_energy_fraction,
    mmd,
    relative_error_second_moment,
    tvd_hist,
    wasserstein_1d,
)


def test_energy_w1_matches_scipy_for_unequal_sizes():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 137)
    b = rng.gamma(2.0, 1.5, 251)
    # exact to rounding: both are the same integral of |F - G|; a wrong merge of the quantile
    # breakpoints of unequal-size sets (or forgetting to sort) gives a different number
    assert energy_w(a, b, p=1) == pytest.approx(scipy.stats.wasserstein_distance(a, b), rel=1e-10)
    assert energy_w(torch.from_numpy(a), b, p=1) == pytest.approx(energy_w(a, b, p=1), rel=1e-12)


def test_w2_unequal_sizes_matches_pot_linear_program():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=7), rng.normal(2.0, 3.0, size=11)
    cost = (a[:, None] - b[None, :]) ** 2
    lp = ot.emd2(np.full(7, 1 / 7), np.full(11, 1 / 11), cost)
    # the 1-D quantile formula must equal the exact LP optimum; W2 is its square root
    assert wasserstein_1d(a, b, p=2) == pytest.approx(math.sqrt(lp), rel=1e-9)
    assert energy_w(a, b, p=2) != pytest.approx(lp, rel=1e-3)  # not the squared convention


def test_energy_w2_two_gaussians_closed_form():
    n = 20_000
    g = torch.Generator().manual_seed(2)
    a = torch.randn(n, generator=g, dtype=torch.float64)  # N(0, 1)
    b = 1.0 + 2.0 * torch.randn(n, generator=g, dtype=torch.float64)  # N(1, 2²)
    exact = math.sqrt(1.0**2 + (2.0 - 1.0) ** 2)  # W2² = (μ1 − μ2)² + (σ1 − σ2)²
    # tolerance: 5 standard errors of W2 by the delta method, Var Δμ̂ = (1 + 4)/n,
    # Var Δσ̂ = (1 + 4)/(2n), ∂W2/∂Δμ = ∂W2/∂Δσ = 1/√2  →  SE = √(3.75/n) = 0.0137.
    # Wrong implementations miss it: the squared value (2.0), pairing unsorted samples
    # (√6 = 2.45), or W1 (E|1 + Z| = 1.167).
    se = math.sqrt(3.75 / n)
    assert abs(energy_w(a, b, p=2) - exact) < 5 * se


def test_high_energy_fraction_counts_exploded_and_non_finite():
    e = torch.tensor([1.0, 999.0, 1000.5, float("inf"), float("nan"), -5.0, 2e4, 0.0])
    assert high_energy_fraction(e) == pytest.approx(4 / 8)
    with pytest.raises(BadInput):
        high_energy_fraction(np.array([]))


def test_coordinate_w2_matches_brute_force_assignment():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, 2.0, size=(6, 3))
    # with equal sizes and uniform weights OT is an assignment problem: check all 720 matchings
    best = min(np.mean(np.sum((x - y[list(p)]) ** 2, axis=1)) for p in itertools.permutations(range(6)))
    assert coordinate_w2(x, y) == pytest.approx(math.sqrt(best), rel=1e-9)
    # a Euclidean (not squared) cost or a missing sqrt would give a different optimum/value
    best_w1 = min(np.mean(np.linalg.norm(x - y[list(p)], axis=1)) for p in itertools.permutations(range(6)))
    assert abs(coordinate_w2(x, y) - best_w1) > 1e-3


def test_coordinate_w2_of_an_affine_push_forward_is_exact():
    """Brenier: T(x) = A x + b with A symmetric positive definite is the gradient of a convex
    function, hence cyclically monotone and optimal for the empirical measures too, so
    W2(x̂, T#x̂) = √(mean ‖x − T x‖²) exactly; as n → ∞ it tends to the Gaussian closed form."""
    n = 300
    g = torch.Generator().manual_seed(4)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)  # N(0, I)
    a_mat = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    shift = torch.tensor([3.0, 0.0], dtype=torch.float64)
    y = x @ a_mat.T + shift
    y = y[torch.randperm(n, generator=g)]  # the order must not matter
    exact_empirical = math.sqrt(float(((x @ a_mat.T + shift - x) ** 2).sum(1).mean()))
    # exact to solver precision; a missing sqrt, a Euclidean cost or a wrong plan all miss it
    assert coordinate_w2(x, y) == pytest.approx(exact_empirical, rel=1e-8)
    # Gaussian closed form W2² = ‖b‖² + ‖A − I‖_F² (N(0, I) → N(b, A²)); the empirical value is
    # a mean of n i.i.d. terms ‖(A − I)x + b‖², so it agrees within 5 standard errors of that mean
    terms = ((x @ (a_mat - torch.eye(2, dtype=torch.float64)).T + shift) ** 2).sum(1)
    closed = float(shift @ shift + ((a_mat - torch.eye(2, dtype=torch.float64)) ** 2).sum())
    se = float(terms.std()) / math.sqrt(n)
    assert abs(coordinate_w2(x, y) ** 2 - closed) < 5 * se


def _naive_mmd2(x, y, hs):
    def k(a, b):
        return sum(math.exp(-np.sum((a - b) ** 2) / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_matches_naive_unbiased_formula():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(5, 2)), rng.normal(0.5, 1.0, size=(7, 2))
    assert mmd(x, y, bandwidths=[0.5, 2.0]) == pytest.approx(_naive_mmd2(x, y, [0.5, 2.0]), rel=1e-10)
    with pytest.raises(BadInput):
        mmd(x, y, bandwidths=[0.0])


def test_mmd_near_zero_for_same_distribution_and_large_for_shift():
    rng = np.random.default_rng(6)
    n = 300
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    shifted = rng.normal(1.0, 1.0, size=(n, 2))
    # null spread from 20 random splits of the pooled same-distribution set (permutation test)
    pooled = np.concatenate([x, y])
    null = [mmd(*np.split(pooled[rng.permutation(2 * n)], 2), bandwidths=[1.0]) for _ in range(20)]
    sd = float(np.std(null))
    # 4 null standard deviations: the unbiased estimator has mean 0 when x ~ y; a biased (V-)
    # statistic would sit at ≈ 2/n·k(0) = 0.0067 ≫ 4 sd, and a shift of 1 gives ≈ 0.2.
    assert abs(mmd(x, y, bandwidths=[1.0])) < 4 * sd
    assert mmd(x, shifted, bandwidths=[1.0]) > 25 * sd


def test_relative_error_second_moment():
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # E‖x‖² = 5
    assert relative_error_second_moment(x, 4.0) == pytest.approx(0.25)
    y = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])  # E‖y‖² = 16/3
    assert relative_error_second_moment(x, y) == pytest.approx(abs(5 - 16 / 3) / (16 / 3))
    with pytest.raises(BadInput):
        relative_error_second_moment(x, 0.0)


def test_tvd_hist_identical_disjoint_and_overflow():
    b = np.linspace(0.0, 1.0, 200, endpoint=False)
    assert tvd_hist(b, b) == pytest.approx(0.0)
    assert tvd_hist(b + 5.0, b) == pytest.approx(1.0)  # everything outside the reference range
    # half the mass in range (same histogram), half in the overflow bin: TVD = ½(½ + ½) = ½
    assert tvd_hist(np.concatenate([b, b + 5.0]), b) == pytest.approx(0.5)


def test_bad_inputs():
    with pytest.raises(BadInput):
        coordinate_w2(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(BadInput):
        energy_w([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(BadInput):
        energy_w([1.0], [2.0], p=3)
