"""MALA: exact moments within ESS-derived tolerances, a wrong acceptance rule that fails the same
test, bit-for-bit reproducibility, evaluation counting, bad input. Also checks the ESS helper.

Tolerance convention (all statistical tests here): K_SE = 4 standard errors of the mean, the SE
coming from the multi-chain effective sample size (``fixtures.ess_standard_error``, Geyer initial
positive sequence). For a correct sampler each check fails with probability ≈ 6e-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixtures import (
    AsymmetricDoubleWell,
    CorrelatedGaussian,
    ar1_chains,
    ess_standard_error,
    seeded,
    z_scores,
)

from boltzpath import make_target
from boltzpath.errors import BadInput
from boltzpath.mcmc.base import ChainState, StepInfo, as_chain_column, metropolis, select
from boltzpath.mcmc.driver import run_kernel_sampler
from boltzpath.mcmc.mala import MALAConfig, run_mala
from boltzpath.mcmc.registry import method_config, run_method

K_SE = 4.0
CHAINS = 256


def _cfg(**kw) -> MALAConfig:
    return MALAConfig(**{"chains": CHAINS, "burn_in": 300, "thin": 2, "dtype": "float64", **kw})


def test_ess_standard_error_matches_ar1_theory():
    # AR(1) with ρ = 0.9 has τ = (1+ρ)/(1−ρ) = 19 and SE = √(τ/N). The estimator of τ has relative
    # sd ≈ √((4M+2)/N) ≈ 0.08 with window M ≈ 5τ (Sokal), so SE (∝ √τ) is within 15 % (≈ 4 sd).
    # An iid formula (τ = 1) would be a factor √19 ≈ 4.4 too small and fail.
    x = ar1_chains(0.9, steps=1000, chains=64, generator=seeded(2))
    est = ess_standard_error(x)
    exact_se = math.sqrt(19.0 / x.numel())
    assert abs(est.se[0] / exact_se - 1) < 0.15
    assert abs(est.tau[0] / 19.0 - 1) < 0.3


def test_mala_gaussian_moments():
    target = CorrelatedGaussian()
    s = run_mala(target, CHAINS * 100, seeded(0), _cfg())
    z_mean, _ = z_scores(s.x, CHAINS, target.mean())
    z_m2, _ = z_scores(s.x**2, CHAINS, target.second_moment())
    # A wrong gradient sign, a missing √2 in the noise or a missing proposal correction moves the
    # second moments by far more than 4 SE (see the wrong-rule test below: 6–31 SE).
    assert np.all(np.abs(z_mean) < K_SE), z_mean
    assert np.all(np.abs(z_m2) < K_SE), z_m2


def test_mala_double_well_moments_and_p_positive():
    target = AsymmetricDoubleWell()  # E = x⁴ − 2x² + 0.5x, P(x > 0) ≈ 0.304 by quadrature
    s = run_mala(target, CHAINS * 100, seeded(1), _cfg())
    for values, exact in [
        (s.x, target.mean()),
        (s.x**2, target.second_moment()),
        ((s.x > 0).double(), target.p_positive()),
    ]:
        z, _ = z_scores(values, CHAINS, exact)
        assert np.all(np.abs(z) < K_SE), z


def _mala_without_proposal_correction(potential, state, generator, step_size):
    """Deliberately wrong: MALA proposal accepted with min(1, p(x')/p(x)) only."""
    x, e, g = state.position, state.energy, state.grad
    eps = as_chain_column(step_size, x).expand(x.shape[0], 1)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    x_new = x - eps * g + torch.sqrt(2 * eps) * noise
    e_new, g_new = potential.energy_and_grad(x_new)
    accept_prob, accepted = metropolis(e - e_new, generator)
    return select(accepted, ChainState(x_new, e_new, g_new), state), StepInfo(accept_prob, accepted)


def test_wrong_acceptance_rule_fails_the_same_test():
    # Same target, chains, adaptation and tolerance as test_mala_gaussian_moments; dropping the
    # q(x|x')/q(x'|x) factor leaves a chain whose stationary law is not p: its second moments are
    # many SE off (measured 6–31 SE), so at least one coordinate leaves the 4 SE band.
    target = CorrelatedGaussian()
    wrong = _mala_without_proposal_correction
    s = run_kernel_sampler("wrong-mala", wrong, target, CHAINS * 100, seeded(0), _cfg())
    z_m2, _ = z_scores(s.x**2, CHAINS, target.second_moment())
    assert np.max(np.abs(z_m2)) > K_SE, z_m2


def test_mala_reproducible_bit_for_bit():
    target = make_target("gmm40")
    cfg = MALAConfig(chains=32, burn_in=20, thin=2)
    a = run_mala(target, 64, seeded(7), cfg)
    b = run_mala(target, 64, seeded(7), cfg)
    c = run_mala(target, 64, seeded(8), cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.energy, b.energy)
    assert not torch.equal(a.x, c.x)


def test_mala_counts_energy_evaluations():
    # one evaluation per chain at initialisation and one per chain per step
    target = CorrelatedGaussian()
    chains, burn_in, thin, n = 16, 10, 3, 50  # ceil(50/16) = 4 collected per chain
    s = run_mala(target, n, seeded(0), MALAConfig(chains=chains, burn_in=burn_in, thin=thin))
    assert s.info["energy_evaluations"] == chains * (1 + burn_in + 4 * thin)
    assert target.counter.count == s.info["energy_evaluations"]
    assert s.x.shape == (n, 3)


def test_mala_keeps_particles_centre_of_mass_free():
    target = make_target("dw4")
    s = run_mala(target, 32, seeded(0), MALAConfig(chains=16, burn_in=20, thin=1))
    com = target.as_particles(s.x).mean(dim=1)
    assert com.abs().max() < 1e-5


@pytest.mark.parametrize(
    "options",
    [{"step_size": 0.0}, {"chains": 0}, {"thin": 0}, {"target_accept": 1.5}, {"dtype": "float16"}],
)
def test_mala_bad_config_raises(options):
    with pytest.raises(BadInput):
        run_method("mala", CorrelatedGaussian(), 10, seeded(0), options)


def test_mala_unknown_option_and_bad_n_raise():
    with pytest.raises(BadInput):
        method_config("mala", {"stepsize": 0.1})
    with pytest.raises(BadInput):
        run_mala(CorrelatedGaussian(), 0, seeded(0), MALAConfig())
