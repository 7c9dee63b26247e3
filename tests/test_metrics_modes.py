"""Mode coverage, mode-weight TVD, manywell pattern counts and exact second moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzpath import make_target
from boltzpath.errors import BadInput
from boltzpath.metrics.modes import (
    exact_second_moment,
    expected_distinct_patterns,
    mode_coverage,
    mode_weight_tvd,
    pattern_hit_ratio,
)
from boltzpath.targets.toy import GaussianMixture, ManyWell


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gmm40_coverage_exact_vs_one_mode():
    t = make_target("gmm40")
    x = t.exact_sample(4000, _gen(0))
    # 100 expected per mode, threshold 1 % of that = 1 sample: P(some mode empty) ≈ 40·e⁻¹⁰⁰
    assert mode_coverage(x, t) == 1.0
    one = t.means[0] + t.std * torch.randn(500, 2, generator=_gen(1), dtype=torch.float64)
    assert mode_coverage(one, t) == pytest.approx(1 / 40)
    # mode-weight TVD of a one-mode set: ½(|1 − 1/40| + 39/40) = 39/40
    assert mode_weight_tvd(one, t) == pytest.approx(39 / 40)


def test_gmm40_mode_weight_tvd_of_exact_samples_is_within_multinomial_noise():
    t = make_target("gmm40")
    n = 4000
    tvd = mode_weight_tvd(t.exact_sample(n, _gen(2)), t)
    # multinomial counts: each |p̂_k − 1/40| has mean √(2/π)·s and sd √(1 − 2/π)·s with
    # s = √(w(1 − w)/n); E[TVD] = ½·40·√(2/π)·s = 0.0394, sd(TVD) ≈ ½·√40·0.603·s = 0.0047.
    # Tolerance 4 sd. A wrong mode assignment (e.g. argmax instead of argmin of distances)
    # or wrong expected weights gives a TVD near 1.
    s = math.sqrt((1 / 40) * (39 / 40) / n)
    mean, sd = 20 * math.sqrt(2 / math.pi) * s, 0.5 * math.sqrt(40) * math.sqrt(1 - 2 / math.pi) * s
    assert abs(tvd - mean) < 4 * sd


def test_manywell_exact_samples_per_well_tvd_and_coverage():
    t = make_target("manywell32")
    n = 4000
    x = t.exact_sample(n, _gen(3))
    p = t.p_right()
    # per-well |P̂ − p| has mean √(2/π)·s, sd √(1 − 2/π)·s, s = √(p(1 − p)/n); the mean over 16
    # independent wells has sd √(1 − 2/π)·s/4. Tolerance 4 sd (≈ 0.0035). A symmetric-well
    # sampler (p = ½) would give ≈ 0.34.
    s = math.sqrt(p * (1 - p) / n)
    mean, sd = math.sqrt(2 / math.pi) * s, math.sqrt(1 - 2 / math.pi) * s / 4
    assert abs(mode_weight_tvd(x, t) - mean) < 4 * sd
    assert mode_coverage(x, t) == 1.0
    stuck = x.clone()
    stuck[:, 0::2] = stuck[:, 0::2].abs()  # every well on its right side
    assert mode_coverage(stuck, t) == pytest.approx(0.5)
    assert mode_weight_tvd(stuck, t) == pytest.approx(1 - p)


def test_expected_distinct_patterns_against_simulation():
    t = ManyWell(dim=8)  # 4 wells, 16 patterns
    n, reps = 20, 2000
    x = t.exact_sample(n * reps, _gen(4)).reshape(reps, n, 8)
    codes = (x[:, :, 0::2] > 0).long() @ torch.tensor([1, 2, 4, 8])
    counts = np.array([len(set(c.tolist())) for c in codes])
    expected = expected_distinct_patterns(4, t.p_right(), n)
    # 4 standard errors of the simulated mean; a formula without the binomial multiplicities or
    # with (1 − π)ⁿ replaced by 1 − nπ would be off by far more
    assert abs(counts.mean() - expected) < 4 * counts.std() / math.sqrt(reps)


def test_pattern_hit_ratio_exact_vs_stuck():
    t = make_target("manywell32")
    n = 2000
    x = t.exact_sample(n, _gen(5))
    e = expected_distinct_patterns(16, t.p_right(), n)
    # occupancy indicators are negatively associated, so Var(#distinct) ≤ E; tolerance 4·√E / E
    assert abs(pattern_hit_ratio(x, t) - 1.0) < 4 * math.sqrt(e) / e
    stuck = x.clone()
    stuck[:, 0::2] = stuck[:, 0::2].abs()
    assert pattern_hit_ratio(stuck, t) == pytest.approx(1 / e)
    with pytest.raises(BadInput):
        pattern_hit_ratio(x[:, :2], make_target("gmm40"))


def test_exact_second_moment_mixture_against_monte_carlo():
    means = [[1.0, 0.0], [0.0, -2.0]]
    t = GaussianMixture(means, std=1.5, weights=[0.3, 0.7])
    exact = exact_second_moment(t)
    assert exact == pytest.approx(0.3 * 1 + 0.7 * 4 + 2 * 1.5**2)  # Σ w‖μ‖² + d·std²
    x = t.exact_sample(200_000, _gen(6))
    sq = (x**2).sum(1)
    # 4 standard errors of the Monte Carlo mean (≈ 0.06); forgetting the d·std² term is off by 4.5
    assert abs(float(sq.mean()) - exact) < 4 * float(sq.std()) / math.sqrt(x.shape[0])
    g40 = make_target("gmm40")
    mu = g40.means
    assert exact_second_moment(g40) == pytest.approx(float((mu**2).sum(1).mean()) + 2 * g40.std**2)
    assert exact_second_moment(g40.at_temperature(2.0)) is None  # no closed form when tempered


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_exact_second_moment_manywell_against_monte_carlo(temperature):
    t = make_target("manywell32").at_temperature(temperature)
    exact = exact_second_moment(t)
    x = t.exact_sample(10_000, _gen(7))
    sq = (x**2).sum(1)
    # 4 standard errors (≈ 0.3); dropping the x₂ variance (16·T) or the x₁ term, or ignoring the
    # temperature of the x₂ term (off by 16 at T = 2), is far outside
    assert abs(float(sq.mean()) - exact) < 4 * float(sq.std()) / math.sqrt(x.shape[0])


def test_mode_metrics_reject_targets_without_modes_and_bad_shapes():
    with pytest.raises(BadInput):
        mode_coverage(torch.zeros(3, 8), make_target("dw4"))
    with pytest.raises(BadInput):
        mode_weight_tvd(torch.zeros(3, 3), make_target("gmm40"))
