"""Choosing the divergence estimator of the FK weights by its measured variance (``divergence: auto``).

The Hutchinson estimate of ∇·s enters each step's log-weight increment as γ(Δh/2)·∇·s, so a probe
of variance v(x, t) adds γ²(Δh/2)²·v/P of noise to that step's log-weight (P probes, independent
across steps). Over the weighted steps the log-weights collect

    V(P) = Σ_k γ²(Δh_k/2)² v̄(t_k) / P          (nats², per particle)

``choose_divergence`` measures v̄ at a few times on noised data (x₀ + σ(t)ε from the stage's
training buffer, an approximation of the particles at t), then takes the fewest probes with
V(P) ≤ ``budget``; when that needs as many vector–Jacobian products as the exact trace (d), the
exact trace is used. The report records v̄, V(1) and the choice, so the decision is auditable.
"""

from __future__ import annotations

import math

import torch

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.smc.divergence import exact_at


def choose_divergence(model, x0: torch.Tensor, schedule: KarrasSchedule, n_steps: int, gamma: float,
                      weighted_until_t: float, generator: torch.Generator, budget: float = 0.1,
                      n_times: int = 4, repeats: int = 8,
                      exact_below_t: float = 0.0) -> tuple[str, int, dict]:
    """(method, n_probes, report) for annealing ``model`` with these settings (module docstring).

    ``x0``: a few data points (m, d) at the model's temperature; ``weighted_until_t``: increments
    are accumulated on steps that end at t ≥ this (0: all steps); ``exact_below_t``: steps that
    start at t ≤ this take the exact trace anyway (``AnnealConfig.exact_below_t``), so their probe
    noise is not counted.
    """
    d = x0.shape[1]
    grid = schedule.time_grid(n_steps).tolist()
    steps = [k for k in range(n_steps) if grid[k + 1] >= weighted_until_t
             and not exact_at(grid[k], exact_below_t)]
    if not steps:
        return "hutchinson", 1, {"reason": "no weighted step uses the probes"}
    probe_idx = sorted({steps[round(i * (len(steps) - 1) / max(n_times - 1, 1))] for i in range(n_times)})
    v_at = {}
    for k in probe_idx:
        t = grid[k]
        sigma = float(schedule.sigma(t))
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        xt = x0 + sigma * getattr(model, "_project", lambda v: v)(eps)
        est = torch.stack([model.divergence(xt, t, "hutchinson", generator, 1) for _ in range(repeats)])
        v_at[k] = float(est.to(torch.float64).var(0).mean())
    total = 0.0
    for k in steps:  # piecewise constant between the measured times (nearest measured step)
        near = min(probe_idx, key=lambda j: abs(j - k))
        dh = float(schedule.sigma(grid[k]) ** 2 - schedule.sigma(grid[k + 1]) ** 2)
        total += (gamma * dh / 2) ** 2 * v_at[near]
    probes = max(1, math.ceil(total / budget))
    method = "exact" if probes >= d else "hutchinson"
    report = {"variance_per_probe": {f"{grid[k]:.3f}": v for k, v in v_at.items()},
              "log_weight_noise_var_one_probe": total, "budget": budget, "dim": d,
              "chosen": method, "n_probes": probes if method == "hutchinson" else None}
    return method, (probes if method == "hutchinson" else 1), report
