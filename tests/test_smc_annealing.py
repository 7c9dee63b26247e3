"""Exactness of the Feynman–Kac annealing SMC (SPEC §6) on analytic Gaussian mixtures.

A Gaussian mixture convolved with the VE kernel is again a mixture, so U_t, its score, ∂U/∂t and
∇·s are closed form (``boltzpath.smc.exact``); the annealer's only approximation is then the
time discretisation, and its output can be compared with quadrature of p^γ.
"""

import dataclasses
import math

import pytest
import torch
from fixtures import CorrelatedGaussian, SpikeSlab

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.errors import BadInput
from boltzpath.parallel.dist import DistContext
from boltzpath.parallel.sharded_smc import sharded_anneal
from boltzpath.smc.annealing import AnnealConfig, anneal, fk_increment
from boltzpath.smc.divergence import divergence
from boltzpath.smc.exact import GaussianMixtureVE
from boltzpath.smc.model import NetworkModel
from boltzpath.smc.relax import RelaxConfig, relax
from boltzpath.smc.weights import weighted_mean

SCHEDULE = KarrasSchedule(sigma_min=0.05, sigma_max=80.0)
# 1-D: unequal widths make p^2 re-weight the modes (0.5/0.5 → about 0.77/0.23 for γ = 2)
MIX_1D = GaussianMixtureVE([0.5, 0.5], [[-2.0], [2.0]], [0.3, 1.0], SCHEDULE)
MIX_2D = GaussianMixtureVE([0.2, 0.3, 0.5], [[-3.0, 0.0], [2.0, 2.0], [1.0, -2.5]], [0.5, 0.8, 0.4], SCHEDULE)


def _mixture_energy_net(mix: GaussianMixtureVE):
    """U(x, σ) = −log Σ π_k N(x; μ_k, (s_k² + σ²) I), written independently of the closed forms."""

    def energy(x, sigma):
        v = mix.stds[None, :] ** 2 + sigma[:, None] ** 2  # (B, K)
        sq = ((x[:, None, :] - mix.means[None]) ** 2).sum(-1)
        ell = torch.log(mix.weights) - 0.5 * mix.dim * torch.log(2 * math.pi * v) - sq / (2 * v)
        return -torch.logsumexp(ell, dim=1)

    return energy


@pytest.mark.parametrize("t", [0.05, 0.4, 0.9])
def test_closed_forms_match_autograd(t):
    # closed-form score, ∂U/∂t (through σ(t)) and ∇·s vs autograd of U (energy-only NetworkModel:
    # s = −∇U, ∇·s = −ΔU by double backprop). float64 round-off only: tolerance 1e-8 relative.
    # A wrong g² (e.g. 2σ instead of 2σσ') or a missing −‖s‖² in the divergence is O(1) off.
    net = NetworkModel(SCHEDULE, 2, energy_net=_mixture_energy_net(MIX_2D))
    x = MIX_2D.sample(64, torch.Generator().manual_seed(0)) * 1.5
    a, b = net.terms(x, t), MIX_2D.terms(x, t)
    for name in ("score", "grad_energy", "du_dt", "div_score"):
        u, v = getattr(a, name), getattr(b, name)
        assert torch.allclose(u, v, rtol=1e-8, atol=1e-8 * float(v.abs().max())), name


def test_gamma_one_increments_vanish():
    # SPEC §6 derivation check: with γ = 1 and exact s = −∇U the FK rate is identically zero, so the
    # only error is float64 round-off; bound 1e-9 (terms are O(1e-2..1e3), cancellation to ~1e-13).
    # A sign error in any of the three terms, or ds in place of Δh/g² for ∂_tU, leaves O(0.1–10).
    for mix in (MIX_1D, MIX_2D):
        res = anneal(mix, 256, SCHEDULE, AnnealConfig(n_steps=40, gamma=1.0, dtype="float64", tail="fk"),
                     torch.Generator().manual_seed(1))
        assert max(res.info.max_abs_increment) < 1e-9
        assert res.info.n_resampling_events == 0 and res.ess == pytest.approx(256)
        # the cancellation is non-trivial: the ∂_tU term alone is large at some step
        x = mix.sample(256, torch.Generator().manual_seed(2))
        terms = mix.terms(x, 0.5)
        dh = float(SCHEDULE.sigma(0.5) ** 2 - SCHEDULE.sigma(0.49) ** 2)
        alone = terms.du_dt * dh / float(SCHEDULE.g2(0.5))
        assert float(alone.abs().max()) > 1e-2
        assert float(fk_increment(terms, 1.0, dh, float(SCHEDULE.g2(0.5))).abs().max()) < 1e-9


