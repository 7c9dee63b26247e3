"""HMC: exact moments within ESS-derived tolerances, a wrong Hamiltonian that fails the same
test, leapfrog reversibility, centre-of-mass-free momenta, reproducibility, counting, bad input.

Tolerance: K_SE = 4 standard errors from the multi-chain ESS (``fixtures.ess_standard_error``,
Geyer initial positive sequence); a correct sampler fails one check with probability ≈ 6e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import AsymmetricDoubleWell, CorrelatedGaussian, seeded, z_scores

from boltzpath import make_target
from boltzpath.errors import BadInput
from boltzpath.mcmc.base import ChainState, StepInfo, as_chain_column, metropolis, select
from boltzpath.mcmc.driver import run_kernel_sampler
from boltzpath.mcmc.hmc import HMCConfig, leapfrog, run_hmc
from boltzpath.mcmc.registry import run_method

K_SE = 4.0
CHAINS = 256


def _cfg(**kw) -> HMCConfig:
    base = {"chains": CHAINS, "burn_in": 200, "thin": 1, "n_leapfrog": 5, "dtype": "float64"}
    return HMCConfig(**{**base, **kw})


def test_hmc_gaussian_moments():
    target = CorrelatedGaussian()
    s = run_hmc(target, CHAINS * 100, seeded(0), _cfg())
    z_mean, _ = z_scores(s.x, CHAINS, target.mean())
    z_m2, _ = z_scores(s.x**2, CHAINS, target.second_moment())
    # A wrong kinetic term or a non-reversible integrator shifts the second moments by » 4 SE
    # (see test_hmc_without_kinetic_energy_fails_the_same_test).
    assert np.all(np.abs(z_mean) < K_SE), z_mean
    assert np.all(np.abs(z_m2) < K_SE), z_m2


def test_hmc_double_well_moments_and_p_positive():
    target = AsymmetricDoubleWell()
    s = run_hmc(target, CHAINS * 100, seeded(1), _cfg())
    for values, exact in [
        (s.x, target.mean()),
        (s.x**2, target.second_moment()),
        ((s.x > 0).double(), target.p_positive()),
    ]:
        z, _ = z_scores(values, CHAINS, exact)
        assert np.all(np.abs(z) < K_SE), z


def _hmc_without_kinetic_energy(potential, state, generator, step_size, n_leapfrog=5):
    """Deliberately wrong: accepts with min(1, p(x')/p(x)), ignoring the momenta."""
    x = state.position
    eps = as_chain_column(step_size, x).expand(x.shape[0], 1)
    p0 = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    x_new, _, e_new, g_new = leapfrog(potential, x, p0, state.grad, eps, n_leapfrog)
    accept_prob, accepted = metropolis(state.energy - e_new, generator)
    return select(accepted, ChainState(x_new, e_new, g_new), state), StepInfo(accept_prob, accepted)


def test_hmc_without_kinetic_energy_fails_the_same_test():
    # Same target, chains, adaptation and 4 SE tolerance as test_hmc_gaussian_moments. Dropping
    # ½‖p‖² from H makes the chain prefer low energy: second moments shrink (measured 8–34 SE).
    target = CorrelatedGaussian()
    wrong = _hmc_without_kinetic_energy
    s = run_kernel_sampler("wrong-hmc", wrong, target, CHAINS * 100, seeded(0), _cfg())
    z_m2, _ = z_scores(s.x**2, CHAINS, target.second_moment())
    assert np.max(np.abs(z_m2)) > K_SE, z_m2


def test_leapfrog_is_reversible_and_nearly_conserves_energy():
    # Reversibility (flip p, integrate back) is what makes the Metropolis rule exact; a wrong
    # half-step order breaks it at O(ε) (≫ 1e-9 here). Energy error of leapfrog is O(ε²) ~ 1e-3.
    target = CorrelatedGaussian()
    g = seeded(3)
    x0 = target.exact_sample(8, g)
    p0 = torch.randn(8, 3, generator=g, dtype=torch.float64)
    e0, g0 = target.energy_and_grad(x0)
    eps = torch.full((8, 1), 0.05, dtype=torch.float64)
    x1, p1, e1, g1 = leapfrog(target, x0, p0, g0, eps, 20)
    x2, p2, _, _ = leapfrog(target, x1, -p1, g1, eps, 20)
    assert torch.allclose(x2, x0, atol=1e-9) and torch.allclose(-p2, p0, atol=1e-9)
    h0 = e0 + 0.5 * (p0**2).sum(-1)
    h1 = e1 + 0.5 * (p1**2).sum(-1)
    assert (h1 - h0).abs().max() < 0.02


def test_hmc_keeps_particles_centre_of_mass_free():
    target = make_target("lj13")
    s = run_hmc(target, 16, seeded(0), HMCConfig(chains=8, burn_in=5, thin=1, n_leapfrog=3, step_size=1e-3))
    com = target.as_particles(s.x).mean(dim=1)
    assert com.abs().max() < 1e-5


def test_hmc_reproducible_bit_for_bit():
    target = make_target("manywell32")
    cfg = HMCConfig(chains=16, burn_in=10, thin=1, n_leapfrog=3)
    a = run_hmc(target, 32, seeded(5), cfg)
    b = run_hmc(target, 32, seeded(5), cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.energy, b.energy)
    assert not torch.equal(a.x, run_hmc(target, 32, seeded(6), cfg).x)


def test_hmc_counts_energy_evaluations():
    # initial gradient once per chain, then n_leapfrog evaluations per chain per step
    target = CorrelatedGaussian()
    chains, burn_in, thin, leap, n = 8, 6, 2, 4, 20  # ceil(20/8) = 3 collected per chain
    s = run_hmc(target, n, seeded(0), HMCConfig(chains=chains, burn_in=burn_in, thin=thin, n_leapfrog=leap))
    assert s.info["energy_evaluations"] == chains * (1 + leap * (burn_in + 3 * thin))


def test_hmc_via_registry():
    target = CorrelatedGaussian()
    s = run_method("hmc", target, 10, seeded(0), {"chains": 5, "burn_in": 2, "n_leapfrog": 2})
    assert s.info["method"] == "hmc" and s.n == 10
    assert s.info["config"]["n_leapfrog"] == 2 and target.counter.count == 5 * (1 + 2 * (2 + 20))


@pytest.mark.parametrize("options", [{"n_leapfrog": 0}, {"step_size": -1.0}, {"target_accept": 0.0}])
def test_hmc_bad_config_raises(options):
    with pytest.raises(BadInput):
        run_method("hmc", CorrelatedGaussian(), 10, seeded(0), options)
