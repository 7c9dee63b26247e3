"""Is a sample set at the target's equilibrium? The configurational temperature.

For any density p ∝ exp(−U) with U twice differentiable and vanishing boundary terms, integration by
parts gives the exact identity E_p[|∇U|²] = E_p[ΔU]. So the ratio

    T_conf / T = mean(|∇U|²) / mean(ΔU),     U = E/kT at the target's temperature,

is 1 for exact samples. A set drawn at a temperature T' (or from an integrator that heats the stiff
modes) gives ≈ T'/T: for a harmonic mode U = kx²/2 sampled with variance (T'/T)/k, |∇U|² averages
k·T'/T and ΔU is k. The stiffest modes (bond vibrations of a molecule) dominate both sums, so the
ratio is most sensitive to exactly what finite-step MD gets wrong, and it needs no reference and no
model: a reference set can be checked against the energy function it claims to sample.

The Laplacian is exact (``smc.divergence``'s exact trace of ∇U: one backward pass per coordinate),
so the cost is about ``dim`` energy-gradient evaluations per frame; ``max_n`` frames are used.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.smc.divergence import divergence


def laplacian_and_grad_sq(target, x: torch.Tensor, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: (ΔU, |∇U|²) of U = target.energy (E/kT), exact (float64): ΔU is the exact
    divergence of ∇U (``smc.divergence``)."""

    def grad_u(pos: torch.Tensor) -> torch.Tensor:
        (grad,) = torch.autograd.grad(target.energy(pos).sum(), pos, create_graph=True)
        return grad

    lap_all, g2_all = [], []
    for start in range(0, x.shape[0], chunk):
        lap, grad = divergence(grad_u, x[start:start + chunk].detach().to(torch.float64), "exact")
        lap_all.append(lap.cpu().numpy())
        g2_all.append((grad ** 2).sum(1).cpu().numpy())
    return np.concatenate(lap_all), np.concatenate(g2_all)


def configurational_temperature(target, x, max_n: int = 1000, seed: int = 0) -> dict:
    """``{"value": mean|∇U|² / meanΔU, "standard_error", "n"}`` on up to ``max_n`` frames of ``x``
    (a random subset, ``seed``). 1 for exact samples; the standard error is the delta-method one of a
    ratio of two correlated means. Non-finite frames are refused."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if x.ndim != 2 or x.shape[1] != target.dim:
        raise BadInput(f"configurational_temperature: expected frames of shape (n, {target.dim}), "
                       f"got {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise BadInput("configurational_temperature needs at least 2 frames")
    if not torch.isfinite(x).all():
        raise BadInput("configurational_temperature: non-finite coordinates")
    pick = np.random.default_rng(seed).permutation(x.shape[0])[:max_n]
    lap, g2 = laplacian_and_grad_sq(target, x[torch.as_tensor(pick)])
    ok = np.isfinite(lap) & np.isfinite(g2)
    lap, g2 = lap[ok], g2[ok]
    n = len(lap)
    if n < 2 or lap.mean() <= 0:
        return {"value": float("nan"), "standard_error": float("nan"), "n": n}
    ratio = g2.mean() / lap.mean()
    cov = np.cov(g2, lap)
    rel_var = (cov[0, 0] / g2.mean() ** 2 + cov[1, 1] / lap.mean() ** 2
               - 2 * cov[0, 1] / (g2.mean() * lap.mean()))
    return {"value": float(ratio), "standard_error": float(ratio * math.sqrt(max(rel_var, 0.0) / n)), "n": n}