def _replicas(use_weights: bool, gamma: float, reps: int = 8, n: int = 1000, steps: int = 100):
    p_pos, m2 = [], []
    for r in range(reps):
        cfg = AnnealConfig(n_steps=steps, gamma=gamma, dtype="float64", use_weights=use_weights,
                           ess_threshold=0.5, stop_resampling_t=0.1, tail="fk")
        res = anneal(MIX_1D, n, SCHEDULE, cfg, torch.Generator().manual_seed(100 + r))
        x = res.x[:, 0]
        p_pos.append(float(weighted_mean((x > 0).double(), res.log_weights)))
        m2.append(float(weighted_mean(x**2, res.log_weights)))
    return torch.tensor(p_pos, dtype=torch.float64), torch.tensor(m2, dtype=torch.float64)


def _quadrature(gamma: float):
    grid = torch.linspace(-15, 15, 30001, dtype=torch.float64)[:, None]
    dens = MIX_1D.tempered_density(grid, gamma)
    dens = dens / dens.sum()
    return float(dens[grid[:, 0] > 0].sum()), float((dens * grid[:, 0] ** 2).sum())


def test_gamma_two_reproduces_tempered_mixture_and_score_scaling_is_biased():
    # γ = 2: the weighted particles target p_{t=0}^2, whose P(x>0) and E[x²] come from quadrature.
    # Tolerance: 4 standard errors of the mean over 8 independent SMC replicas (the empirical SE
    # includes resampling degeneracy, which an ESS-based SE would understate) plus a discretisation
    # allowance of 0.01 / 0.1 (the γ = 1, 100-step bias of P(x>0), E[x²] measured in development
    # is below half of these). Unweighted "score scaling" lands near 0.45 vs the true 0.23:
    # it must fall outside the same band, which shows the weights do the work.
    p_true, m2_true = _quadrature(2.0)
    p_w, m2_w = _replicas(True, 2.0)
    se_p, se_m2 = p_w.std() / math.sqrt(len(p_w)), m2_w.std() / math.sqrt(len(m2_w))
    tol_p, tol_m2 = 4 * float(se_p) + 0.01, 4 * float(se_m2) + 0.1
    assert abs(float(p_w.mean()) - p_true) < tol_p
    assert abs(float(m2_w.mean()) - m2_true) < tol_m2
    # (E[x²] is nearly the same for both mode mixtures here, so the mode weight is the statistic
    # that separates them.)
    p_s, _ = _replicas(False, 2.0, reps=4)
    assert abs(float(p_s.mean()) - p_true) > max(tol_p, 0.1)


def test_hutchinson_agrees_with_exact_divergence_in_expectation():
    # mean of P Rademacher probes per row vs the exact trace; tolerance 5 SE per row (SE from the
    # probes' sample std, P = 400), 64 rows → false-alarm rate ≈ 4e-5. A biased probe (Gaussian
    # scaled wrong, or v·Jv without the v on both sides) misses by a multiple of the trace.
    net = NetworkModel(SCHEDULE, 2, energy_net=_mixture_energy_net(MIX_2D))
    x = MIX_2D.sample(64, torch.Generator().manual_seed(3))
    field = net._score_field(0.02)
    exact, _ = divergence(field, x, "exact")
    g = torch.Generator().manual_seed(4)
    est = torch.stack([divergence(field, x, "hutchinson", g)[0] for _ in range(400)])
    se = est.std(0) / math.sqrt(400)
    assert torch.all((est.mean(0) - exact).abs() < 5 * se + 1e-10)
    # the test has teeth: single probes differ from the exact value (off-diagonal Jacobian terms)
    assert float((est[0] - exact).abs().max()) > 1e-3


