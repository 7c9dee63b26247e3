"""Low-dimensional analytic targets with exact samplers: gmm40 and manywell32 (SPEC §2)."""

from __future__ import annotations

import math

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.targets.base import Target

GMM40_STD = math.log1p(math.e)  # softplus(1) = 1.31326...


def gmm40_means() -> torch.Tensor:
    """Means of the FAB/DEM/DiKL/DiGS 40-mode mixture: seed 0, (rand(40, 2) - 0.5) * 80."""
    g = torch.Generator().manual_seed(0)
    return (torch.rand(40, 2, generator=g) - 0.5) * 80.0


class GaussianMixture(Target):
    """Equal-or-weighted isotropic Gaussian mixture, normalised: log Z = 0 at T = 1."""

    name = "gaussian-mixture"

    def __init__(self, means, std, weights=None, temperature: float | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise BadInput("means must have shape (n_modes, dim)")
        super().__init__(means.shape[1], temperature)
        self.means = means
        self.std = float(std)
        k = means.shape[0]
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(
            weights, dtype=torch.float64
        )
        if w.shape != (k,) or (w <= 0).any():
            raise BadInput("weights must be positive with one per mode")
        self.weights = w / w.sum()

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    def _reference_energy(self, x: torch.Tensor) -> torch.Tensor:
        mu = self.means.to(x)
        d = self.dim
        sq = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
        log_norm = -0.5 * d * math.log(2 * math.pi * self.std**2)
        comp = self.weights.to(x).log()[None] + log_norm - 0.5 * sq / self.std**2
        return -torch.logsumexp(comp, dim=1)

    def mode_index(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest mean (the mode a sample belongs to)."""
        mu = self.means.to(x)
        return torch.cdist(x, mu).argmin(dim=1)

    @property
    def mode_weights(self) -> torch.Tensor:
        """Exact mode weights at the current temperature (modes assumed well separated)."""
        if self.temperature == self.reference_temperature:
            return self.weights.clone()
        # p^β: each component contributes w^β · (2πs²)^{d(1-β)/2} · ∫N^β ∝ w^β for equal stds
        w = self.weights ** self.beta_scale
        return w / w.sum()

    has_exact_sampler = True

    def exact_sample(self, n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
        if self.temperature != self.reference_temperature:
            raise BadInput(f"{self.name}: exact sampler only at T = {self.reference_temperature}")
        dev = generator.device  # draws on the generator's device (a CUDA generator: CUDA tensors)
        idx = torch.multinomial(self.weights.to(dev), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=dev)
        return (self.means.to(dev)[idx] + self.std * eps).to(dtype)

    def log_z(self) -> float:
        if self.temperature == self.reference_temperature:
            return 0.0
        raise BadInput(f"{self.name}: log Z known only at T = {self.reference_temperature}")

    def prior_sample(self, n, generator, dtype=torch.float32):
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64, device=generator.device)
        means = self.means.to(u.device)
        lo, hi = means.min(0).values, means.max(0).values
        return (lo + u * (hi - lo)).to(dtype)

    def options(self):
        return {}


class GMM40(GaussianMixture):
    """``gmm40``: 40 equal-weight isotropic Gaussians in 2-D, std softplus(1)."""

    name = "gmm40"

    def __init__(self, temperature: float | None = None):
        super().__init__(gmm40_means(), GMM40_STD, None, temperature)


# ---------------------------------------------------------------------------------- manywell
def _double_well_1d(x):
    return x**4 - 6 * x**2 - 0.5 * x


class ManyWell(Target):
    """``manywell32``: independent 2-D double wells, E = Σ_k [x₁⁴ − 6x₁² − 0.5x₁ + 0.5x₂²]."""

    name = "manywell32"

    def __init__(self, dim: int = 32, temperature: float | None = None):
        if dim % 2 or dim < 2:
            raise BadInput(f"manywell dim must be an even number >= 2, got {dim}")
        super().__init__(dim, temperature)
        self.n_wells = dim // 2
        self._grid_cache: dict[float, tuple[np.ndarray, np.ndarray, float]] = {}

    def _reference_energy(self, x):
        x1, x2 = x[:, 0::2], x[:, 1::2]
        return (_double_well_1d(x1) + 0.5 * x2**2).sum(-1)

    def energy_and_grad(self, x):
        x = self.check_input(x)
        e = self.energy(x)
        x1, x2 = x[:, 0::2], x[:, 1::2]
        g = torch.empty_like(x)
        g[:, 0::2] = 4 * x1**3 - 12 * x1 - 0.5
        g[:, 1::2] = x2
        return e.detach(), (g * self.beta_scale).detach()

    def _grid(self):
        """Fine grid, unnormalised density and 1-D normaliser of x₁ at the current temperature."""
        key = self.temperature
        if key not in self._grid_cache:
            xs = np.linspace(-6.0, 6.0, 400_001)
            log_u = -_double_well_1d(xs) * self.beta_scale
            shift = log_u.max()
            dens = np.exp(log_u - shift)
            z = np.trapezoid(dens, xs) * math.exp(shift)
            self._grid_cache[key] = (xs, dens, z)
        return self._grid_cache[key]

    def marginal_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(grid, unnormalised density) of one well's x₁ marginal at the current temperature."""
        xs, dens, _ = self._grid()
        return xs, dens

    def well_z(self) -> float:
        """∫ exp(-(x⁴ − 6x² − 0.5x)/T) dx by quadrature (11784.50927 at T = 1)."""
        return self._grid()[2]

    def log_z(self) -> float:
        t = 1.0 / self.beta_scale
        return self.n_wells * (math.log(self.well_z()) + 0.5 * math.log(2 * math.pi * t))

    def p_right(self) -> float:
        """P(x₁ > 0) in each well (0.8443 at T = 1)."""
        xs, dens, _ = self._grid()
        m = xs > 0
        return float(np.trapezoid(dens[m], xs[m]) / np.trapezoid(dens, xs))

    def mode_index(self, x):
        """Sign pattern of the x₁ coordinates, as 0/1 per well, shape (batch, n_wells)."""
        return (x[:, 0::2] > 0).long()

    has_exact_sampler = True

    def exact_sample(self, n, generator, dtype=torch.float64):
        xs, dens, _ = self._grid()
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(xs))])
        cdf /= cdf[-1]
        u = torch.rand(n, self.n_wells, generator=generator, dtype=torch.float64).numpy()
        x1 = np.interp(u, cdf, xs)
        t = 1.0 / self.beta_scale
        x2 = torch.randn(n, self.n_wells, generator=generator, dtype=torch.float64) * math.sqrt(t)
        out = torch.empty(n, self.dim, dtype=torch.float64)
        out[:, 0::2] = torch.from_numpy(x1)
        out[:, 1::2] = x2
        return out.to(dtype)

    def prior_sample(self, n, generator, dtype=torch.float32):
        return (2.0 * torch.randn(n, self.dim, generator=generator, dtype=torch.float64,
                                  device=generator.device)).to(dtype)

    def options(self):
        return {"dim": self.dim}
