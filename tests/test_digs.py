"""Diffusive Gibbs Sampling: exactness (unbalanced modes, invariance), cost, symmetry, config."""

from __future__ import annotations

import math

import pytest
import torch
from fixtures import TwoGaussians1D, chains_view, ess_standard_error, seeded

from boltzpath import make_target
from boltzpath.config import from_dict
from boltzpath.errors import BadInput
from boltzpath.mcmc.digs import ConditionalPotential, DiGSConfig, run_digs
from boltzpath.mcmc.digs_schedule import NoiseConfig, alpha_of, geometric_sigmas
from boltzpath.mcmc.registry import run_method


def _cfg(**kw) -> DiGSConfig:
    return from_dict(DiGSConfig, kw)


# ------------------------------------------------------------------ unbalanced modes (seed talk)
def _small_mode_weight(mwg_correction: bool):
    """P̂(x > 0) on 0.9·N(−4, 1) + 0.1·N(4, 1) with its ESS standard error."""
    target = TwoGaussians1D()
    chains, steps = 128, 250
    # σ/α = 0.58, 2.1, 7.0: the top level proposes anywhere across both modes (separation 8)
    cfg = _cfg(chains=chains, burn_in=60, thin=1, mala_steps=2, step_size=0.5, dtype="float64",
               mwg_correction=mwg_correction, noise={"sigmas": [0.5, 0.9, 0.99]})
    s = run_digs(target, chains * steps, seeded(1), cfg)
    est = ess_standard_error(chains_view((s.x[:, 0] > 0).double(), chains))
    return float(est.mean[0]), float(est.se[0]), target.p_positive()


def test_unbalanced_modes_weight_exact_with_mwg_correction():
    p_hat, se, p_true = _small_mode_weight(True)
    # tolerance: 3 standard errors, SE from the multi-chain ESS of the indicator x > 0 (Geyer
    # initial-positive sequence over 128 chains, fixtures.ess_standard_error). A sampler that
    # ignored p in the proposal drifts towards 0.5 (see the next test), ~40 SE away.
    assert se < 0.02, f"SE {se} too large for the test to have power"
    assert abs(p_hat - p_true) < 3 * se, (p_hat, p_true, se)


def test_unbalanced_modes_biased_without_correction():
    p_hat, se, p_true = _small_mode_weight(False)
    # without min(1, p(x')/p(x)) the denoising-posterior proposal lands in either mode about
    # equally often and two MALA steps cannot cross the 8 kT barrier: the small mode is
    # over-weighted. "Measurably wrong" = outside the same 3-SE band, and by > 0.1 absolute.
    assert abs(p_hat - p_true) > 3 * se and p_hat - p_true > 0.1, (p_hat, p_true, se)


# ------------------------------------------------------------------ invariance on gmm40
def _mode_weight_tvd_floor(n: int, k: int, generator, draws: int = 2000) -> float:
    """99.9 % quantile of the TVD between n exact draws' mode frequencies and the exact weights."""
    idx = torch.multinomial(torch.full((k,), 1.0 / k), n * draws, replacement=True, generator=generator)
    counts = torch.zeros(draws, k).scatter_add_(1, idx.reshape(draws, n), torch.ones(draws, n))
    tvd = 0.5 * (counts / n - 1.0 / k).abs().sum(1)
    return float(tvd.quantile(0.999))


def _after_sweeps_from_exact(mwg_correction: bool, n: int = 2000, sweeps: int = 10):
    target = make_target("gmm40")
    x0 = target.exact_sample(n, seeded(3))
    cfg = _cfg(chains=n, burn_in=0, thin=sweeps, step_size=0.3, dtype="float64",
               mwg_correction=mwg_correction)
    s = run_digs(target, n, seeded(4), cfg, x0=x0)
    counts = torch.bincount(target.mode_index(s.x), minlength=40).double()
    tvd = float(0.5 * (counts / n - 1.0 / 40).abs().sum())
    e_ref = target.energy(target.exact_sample(100_000, seeded(6))).double()
    e = s.energy.double()
    z = float((e.mean() - e_ref.mean()) / torch.sqrt(e.var() / n + e_ref.var() / e_ref.numel()))
    return tvd, z


def test_invariance_gmm40_from_exact_samples():
    """Independent chains started at exact samples stay exact after K = 10 sweeps (2 cycles)."""
    tvd, z = _after_sweeps_from_exact(True)
    # floor: the 99.9 % quantile of the same TVD for n = 2000 exact multinomial draws (≈ 0.079;
    # its mean is 0.056) — an exact kernel exceeds it with probability 0.001.
    floor = _mode_weight_tvd_floor(2000, 40, seeded(5))
    assert tvd < floor, (tvd, floor)
    # mean E/kT of the chains vs 100k exact samples: 4 standard errors (chains are independent,
    # one draw each, so SE = √(var/n) exactly). Mis-scaled noise or a wrong MALA drift leaves
    # samples between modes and raises ⟨E⟩ far beyond this.
    assert abs(z) < 4, z


def test_invariance_check_catches_uncorrected_kernel():
    # negative control for the test above: the biased (uncorrected) kernel must fail it
    # (measured: TVD ≈ 0.21 vs floor 0.079, ⟨E⟩ ≈ 22 SE too high)
    tvd, z = _after_sweeps_from_exact(False)
    assert tvd > _mode_weight_tvd_floor(2000, 40, seeded(5)) or abs(z) > 4, (tvd, z)


