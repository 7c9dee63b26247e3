"""Unadjusted Langevin (BAOAB, ULA): moments within ESS tolerances *plus* the discretisation bias,
and a demonstration that the bias grows with the step; reproducibility, counting, bad input.

Tolerance: K_SE = 4 standard errors from the multi-chain ESS (``fixtures.ess_standard_error``),
plus, where the scheme is biased, the bias predicted for that step (stated per test).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import AsymmetricDoubleWell, CorrelatedGaussian, seeded, z_scores

from boltzpath import make_target
from boltzpath.errors import BadInput
from boltzpath.mcmc.langevin import LangevinConfig, run_langevin
from boltzpath.mcmc.registry import run_method

K_SE = 4.0
CHAINS = 256


def _run(target, scheme, step, seed=0, per_chain=100, relax_time=5.0, thin_time=0.5):
    """Burn-in ≈ ``relax_time`` time units, then thin every ``thin_time`` (in units of time)."""
    cfg = LangevinConfig(
        chains=CHAINS,
        burn_in=int(relax_time / step),
        thin=max(1, int(thin_time / step)),
        step_size=step,
        scheme=scheme,
        dtype="float64",
    )
    return run_langevin(target, CHAINS * per_chain, seeded(seed), cfg)


def _ula_gaussian_second_moment(target: CorrelatedGaussian, h: float) -> np.ndarray:
    """ULA on N(μ, Σ) is stationary at N(μ, C_h), C_h = (A − hA²/2)⁻¹ with A = Σ⁻¹ (exact)."""
    a = target.precision_ref
    c = torch.linalg.inv(a - 0.5 * h * a @ a)
    return (torch.diagonal(c) + target.mu**2).numpy()


def test_ula_gaussian_follows_its_discretised_law_and_bias_grows_with_step():
    target = CorrelatedGaussian()
    exact = target.second_moment().numpy()
    big = _run(target, "ula", 0.15, relax_time=8.0)
    z_pred, est = z_scores(big.x**2, CHAINS, _ula_gaussian_second_moment(target, 0.15))
    # At h = 0.15 (stability limit 2/λ_max ≈ 0.29) the stiff direction's variance is doubled, a
    # predicted bias » 4 SE: the samples
    # agree with the *discretised* law within 4 SE and miss the exact law by more than 4 SE.
    assert np.all(np.abs(z_pred) < K_SE), z_pred
    assert np.max(np.abs(est.mean - exact) / est.se) > K_SE
    # At h = 0.02 the bias is ~8 times smaller (O(h)); tolerance = 4 SE + |predicted bias at h|.
    small = _run(target, "ula", 0.02, relax_time=8.0, per_chain=50, thin_time=0.3)
    bias = np.abs(_ula_gaussian_second_moment(target, 0.02) - exact)
    _, est_small = z_scores(small.x**2, CHAINS, exact)
    assert np.all(np.abs(est_small.mean - exact) < K_SE * est_small.se + bias), (est_small.mean, exact)


def test_baoab_is_exact_in_configuration_for_a_gaussian():
    # BAOAB samples x exactly for harmonic potentials at any stable step (Leimkuhler–Matthews),
    # so no bias allowance: 4 SE at h = 0.3 (near half the stability limit 2/√λ_max ≈ 0.76).
    # Swapping the A and O half-steps (ABOBA) or dropping the √(1−c²) would fail this.
    target = CorrelatedGaussian()
    s = _run(target, "baoab", 0.3)
    z_mean, _ = z_scores(s.x, CHAINS, target.mean())
    z_m2, _ = z_scores(s.x**2, CHAINS, target.second_moment())
    assert np.all(np.abs(z_mean) < K_SE), z_mean
    assert np.all(np.abs(z_m2) < K_SE), z_m2
    assert abs(s.info["final_mean_v2"] - 1.0) < 0.2  # kT = 1 velocities (3·256 values, sd ≈ 0.05)


def test_baoab_double_well_within_bias_estimate_and_ula_bias_is_visible():
    target = AsymmetricDoubleWell()
    stats = [
        ("mean", lambda x: x, target.mean()),
        ("second moment", lambda x: x**2, target.second_moment()),
        ("P(x>0)", lambda x: (x > 0).double(), target.p_positive()),
    ]
    # BAOAB's configurational bias is O(h²): the bias estimate at h = 0.05 is the error measured
    # at h = 0.2 scaled by (0.05/0.2)² = 1/16. Tolerance = 4 SE + that estimate.
    coarse = _run(target, "baoab", 0.2, seed=1)
    fine = _run(target, "baoab", 0.05, seed=2, per_chain=60)
    for name, f, exact in stats:
        _, est_c = z_scores(f(coarse.x), CHAINS, exact)
        _, est_f = z_scores(f(fine.x), CHAINS, exact)
        bias_estimate = abs(est_c.mean[0] - exact) / 16
        assert abs(est_f.mean[0] - exact) < K_SE * est_f.se[0] + bias_estimate, name
    # ULA is first order: at the same h = 0.05 its bias in E[x²] is far beyond 4 SE (measured ≈ 8 SE),
    # which a sampler with a correct invariant law (or a broken test) would not show.
    ula = _run(target, "ula", 0.05, seed=3, per_chain=60)
    z, _ = z_scores(ula.x**2, CHAINS, target.second_moment())
    assert abs(z[0]) > K_SE, z


def test_langevin_reproducible_and_counted():
    target = make_target("dw4")
    cfg = LangevinConfig(chains=8, burn_in=5, thin=2, step_size=1e-3)
    a = run_langevin(target, 24, seeded(4), cfg)
    b = run_langevin(target, 24, seeded(4), cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.energy, b.energy)
    # one evaluation per chain at start and per step: ceil(24/8) = 3 samples per chain
    assert a.info["energy_evaluations"] == 8 * (1 + 5 + 3 * 2)
    assert target.as_particles(a.x).mean(dim=1).abs().max() < 1e-5  # CoM-free noise


@pytest.mark.parametrize(
    "options",
    [{"scheme": "euler"}, {"friction": 0.0}, {"adapt": True}, {"step_size": 0.0}, {"burn_in": -1}],
)
def test_langevin_bad_config_raises(options):
    with pytest.raises(BadInput):
        run_method("langevin", CorrelatedGaussian(), 10, seeded(0), options)