def test_exact_below_t_switches_the_estimator_only_on_the_late_steps():
    """exact_below_t = 1: every step exact (the same run as divergence="exact", no probes drawn);
    0: the plain Hutchinson run; in between: the Hutchinson run's early steps, then exact ones."""
    net = NetworkModel(SCHEDULE, 2, energy_net=_mixture_energy_net(MIX_2D))
    base = AnnealConfig(n_steps=12, gamma=1.5, divergence="hutchinson", n_probes=1, tail="fk")

    def run(cfg):
        res = anneal(net, 32, SCHEDULE, cfg, torch.Generator().manual_seed(7))
        return res.x, res.log_weights

    exact = run(dataclasses.replace(base, divergence="exact"))
    hutch = run(base)
    for a, b in zip(run(dataclasses.replace(base, exact_below_t=1.0)), exact, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    for a, b in zip(run(dataclasses.replace(base, exact_below_t=0.0)), hutch, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    mixed = run(dataclasses.replace(base, exact_below_t=0.5))
    assert not torch.equal(mixed[1], hutch[1]) and not torch.equal(mixed[1], exact[1])


def test_anneal_config_rejects_bad_values():
    for bad in ({"gamma": 0.0}, {"n_steps": 0}, {"resample": "magic"}, {"divergence": "guess"},
                {"ess_threshold": 1.5}, {"dtype": "float16"}, {"exact_below_t": -0.1},
                {"exact_below_t": 1.5}):
        with pytest.raises(BadInput):
            AnnealConfig(**bad).validate()


def test_relax_config_rejects_bad_repair_settings():
    for bad in ({"repair_step": 0.0}, {"repair_steps": -1}, {"repair_above": math.inf},
                {"repair_above": math.nan}):
        with pytest.raises(BadInput, match="repair"):
            RelaxConfig(**bad).validate()
    RelaxConfig(repair_above=None).validate()  # null switches the repair off


def test_relaxation_moves_particles_and_keeps_the_target():
    # Start from exact samples of a 3-D correlated Gaussian; MALA preserves it. Mean within 5 SE
    # (SE = √(diag Σ / n), chains independent); acceptance near the 0.574 target (0.4–0.75);
    # RMS displacement > 0.2 (Σ has unit-scale variances): a step size stuck at its 1e-4 start
    # (or adapted with a decaying rate that cannot travel four decades in 60 steps) moves ≈ 0.01.
    target = CorrelatedGaussian()
    g = torch.Generator().manual_seed(5)
    x0 = target.exact_sample(2000, g).to(torch.float64)
    res = relax(target, x0, g, RelaxConfig(n_steps=120, adapt_steps=60, step_size=1e-4))
    se = torch.sqrt(torch.diagonal(target.covariance()).to(torch.float64) / 2000)
    assert torch.all((res.x.mean(0) - target.mean().to(torch.float64)).abs() < 5 * se)
    assert 0.4 < res.info["acceptance"] < 0.75
    assert res.info["mean_rms_displacement"] > 0.2


def test_relaxation_of_exact_samples_keeps_the_target_with_shared_step_adaptation():
    # Exact samples in, 100 adapting + 50 frozen MALA steps: the relaxed E|x|² must be the exact
    # ½·5·(0.3² + 1) = 2.725 within 4 SE (SE from the sample's own s.d. of |x|², n = 2000
    # independent chains). The default (one step size for all chains, adapted on their mean
    # acceptance) passes; adapting each chain on its own acceptance is state-dependent and drags the
    # chains outward (measured 2026-12-07: E|x|² +1.13 ± 0.07 on 4,000 chains), and this test catches it.
    target = SpikeSlab()
    x0 = target.exact_sample(2000, torch.Generator().manual_seed(0))
    exact = 0.5 * 5 * (0.3**2 + 1.0)
    out = {}
    for mode in ("shared", "per_chain"):
        res = relax(target, x0, torch.Generator().manual_seed(1),
                    RelaxConfig(n_steps=150, adapt_steps=100, step_size=1e-3, repair_above=None, adapt=mode))
        r2 = (res.x**2).sum(-1)
        out[mode] = (float(r2.mean()) - exact) / (float(r2.std()) / math.sqrt(r2.numel()))
    assert RelaxConfig().adapt == "shared"
    assert abs(out["shared"]) < 4, out
    assert out["per_chain"] > 4, out  # the biased mode stays detectable by this test
    with pytest.raises(BadInput, match="relax.adapt"):
        RelaxConfig(adapt="each").validate()


def test_relaxation_drift_check_flags_chains_still_relaxing_and_extends_until_they_stop():
    # Stiff/soft Gaussian (variances 1e-2 and 1): MALA's step is set by the stiff direction, so chains
    # started at 6 in the soft direction take hundreds of steps to come in (E/kT falls from 18 to 1).
    # After 150 steps (50 adapting) the check must see the energy still falling (z < -3); with
    # extend_max_steps the relaxation adds blocks until a block's two halves agree (|z| <= 3) and
    # counts every added step; exact samples must pass the check as they are (|z| <= 3: a false
    # alarm at 3 standard errors has probability 0.3 %, and the seed is fixed).
    target = CorrelatedGaussian(mean=[0.0, 0.0], cov=[[1e-2, 0.0], [0.0, 1.0]])
    far = torch.tensor([[0.0, 6.0]], dtype=torch.float64).repeat(1000, 1)
    cfg = RelaxConfig(n_steps=150, adapt_steps=50, step_size=1e-3, repair_above=None)
    short = relax(target, far, torch.Generator().manual_seed(1), cfg)
    assert short.info["drift"]["z"] < -3 and short.info["extended_steps"] == 0
    c = target.counter.count
    longer = relax(target, far, torch.Generator().manual_seed(1),
                   dataclasses.replace(cfg, extend_max_steps=5000))
    ext = longer.info["extended_steps"]
    assert 0 < ext < 5000 and abs(longer.info["drift"]["z"]) <= 3
    assert longer.info["steps"] == 150 + ext
    assert target.counter.count - c == 1000 * (1 + 150 + ext)
    assert abs(float(longer.x[:, 1].mean())) < 0.5  # came in from 6
    exact = target.exact_sample(1000, torch.Generator().manual_seed(2)).to(torch.float64)
    still = relax(target, exact, torch.Generator().manual_seed(3), cfg)
    assert abs(still.info["drift"]["z"]) <= 3
    for bad in ({"extend_max_steps": -1}, {"drift_z": 0.0}, {"drift_z": math.inf}):
        with pytest.raises(BadInput, match="relax"):
            RelaxConfig(**bad).validate()


def test_relax_config_rejects_bad_baoab_settings():
    for bad in ({"baoab_steps": -1}, {"baoab_step_size": 0.0}, {"baoab_step_size": math.inf},
                {"baoab_friction": 0.0}, {"baoab_friction": math.nan}):
        with pytest.raises(BadInput, match="baoab"):
            RelaxConfig(**bad).validate()


def test_baoab_phase_equilibrates_the_soft_mode_that_mala_leaves_and_keeps_the_target():
    # A stiff/soft Gaussian (variances 1e-4 and 1, the peptide problem in two dimensions: MALA's
    # step is set by the stiff direction) with every particle started at the origin. MALA alone
    # (200 steps) leaves the soft variance far below 1; 300 BAOAB steps of h = 0.01 (h·√λ_max = 1,
    # stable; γ = 1, so about three velocity relaxation times) between 100 warm-up and 100 frozen
    # MALA steps must give the soft variance 1 and the stiff 1e-4 within 5 SE (SE of a sample
    # variance: √(2/n)·σ², n = 2000 independent chains), and the mean 0 within 5 SE. BAOAB is exact
    # in x for a Gaussian, MALA keeps it; a phase that did not run, or ran with the wrong noise, fails
    # the variance.
    target = CorrelatedGaussian(mean=[0.0, 0.0], cov=[[1e-4, 0.0], [0.0, 1.0]])
    x0 = torch.zeros(2000, 2, dtype=torch.float64)
    mala_only = relax(target, x0, torch.Generator().manual_seed(1),
                      RelaxConfig(n_steps=200, adapt_steps=100, step_size=1e-5, repair_above=None))
    assert float(mala_only.x[:, 1].var()) < 0.2
    cfg = RelaxConfig(n_steps=200, adapt_steps=100, step_size=1e-5, repair_above=None, baoab_steps=300,
                      baoab_step_size=0.01)
    c = target.counter.count
    res = relax(target, x0, torch.Generator().manual_seed(2), cfg)
    assert target.counter.count - c == 2000 * (1 + 300 + 200)
    n = 2000
    for j, var in ((0, 1e-4), (1, 1.0)):
        assert abs(float(res.x[:, j].var()) - var) < 5 * math.sqrt(2 / n) * var
        assert abs(float(res.x[:, j].mean())) < 5 * math.sqrt(var / n)
    assert res.info["baoab_steps"] == 300 and res.info["baoab_reverted"] == 0


def test_baoab_phase_puts_back_configurations_it_blew_up():
    # h·√λ_max = 0.5·√1e4 = 50 ≫ 2: BAOAB diverges on the stiff mode; every configuration ends above
    # the repair threshold and must be returned where it started (no MALA steps after it here)
    target = CorrelatedGaussian(mean=[0.0, 0.0], cov=[[1e-4, 0.0], [0.0, 1.0]])
    x0 = torch.full((50, 2), 0.001, dtype=torch.float64)
    res = relax(target, x0, torch.Generator().manual_seed(3),
                RelaxConfig(n_steps=0, repair_above=100.0, baoab_steps=50, baoab_step_size=0.5))
    assert res.info["baoab_reverted"] == 50
    assert torch.equal(res.x, target.project(x0)) and torch.isfinite(res.energy).all()


def test_overlap_repair_separates_overlapping_lj_particles_and_leaves_good_ones():
    # LJ-13 at kT = 1: a centred icosahedron of radius 1.1 (E < 0) and copies with particle 0 pushed
    # onto particle 1 (E/kT ~ 1e9). MALA alone cannot move those (its step adapts to ~0); the
    # repair must bring every one below the 1000 E/kT flag, count its evaluations and not touch
    # the good configurations. Without repair (repair_above=None) they stay above 1000.
    from boltzpath import make_target
    from boltzpath.mcmc.base import init_state
    from boltzpath.smc.relax import repair

    target = make_target("lj13")
    phi = (1 + math.sqrt(5)) / 2
    verts = [(0, a, b * phi) for a in (-1, 1) for b in (-1, 1)]
    verts = [v[k:] + v[:k] for v in verts for k in range(3)]  # the 12 cyclic permutations
    ico = torch.tensor([(0.0, 0.0, 0.0)] + verts, dtype=torch.float64)
    ico[1:] *= 1.1 / ico[1].norm()
    x = ico.reshape(1, 39).repeat(6, 1)
    assert float(target.energy_and_grad(x[:1])[0]) < 0
    for i in range(1, 6):
        p = x[i].reshape(13, 3)
        p[0] = p[1] + 0.2 * i / 6 * (p[0] - p[1])  # pair distance 0.03–0.17
    e0, _ = target.energy_and_grad(x)
    assert float(e0[1:].min()) > 1e6
    c = target.counter.count
    start = init_state(target, x)
    repaired, info = repair(target, start, 1000.0, 200, 0.01)
    assert info["repaired"] == 5 and info["still_above_threshold"] == 0
    assert torch.all(repaired.energy <= 1000.0) and target.counter.count > c + 6
    assert torch.equal(repaired.position[0], target.project(x)[0])
    # the relaxation with repair off keeps them high
    res = relax(target, x, torch.Generator().manual_seed(0),
                RelaxConfig(n_steps=20, adapt_steps=10, step_size=1e-4, repair_above=None))
    assert float(res.energy[1:].min()) > 1000.0


class _DivergingModel:
    """MIX_1D whose terms turn to NaN below t = 0.5 (a drift that blew up every particle)."""

    dim = MIX_1D.dim

    def terms(self, x, t, *args, **kwargs):
        terms = MIX_1D.terms(x, t, *args, **kwargs)
        if t < 0.5:
            terms = dataclasses.replace(terms, du_dt=torch.full_like(terms.du_dt, math.nan))
        return terms


def test_annealing_whose_every_weight_is_non_finite_fails_with_a_clear_message():
    # one non-finite particle is dropped (weight 0), but when none is left the run must say where
    # and why it stopped (a user saw "all importance weights are zero or non-finite" from deep in
    # the weights on aldp-fab, 2026-12-03), not carry NaN weights on
    cfg = AnnealConfig(n_steps=20, gamma=2.0, dtype="float64", tail="fk")
    with pytest.raises(RuntimeError, match=r"annealing diverged at t = .* no particle has a finite weight"):
        anneal(_DivergingModel(), 64, SCHEDULE, cfg, torch.Generator().manual_seed(0))
    # the sharded step (torchrun) shares the check: same message with one process
    g = torch.Generator().manual_seed(0)
    with pytest.raises(RuntimeError, match=r"annealing diverged at t = .* no particle has a finite weight"):
        sharded_anneal(_DivergingModel(), 64, SCHEDULE, cfg, g, g, DistContext())
