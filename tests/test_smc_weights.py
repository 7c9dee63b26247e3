"""Importance-weight arithmetic and resampling schemes (boltzpath.smc.weights / resample)."""

import math

import pytest
import torch

from boltzpath.smc.resample import multinomial, systematic
from boltzpath.smc.weights import (
    effective_sample_size,
    log_mean_exp,
    log_sum_exp,
    log_weight_spread,
    normalised_weights,
    weighted_mean,
)

D = torch.float64  # inputs in float64 so the exact values are representable


def test_log_sum_exp_is_float64_and_stable():
    # exact: log Σ e^{1000 + log i} for i = 1..4 = 1000 + log 10; naive float32 overflows
    lw = torch.tensor([1000.0, 1000.0 + math.log(2), 1000.0 + math.log(3), 1000.0 + math.log(4)], dtype=D)
    assert log_sum_exp(lw) == pytest.approx(1000.0 + math.log(10.0), abs=1e-9)
    assert log_mean_exp(lw) == pytest.approx(1000.0 + math.log(10.0 / 4.0), abs=1e-9)
    assert normalised_weights(lw).dtype == torch.float64


def test_ess_extremes_and_nonfinite_weights():
    n = 50
    assert effective_sample_size(torch.zeros(n)) == pytest.approx(n)
    one_hot = torch.full((n,), -math.inf)
    one_hot[3] = 0.0
    assert effective_sample_size(one_hot) == pytest.approx(1.0)
    # NaN counts as zero weight: two equal finite weights → ESS 2
    lw = torch.tensor([0.0, float("nan"), 0.0, -math.inf])
    assert effective_sample_size(lw) == pytest.approx(2.0)
    assert log_weight_spread(torch.tensor([0.0, -3.0, 2.0])) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        normalised_weights(torch.full((3,), -math.inf))


def test_weighted_mean_matches_exact_ratio():
    v = torch.tensor([1.0, 2.0, 4.0])
    lw = torch.log(torch.tensor([1.0, 1.0, 2.0], dtype=D))
    # exact: (1 + 2 + 8) / 4
    assert float(weighted_mean(v, lw)) == pytest.approx(11.0 / 4.0, abs=1e-12)


def test_systematic_copies_are_floor_or_ceil_of_n_w():
    # systematic resampling gives each particle ⌊nW_i⌋ or ⌈nW_i⌉ copies, for any u — a scheme that
    # ignores the weights or uses multinomial draws would violate this bound for some seed
    g = torch.Generator().manual_seed(1)
    w = torch.rand(40, generator=g, dtype=torch.float64) ** 3
    lw = torch.log(w)
    n = 40
    expected = n * w / w.sum()
    for seed in range(20):
        idx = systematic(torch.Generator().manual_seed(seed), lw, n)
        counts = torch.bincount(idx, minlength=40).to(torch.float64)
        assert counts.sum() == n
        assert torch.all(counts >= torch.floor(expected) - 1e-9)
        assert torch.all(counts <= torch.ceil(expected) + 1e-9)


def test_multinomial_is_unbiased():
    # mean copies over R repeats = nW_i; tolerance 5 standard errors of a Binomial(n, W_i) mean
    # over R repeats (√(n W (1−W) / R)); a scheme drawing uniform indices is off by ≫ 5 SE
    w = torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64)
    n, reps = 100, 400
    g = torch.Generator().manual_seed(2)
    counts = torch.zeros(3, dtype=torch.float64)
    for _ in range(reps):
        counts += torch.bincount(multinomial(g, torch.log(w), n), minlength=3).to(torch.float64)
    mean = counts / reps
    se = torch.sqrt(n * w * (1 - w) / reps)
    assert torch.all((mean - n * w).abs() < 5 * se)
