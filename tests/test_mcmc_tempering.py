"""Parallel tempering: exact moments (including a barrier local moves rarely cross), every
temperature's law, the swap rule in reference energies, reproducibility, counting, bad input.

Tolerance: K_SE = 4 standard errors from the multi-chain ESS of the T₀ chains
(``fixtures.ess_standard_error``, Geyer initial positive sequence).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixtures import AsymmetricDoubleWell, CorrelatedGaussian, seeded, z_scores

from boltzpath import make_target
from boltzpath.errors import BadInput
from boltzpath.mcmc.base import ChainState, init_state
from boltzpath.mcmc.registry import run_method
from boltzpath.mcmc.tempering import LadderPotential, PTConfig, geometric_ladder, replica_swap, run_pt

K_SE = 4.0
CHAINS = 128


def test_geometric_ladder():
    temps = geometric_ladder(1.0, 8.0, 4)
    assert temps == pytest.approx([1.0, 2.0, 4.0, 8.0])
    assert geometric_ladder(300.0, 1200.0, 1) == [300.0]


HARD_WELL = {"b": 4.0, "c": 1.0}  # E = x⁴ − 4x² + x: ≈ 5.5 kT barrier out of the deep well


def _pt_on_hard_well():
    target = AsymmetricDoubleWell(**HARD_WELL)
    cfg = PTConfig(chains=CHAINS, burn_in=200, thin=1, n_replicas=5, t_max=8.0, dtype="float64")
    return target, run_pt(target, CHAINS * 120, seeded(0), cfg)


def _hard_well_z(target, s) -> np.ndarray:
    pairs = [(s.x, target.mean()), (s.x**2, target.second_moment())]
    pairs.append(((s.x > 0).double(), target.p_positive()))
    return np.concatenate([z_scores(v, CHAINS, exact)[0] for v, exact in pairs])


def test_pt_hard_double_well_p_positive_and_moments():
    # P(x > 0) = 0.0673 by quadrature; mean, E[x²] and P(x > 0) of the T₀ chains within 4 SE.
    # (Measured once: plain MALA gets ~20x less ESS for P(x > 0) per energy evaluation here.)
    target, s = _pt_on_hard_well()
    z = _hard_well_z(target, s)
    assert np.all(np.abs(z) < K_SE), z
    assert all(0.2 < a < 1.0 for a in s.info["swap_acceptance"])
    assert s.info["temperatures"] == pytest.approx(geometric_ladder(1.0, 8.0, 5))


def test_swap_with_flipped_exponent_fails_the_same_test(monkeypatch):
    # Deliberately wrong: accept swaps with min(1, exp((β_k − β_{k+1})(u_{k+1} − u_k))) (the sign
    # flipped), which pushes low energies up the ladder. Same run and 4 SE tolerance as above;
    # measured ≈ 17 SE off in P(x > 0). (The units of u — reference energies, not each replica's
    # own E/kT — are checked exactly in test_replica_swap_rule_and_state_after_swap.)
    import boltzpath.mcmc.tempering as pt

    correct_swap = pt.replica_swap

    def flipped_swap(state, betas, parity, generator):
        # negating every energy negates u = E_k/β_k, hence the exponent; positions move as usual
        flipped = ChainState(state.position, -state.energy, state.grad)
        new, probs = correct_swap(flipped, betas, parity, generator)
        return ChainState(new.position, -new.energy, new.grad), probs

    monkeypatch.setattr(pt, "replica_swap", flipped_swap)
    target, s = _pt_on_hard_well()
    z = _hard_well_z(target, s)
    assert np.max(np.abs(z)) > K_SE, z


def test_pt_every_temperature_has_its_law_with_hmc_moves():
    # With return_all, replica k samples N(μ, T_k Σ): second moments within 4 SE at T₀ and T_max.
    # A replica built at the wrong temperature (e.g. β_k inverted) misses T_max·Σ by » 4 SE.
    target = CorrelatedGaussian()
    cfg = PTConfig(chains=CHAINS, burn_in=100, thin=1, n_replicas=3, t_max=4.0, dtype="float64")
    cfg.local, cfg.n_leapfrog = "hmc", 3
    out = run_pt(target, CHAINS * 60, seeded(1), cfg, return_all=True)
    assert [s.info["temperature"] for s in out] == pytest.approx([1.0, 2.0, 4.0])
    for k in (0, 2):
        tk = target.at_temperature(out[k].info["temperature"])
        z_mean, _ = z_scores(out[k].x, CHAINS, tk.mean())
        z_m2, _ = z_scores(out[k].x ** 2, CHAINS, tk.second_moment())
        assert np.all(np.abs(z_mean) < K_SE), (k, z_mean)
        assert np.all(np.abs(z_m2) < K_SE), (k, z_m2)
        # stored energies are E/kT at that replica's temperature
        assert torch.allclose(out[k].energy, tk.energy(out[k].x), atol=1e-10)


def test_replica_swap_rule_and_state_after_swap():
    # Two replicas at T = 1, 2 (β = 1, 0.5); acceptance must be min(1, exp((β₀ − β₁)(u₀ − u₁)))
    # in reference energies u, and a swapped state must equal a fresh evaluation at its new replica.
    target = CorrelatedGaussian()
    replicas = [target.at_temperature(1.0), target.at_temperature(2.0)]
    chains = 64
    ladder = LadderPotential(replicas, chains)
    x = torch.cat([target.exact_sample(chains, seeded(2)), replicas[1].exact_sample(chains, seeded(3))])
    state = init_state(ladder, x)
    betas = torch.tensor([1.0, 0.5], dtype=torch.float64)
    u = target.energy(x).reshape(2, chains)  # reference temperature is T = 1
    expected = torch.exp(torch.clamp(0.5 * (u[0] - u[1]), max=0.0))
    new, probs = replica_swap(state, betas, parity=0, generator=seeded(4))
    assert torch.allclose(probs[0], expected, atol=1e-12)
    fresh_e, fresh_g = ladder.energy_and_grad(new.position)
    assert torch.allclose(new.energy, fresh_e, atol=1e-10) and torch.allclose(new.grad, fresh_g, atol=1e-10)
    moved = ~torch.isclose(new.position[:chains], x[:chains]).all(-1)
    assert 0 < int(moved.sum()) < chains  # some swaps accepted, some rejected
    _, probs_odd = replica_swap(state, betas, parity=1, generator=seeded(4))
    assert torch.isnan(probs_odd).all()  # with two replicas there is no odd pair


def test_pt_counts_every_replica_and_is_reproducible():
    target = make_target("gmm40")
    cfg = PTConfig(chains=8, burn_in=4, thin=2, n_replicas=3, t_max=5.0)
    a = run_pt(target, 20, seeded(5), cfg)  # ceil(20/8) = 3 per chain → 4 + 6 = 10 steps
    assert a.info["energy_evaluations"] == 3 * 8 * (1 + 10)
    b = run_pt(target, 20, seeded(5), cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.energy, b.energy)
    cfg_hmc = PTConfig(chains=8, burn_in=4, thin=2, n_replicas=3, local="hmc", n_leapfrog=2)
    hmc = run_pt(target, 20, seeded(5), cfg_hmc)
    assert hmc.info["energy_evaluations"] == 3 * 8 * (1 + 2 * 10)
    assert len(a.info["swap_acceptance"]) == 2 and math.isfinite(a.info["swap_acceptance"][0])


@pytest.mark.parametrize(
    "options", [{"n_replicas": 0}, {"local": "gibbs"}, {"t_max": 0.5}, {"swap_every": 0}, {"n_leapfrog": 0}]
)
def test_pt_bad_config_raises(options):
    with pytest.raises(BadInput):
        run_method("pt", CorrelatedGaussian(), 10, seeded(0), options)
