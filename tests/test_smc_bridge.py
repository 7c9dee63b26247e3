"""The tempered bridge (``boltzpath.smc.bridge``) must carry particles from a *wrong* model density
exp(−γU'(·, σ_min)) to the true target p^γ without bias.

Set-up: the two-component mixture of tests/test_smc_tail.py at t = 0 (σ_min = 0.05), γ = 2; the model
energy is U' = U + tanh(x) (the perturbation of ``PerturbedMixture`` at t = 0), which moves about
a third of p^γ's mass on x > 0 away. Particles are drawn *exactly* from exp(−γU') (inverse CDF on a
fine grid), so any error in the result is the bridge's own.
"""

import math

import torch
from test_smc_tail import GAMMA, MIX, PerturbedMixture

from boltzpath.smc.bridge import BridgeSettings, bridge

GRID = torch.linspace(-15, 15, 30001, dtype=torch.float64)[:, None]


class _Model:
    """U'(x, t) at t = 0 with its gradient (the bridge reads U_η at σ_min only)."""

    def __init__(self, inner):
        self.inner = inner

    def energy(self, x, t):
        return self.inner.energy(x.double(), t)

    def grad_energy(self, x, t):
        xg = x.double().detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.energy(xg, t).sum(), xg)
        return g


class _Target:
    """E/kT = γ·U(x, 0): the true tempered mixture p^γ (the bridge's β = 1 end)."""

    def __init__(self):
        self.evaluations = 0

    @staticmethod
    def project(v):
        return v

    def energy_and_grad(self, x):
        self.evaluations += x.shape[0]
        xg = x.double().detach().requires_grad_(True)
        e = GAMMA * MIX.energy(xg, 0.0)
        (g,) = torch.autograd.grad(e.sum(), xg)
        return e.detach(), g


def _p_positive(log_density):
    dens = torch.exp(log_density - log_density.max())
    return float(dens[GRID[:, 0] > 0].sum() / dens.sum())


def _exact_draws(model, n, gen, gamma=GAMMA):
    logp = -gamma * model.energy(GRID, 0.0)
    p = torch.exp(logp - logp.max())
    idx = torch.multinomial(p / p.sum(), n, replacement=True, generator=gen)
    h = float(GRID[1, 0] - GRID[0, 0])
    return GRID[idx] + h * (torch.rand(n, 1, generator=gen, dtype=torch.float64) - 0.5)


def _replicas(settings, reps=8, n=1000):
    wrong = _Model(PerturbedMixture(MIX))
    out, infos = [], []
    for r in range(reps):
        gen = torch.Generator().manual_seed(900 + r)
        x0 = _exact_draws(wrong, n, gen)
        w0 = torch.zeros(n, dtype=torch.float64)
        x, _, _, info = bridge(wrong, x0, w0, _Target(), GAMMA, settings, gen)
        out.append(float((x[:, 0] > 0).double().mean()))
        infos.append(info)
    return torch.tensor(out, dtype=torch.float64), infos


def test_bridge_recovers_the_true_tempered_density_from_a_wrong_model():
    p_true = _p_positive(-GAMMA * MIX.energy(GRID, 0.0))
    p_model = _p_positive(-GAMMA * PerturbedMixture(MIX).energy(GRID, 0.0))
    assert abs(p_model - p_true) > 0.05  # the model is visibly wrong (0.232 vs 0.0072)
    values, infos = _replicas(BridgeSettings(moves=5, step_size=0.01))
    # 4 standard errors of the replica mean (MC + resampling noise); no discretisation allowance:
    # every move is an exact Metropolis step, so the only error is Monte Carlo. That error is large
    # and this is not a slack tolerance: MALA (step 0.01) hardly crosses the barrier at x = 0, so all
    # of p^γ's mass on x > 0 rides on the K ~ Binomial(1000, 0.0072) ≈ 7 initial draws there. With
    # p̂ = ρK / (ρK + n − K), ρ = 41.6 (the two modes' odds ratio), summing over K gives a per-replica
    # sd of 0.066 (+ 0.013 binomial resampling noise → 0.068; the 8 replicas here: 0.064, not the
    # 0.013 of 1000 independent draws), so 4 s.e. ≈ 4 · 0.068/√8 ≈ 0.096 (here 0.091), and a
    # self-normalisation bias E[p̂] − p = −0.0055, which the + 0.005 is about. At these seeds the
    # mean is 0.197 vs 0.232 (−1.6 s.e.) and tol = 0.096; more replicas (≈ 0.05 s each) would be
    # the way to a tighter check.
    tol = 4 * float(values.std()) / math.sqrt(len(values)) + 0.005
    assert abs(float(values.mean()) - p_true) < tol, (float(values.mean()), p_true, tol)
    assert all(i["betas"][-1] == 1.0 and i["reached_by_moves"] for i in infos)
    assert all(len(i["betas"]) > 1 for i in infos)  # the step really was split into levels


