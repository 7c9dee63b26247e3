"""The EDM/Karras variance-exploding noise schedule (SPEC §5).

VE diffusion x_t = x₀ + σ(t)·ε, t ∈ [0, 1], with

    σ(t) = (σ_min^{1/ρ} + t·(σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ,      ρ = 7,
    h(t) = σ(t)²,   g²(t) = dh/dt = 2σ(t)·ρ·(σ_min^{1/ρ} + t·Δ)^{ρ−1}·Δ,   Δ = σ_max^{1/ρ} − σ_min^{1/ρ}.

σ(0) = σ_min, σ(1) = σ_max. The reverse SDE runs t: 1 → 0 (see ``time_grid``). Training noise
levels do not come from σ(t) but from the EDM log-normal ln σ ~ N(p_mean, p_std²)
(``sample_training_sigma``).
"""

from __future__ import annotations

import math

import torch

from boltzpath.errors import BadInput


class KarrasSchedule:
    """σ(t), g²(t) = dσ²/dt, the reverse-time grid and the training noise distribution.

    ``sigma``/``g2``/``t_of_sigma`` accept a float or a tensor of any shape and return a tensor of
    the same shape (float64 for Python floats); all are differentiable in their argument, so
    ∂U/∂t = ∂U/∂σ · dσ/dt comes from autograd through ``sigma(t)``.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 80.0, rho: float = 7.0) -> None:
        if not (0 < sigma_min < sigma_max):
            raise BadInput(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if not rho > 0:
            raise BadInput(f"rho must be > 0, got {rho}")
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self._a = self.sigma_min ** (1.0 / self.rho)  # σ_min^{1/ρ}
        self._delta = self.sigma_max ** (1.0 / self.rho) - self._a  # σ_max^{1/ρ} − σ_min^{1/ρ}

    def __repr__(self) -> str:
        return f"KarrasSchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, rho={self.rho})"

    @staticmethod
    def _as_tensor(t) -> torch.Tensor:
        return t if isinstance(t, torch.Tensor) else torch.as_tensor(t, dtype=torch.float64)

    def sigma(self, t) -> torch.Tensor:
        """σ(t) = (σ_min^{1/ρ} + t(σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ, elementwise."""
        t = self._as_tensor(t)
        return (self._a + t * self._delta) ** self.rho

    def dsigma_dt(self, t) -> torch.Tensor:
        """dσ/dt = ρ·(σ_min^{1/ρ} + tΔ)^{ρ−1}·Δ (closed form)."""
        t = self._as_tensor(t)
        return self.rho * (self._a + t * self._delta) ** (self.rho - 1.0) * self._delta

    def g2(self, t) -> torch.Tensor:
        """g²(t) = dh/dt = dσ²/dt = 2σ(t)·dσ/dt (closed form; tested against autograd)."""
        return 2.0 * self.sigma(t) * self.dsigma_dt(t)

    def t_of_sigma(self, sigma) -> torch.Tensor:
        """Inverse of ``sigma``: t = (σ^{1/ρ} − σ_min^{1/ρ}) / Δ."""
        sigma = self._as_tensor(sigma)
        return (sigma ** (1.0 / self.rho) - self._a) / self._delta

    def time_grid(self, n_steps: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """n_steps + 1 equally spaced times t₀ = 1 > t₁ > … > t_n = 0 (descending, reverse time).

        Step k goes from ``grid[k]`` to ``grid[k+1]`` with ds = grid[k] − grid[k+1] = 1/n_steps > 0.
        Equal steps in t are the Karras spacing in σ (dense near σ_min).
        """
        if int(n_steps) < 1:
            raise BadInput(f"n_steps must be >= 1, got {n_steps}")
        return torch.linspace(1.0, 0.0, int(n_steps) + 1, dtype=dtype, device=device)

    def sigma_grid(self, n_steps: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """σ on ``time_grid(n_steps)``: σ_max → σ_min, n_steps + 1 values."""
        return self.sigma(self.time_grid(n_steps, dtype=dtype, device=device))

    @staticmethod
    def sample_training_sigma(
        n: int,
        generator: torch.Generator,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> torch.Tensor:
        """EDM training noise levels: ln σ ~ N(p_mean, p_std²), shape (n,)."""
        z = torch.randn(int(n), generator=generator, dtype=dtype, device=device)
        return torch.exp(p_mean + p_std * z)

    @staticmethod
    def training_sigma_cdf(sigma: float, p_mean: float = -1.2, p_std: float = 1.2) -> float:
        """P(σ < ``sigma``) under the training law ln σ ~ N(p_mean, p_std²)."""
        return 0.5 * math.erfc(-(math.log(sigma) - p_mean) / (p_std * math.sqrt(2.0)))

    @staticmethod
    def sample_training_sigma_below(
        n: int,
        generator: torch.Generator,
        sigma_max: float,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> torch.Tensor:
        """The same log-normal truncated to σ < ``sigma_max`` (inverse CDF, no rejection), shape (n,).

        Used by target score matching, which is only valid at small σ.
        """
        if not sigma_max > 0:
            raise BadInput(f"sigma_max must be > 0, got {sigma_max}")
        cdf_max = KarrasSchedule.training_sigma_cdf(sigma_max, p_mean, p_std)
        u = torch.rand(int(n), generator=generator, dtype=torch.float64, device=device) * cdf_max
        u = u.clamp_min(1e-300)
        log_sigma = p_mean + p_std * torch.special.ndtri(u)
        return torch.exp(log_sigma).clamp_max(sigma_max).to(dtype)
