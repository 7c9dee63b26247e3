"""KarrasSchedule: endpoints, g² = dσ²/dt against autograd, the inverse, training-noise laws."""

from __future__ import annotations

import math

import pytest
import torch
from fixtures import seeded
from scipy.stats import norm

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.errors import BadInput


@pytest.mark.parametrize("sigma_min", [0.01, 0.05])
def test_endpoints(sigma_min):
    sch = KarrasSchedule(sigma_min=sigma_min, sigma_max=80.0)
    # exact up to float64 rounding of the ρ-th power
    assert float(sch.sigma(0.0)) == pytest.approx(sigma_min, rel=1e-12)
    assert float(sch.sigma(1.0)) == pytest.approx(80.0, rel=1e-12)


def test_sigma_matches_formula_and_is_increasing():
    sch = KarrasSchedule(0.01, 80.0, 7.0)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    expected = (0.01 ** (1 / 7) + t * (80 ** (1 / 7) - 0.01 ** (1 / 7))) ** 7
    torch.testing.assert_close(sch.sigma(t), expected, rtol=1e-14, atol=0)
    assert bool((sch.sigma(t).diff() > 0).all())


def test_g2_matches_autograd_of_sigma_squared():
    sch = KarrasSchedule(0.05, 80.0)
    t = torch.linspace(0.0, 1.0, 57, dtype=torch.float64).requires_grad_(True)
    (dh,) = torch.autograd.grad((sch.sigma(t) ** 2).sum(), t)
    # closed form vs autograd of h = σ²: agree to float64 rounding; a missing factor 2 or ρ fails by O(1)
    torch.testing.assert_close(sch.g2(t.detach()), dh, rtol=1e-12, atol=1e-12)


def test_t_of_sigma_inverts_sigma():
    sch = KarrasSchedule(0.01, 80.0)
    t = torch.rand(100, generator=seeded(1), dtype=torch.float64)
    torch.testing.assert_close(sch.t_of_sigma(sch.sigma(t)), t, rtol=0, atol=1e-12)


def test_time_grid_descends_from_one_to_zero():
    grid = KarrasSchedule().time_grid(10)
    assert grid.shape == (11,) and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    assert bool((grid.diff() < 0).all())
    sg = KarrasSchedule(0.01, 80.0).sigma_grid(4)
    assert float(sg[0]) == pytest.approx(80.0) and float(sg[-1]) == pytest.approx(0.01)


def test_training_sigma_is_lognormal():
    n = 20000
    s = KarrasSchedule.sample_training_sigma(n, seeded(2), dtype=torch.float64)
    log_s = torch.log(s)
    # tolerance: 4 standard errors of the mean (1.2/√n) and of the std (1.2/√(2n));
    # a sampler using σ ~ N(−1.2, 1.2²) or the wrong sign would miss by > 100 standard errors
    assert abs(float(log_s.mean()) + 1.2) < 4 * 1.2 / math.sqrt(n)
    assert abs(float(log_s.std()) - 1.2) < 4 * 1.2 / math.sqrt(2 * n)


def test_truncated_training_sigma_follows_truncated_cdf():
    n, cap = 20000, 0.19
    s = KarrasSchedule.sample_training_sigma_below(n, seeded(3), cap, dtype=torch.float64)
    assert float(s.max()) <= cap
    # the fraction below σ = 0.05 must match the truncated log-normal CDF; tolerance 4 binomial SE.
    # An untruncated law (or truncation by clamping) puts a very different mass there.
    p = norm.cdf((math.log(0.05) + 1.2) / 1.2) / norm.cdf((math.log(cap) + 1.2) / 1.2)
    frac = float((s < 0.05).double().mean())
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_bad_arguments_raise_badinput():
    with pytest.raises(BadInput):
        KarrasSchedule(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(BadInput):
        KarrasSchedule(rho=0)
    with pytest.raises(BadInput):
        KarrasSchedule().time_grid(0)