def test_bridge_with_a_level_cap_still_ends_on_the_target():
    # one level then the remaining importance step: still properly weighted (larger noise, no bias)
    p_true = _p_positive(-GAMMA * MIX.energy(GRID, 0.0))
    values, infos = _replicas(BridgeSettings(moves=2, step_size=0.01, max_levels=1), reps=8)
    tol = 4 * float(values.std()) / math.sqrt(len(values)) + 0.005
    assert abs(float(values.mean()) - p_true) < tol
    assert not any(i["reached_by_moves"] for i in infos)


def test_bridge_excludes_configurations_above_the_high_energy_flag():
    wrong = _Model(PerturbedMixture(MIX))
    gen = torch.Generator().manual_seed(3)
    x0 = _exact_draws(wrong, 400, gen)
    x0[:100] = 14.0  # far out: E/kT = γU(14) is far above a flag of 50
    x, _, _, info = bridge(wrong, x0, torch.zeros(400, dtype=torch.float64), _Target(), GAMMA,
                              BridgeSettings(moves=2, step_size=0.01, high_energy=50.0), gen)
    assert info["excluded_high_energy"] == 100
    assert float(GAMMA * MIX.energy(x, 0.0).max()) <= 50.0


def test_bridge_repairs_a_population_that_overlaps_entirely_and_reports_it():
    # every particle above the flag (a failed model): the bridge repairs them by steepest descent
    # (reported) instead of failing, and ends below the flag
    wrong = _Model(PerturbedMixture(MIX))
    gen = torch.Generator().manual_seed(4)
    x0 = torch.full((200, 1), 14.0, dtype=torch.float64) + 0.1 * torch.rand(200, 1, generator=gen,
                                                                             dtype=torch.float64)
    x, _, _, info = bridge(wrong, x0, torch.zeros(200, dtype=torch.float64), _Target(), GAMMA,
                           BridgeSettings(moves=2, step_size=0.01, high_energy=50.0), gen)
    assert info["repaired_before_bridge"] == 200 and info["betas"][-1] == 1.0
    assert float(GAMMA * MIX.energy(x, 0.0).max()) <= 50.0


def _variance_left_mode(log_density):
    """Var[x | x < 0] of a density on GRID: the width (temperature) of the dominant mode at x = −2."""
    dens = torch.exp(log_density - log_density.max()) * (GRID[:, 0] < 0)
    m = (dens[:, None] * GRID).sum() / dens.sum()
    return float((dens * (GRID[:, 0] - m) ** 2).sum() / dens.sum())


def test_bridge_from_an_overshot_colder_density_ends_on_the_target():
    # PITA's anneal.overshoot: the SMC hands the bridge particles from exp(−γ'U'), γ' = 1.5γ — a colder
    # density than the target's, with the wrong model U' — and tells it γ'. The bridge must still end
    # on p^γ. Statistic: Var[x | x < 0], the dominant mode's width, 0.0486 under p^γ and 0.0305 at
    # the start (grid values). Replica mean of 8 (1000 particles each), tolerance 4 standard errors
    # (≈ 0.0026 at these seeds; mean 0.0472). Telling the bridge γ instead of γ' (the wiring bug this
    # guards against) ends at 0.0451 ± 0.0003 s.e. and fails it.
    wrong, over = _Model(PerturbedMixture(MIX)), 1.5
    v_true = _variance_left_mode(-GAMMA * MIX.energy(GRID, 0.0))
    v_start = _variance_left_mode(-over * GAMMA * wrong.energy(GRID, 0.0))
    assert v_true - v_start > 0.01  # the start is visibly colder
    values = []
    for r in range(8):
        gen = torch.Generator().manual_seed(700 + r)
        x0 = _exact_draws(wrong, 1000, gen, gamma=over * GAMMA)
        x, _, _, info = bridge(wrong, x0, torch.zeros(1000, dtype=torch.float64), _Target(), over * GAMMA,
                               BridgeSettings(moves=5, step_size=0.01), gen)
        assert info["reached_by_moves"]
        values.append(float(x[x[:, 0] < 0, 0].var()))
    v = torch.tensor(values, dtype=torch.float64)
    tol = 4 * float(v.std()) / math.sqrt(len(v))
    assert abs(float(v.mean()) - v_true) < tol, (float(v.mean()), v_true, v_start, tol)
