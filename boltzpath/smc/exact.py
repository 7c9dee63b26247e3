"""The exact VE-noised model of an isotropic Gaussian mixture (reference for the SMC tests).

p₀ = Σ_k π_k N(μ_k, s_k² I) in d dimensions. Under x_t = x₀ + σ(t)ε the noised density is again
a mixture, p_t = Σ_k π_k N(μ_k, v_k(t) I) with v_k = s_k² + σ(t)², so everything is closed form.
With a_k = (μ_k − x)/v_k, log-densities ℓ_k = log π_k − (d/2) log(2π v_k) − ‖x − μ_k‖²/(2v_k)
and responsibilities r_k = softmax_k(ℓ_k):

    U_t(x)   = −log p_t(x) = −logsumexp_k ℓ_k
    s_t(x)   = ∇ log p_t = Σ_k r_k a_k,                 ∇U_t = −s_t
    ∇·s_t    = Σ_k r_k (−d/v_k + ‖a_k‖²) − ‖s_t‖²
    ∂U_t/∂t  = −g²(t) Σ_k r_k (‖x − μ_k‖²/(2v_k²) − d/(2v_k))      (dv_k/dt = dσ²/dt = g²)

All in float64. ``tempered_density(grid, gamma)`` gives p₀^γ on a grid for quadrature checks.
"""

from __future__ import annotations

import math

import torch

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.errors import BadInput
from boltzpath.smc.model import ModelTerms


class GaussianMixtureVE:
    """Closed-form U_t, score, ∂U/∂t and ∇·s of a noised isotropic Gaussian mixture."""

    def __init__(self, weights, means, stds, schedule: KarrasSchedule) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.stds = torch.as_tensor(stds, dtype=torch.float64)
        if self.means.ndim == 1:
            self.means = self.means[:, None]
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.stds.shape != (k,):
            raise BadInput("weights and stds must have one entry per mixture component")
        if (self.weights <= 0).any() or (self.stds <= 0).any():
            raise BadInput("mixture weights and stds must be > 0")
        self.weights = self.weights / self.weights.sum()
        self.dim, self.schedule = d, schedule

    def _parts(self, x: torch.Tensor, t: float):
        x = x.to(torch.float64)
        sigma = float(self.schedule.sigma(float(t)))
        v = self.stds**2 + sigma**2  # (K,)
        diff = self.means[None] - x[:, None, :]  # (B, K, d): μ_k − x
        sq = (diff**2).sum(-1)  # (B, K)
        ell = torch.log(self.weights) - 0.5 * self.dim * torch.log(2 * math.pi * v) - sq / (2 * v)
        log_p = torch.logsumexp(ell, dim=1)
        r = torch.exp(ell - log_p[:, None])
        a = diff / v[None, :, None]
        return v, sq, log_p, r, a

    def energy(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return -self._parts(x, t)[2]

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        _, _, _, r, a = self._parts(x, t)
        return (r[..., None] * a).sum(1)

    def grad_energy(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return -self.score(x, t)

    def dU_dt(self, x: torch.Tensor, t: float) -> torch.Tensor:
        v, sq, _, r, _ = self._parts(x, t)
        g2 = float(self.schedule.g2(float(t)))
        return -g2 * (r * (sq / (2 * v**2) - self.dim / (2 * v))).sum(1)

    def divergence(self, x, t, method="exact", generator=None, n_probes: int = 1) -> torch.Tensor:
        v, _, _, r, a = self._parts(x, t)
        s = (r[..., None] * a).sum(1)
        return (r * (-self.dim / v + (a**2).sum(-1))).sum(1) - (s**2).sum(-1)

    def terms(self, x, t, method="exact", generator=None, n_probes: int = 1) -> ModelTerms:
        s = self.score(x, t)
        return ModelTerms(s, -s, self.dU_dt(x, t), self.divergence(x, t))

    # ----------------------------------------------------------------- references
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Exact draws from p₀ (float64, (n, d))."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k, None] * z

    def tempered_density(self, grid: torch.Tensor, gamma: float) -> torch.Tensor:
        """Unnormalised p_{t=0}(x)^γ on points ``grid`` (m, d) (float64).

        t = 0 is σ = σ_min (the end of the reverse SDE), so this is the density the annealer targets.
        """
        u = self.energy(grid, 0.0)
        return torch.exp(-gamma * (u - u.min()))