# ------------------------------------------------------------------ pieces
def test_conditional_potential_matches_autograd():
    target = make_target("dw4")
    g = seeded(7)
    x = target.project(torch.randn(5, 8, generator=g, dtype=torch.float64))
    x_noisy = target.project(torch.randn(5, 8, generator=g, dtype=torch.float64))
    sigma = 0.3
    alpha = alpha_of(sigma)
    cond = ConditionalPotential(target, x_noisy, alpha, sigma)
    e, grad = cond.energy_and_grad(x)
    xg = x.clone().requires_grad_(True)
    e_ref = target.energy(xg) + ((x_noisy - alpha * xg) ** 2).sum(-1) / (2 * sigma**2)
    (g_ref,) = torch.autograd.grad(e_ref.sum(), xg)
    # exact identities up to float64 rounding; a sign or α error in the Gaussian term is O(1)
    torch.testing.assert_close(e, e_ref.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(grad, target.project(g_ref), rtol=1e-10, atol=1e-10)
    # lift() adds the same Gaussian part to a stored target state without a new evaluation
    assert cond.last is not None
    before = target.counter.count
    lifted = cond.lift(cond.last)
    assert target.counter.count == before
    torch.testing.assert_close(lifted.energy, e, rtol=1e-12, atol=1e-10)


def test_noise_schedule_geometric_in_proposal_scale():
    sig = geometric_sigmas(0.3, 0.995, 5)
    ratios = [s / alpha_of(s) for s in sig]
    assert sig[0] == pytest.approx(0.3) and sig[-1] == pytest.approx(0.995)
    steps = [math.log(b / a) for a, b in zip(ratios, ratios[1:], strict=False)]
    assert max(steps) - min(steps) < 1e-9
    assert NoiseConfig(sigma_max=0.5, count=3).resolve("unknown-target")[-1] == pytest.approx(0.5)
    assert NoiseConfig(sigmas=[0.1, 0.2]).resolve("gmm40") == [0.1, 0.2]


def test_reproducible_for_fixed_seed():
    target = make_target("gmm40")
    cfg = _cfg(chains=16, burn_in=10, thin=2)
    a = run_digs(target, 64, seeded(11), cfg)
    b = run_digs(target, 64, seeded(11), cfg)
    c = run_digs(target, 64, seeded(12), cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.energy, b.energy)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("mala_steps", [0, 3])
def test_energy_evaluations_match_analytic_count(mala_steps):
    target = make_target("manywell32")
    chains, burn_in, thin, n = 8, 5, 3, 20
    cfg = _cfg(chains=chains, burn_in=burn_in, thin=thin, mala_steps=mala_steps)
    before = target.counter.count
    s = run_digs(target, n, seeded(0), cfg)
    sweeps = burn_in + math.ceil(n / chains) * thin
    expected = chains * (1 + sweeps * (1 + mala_steps))  # init + (proposal + MALA steps) per sweep
    assert s.info["energy_evaluations"] == expected == target.counter.count - before
    assert s.n == n and s.info["sweeps"] == sweeps


@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_particles_stay_centre_of_mass_free(name):
    target = make_target(name)
    s = run_method("digs", target, 64, seeded(2), {"chains": 16, "burn_in": 20, "thin": 2})
    com = target.as_particles(s.x).mean(1)
    # float32 positions of size O(1): any un-projected noise would give CoM ~ σ/√n ≳ 1e-3
    assert float(com.abs().max()) < 1e-5
    energy = target.energy(s.x.double()).float()
    torch.testing.assert_close(s.energy, energy, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "options",
    [
        {"chains": 0},
        {"mala_steps": -1},
        {"step_size": 0.0},
        {"target_accept": 1.5},
        {"dtype": "float16"},
        {"noise": {"sigmas": [0.5, 0.2]}},
        {"noise": {"sigmas": [0.5, 1.0]}},
        {"noise": {"sigma_min": 0.6, "sigma_max": 0.2}},
        {"noise": {"count": 0}},
        {"noise": {"levels": 3}},
        {"nonsense": 1},
    ],
)
def test_bad_config_raises_bad_input(options):
    with pytest.raises(BadInput):
        run_method("digs", make_target("gmm40"), 10, seeded(0), options)


def test_bad_call_raises_bad_input():
    target = make_target("gmm40")
    with pytest.raises(BadInput):
        run_digs(target, 0, seeded(0), DiGSConfig(chains=4))
    with pytest.raises(BadInput):
        run_digs(target, 8, seeded(0), DiGSConfig(chains=4), x0=torch.zeros(3, 2))


# ------------------------------------------------------------------ mixing report
@pytest.mark.parametrize("name", ["gmm40", "manywell32"])
def test_digs_report_writes_mixing_plot(tmp_path, name):
    from boltzpath.report.mixing import digs_report, mode_label

    target = make_target(name)
    cfg = _cfg(chains=6, burn_in=4, thin=2)
    s = run_digs(target, 60, seeded(0), cfg)
    before = target.counter.count
    paths = digs_report(tmp_path, s, target, cfg, seeded(1))
    assert [p.name for p in paths] == ["mixing.png"] and paths[0].stat().st_size > 1000
    assert target.counter.count == before  # the MALA comparison runs on a private counter
    labels, _ = mode_label(target, s.x)
    assert labels.shape == (60,) and int(labels.max()) < (40 if name == "gmm40" else 16)
    assert digs_report(tmp_path, s, make_target("dw4"), cfg, seeded(1)) == []
