"""Shared test fixtures: seeded generators, analytic targets with exact answers, ESS errors.

Import from test files as ``from fixtures import ...`` (pytest puts ``tests/`` on ``sys.path``
because the folder has no ``__init__.py``).

Targets (all ``boltzpath.targets.base.Target`` subclasses, reduced units, re-temperable):

* ``CorrelatedGaussian`` — anisotropic, correlated N(μ, Σ) in 2-D or 3-D; normalised so that
  log Z = 0 at T = 1; at temperature T it is N(μ, TΣ).
* ``AsymmetricDoubleWell`` — 1-D E(x) = a x⁴ − b x² + c x; moments, P(x > 0) and log Z by
  ``scipy.integrate.quad``; exact sampler by inverse CDF on a fine grid.
* ``TwoGaussians1D`` — 1-D mixture 0.9·N(−4, 1) + 0.1·N(+4, 1) (an 8 kT barrier: local
  samplers do not cross it, so an unbalanced-mode bias shows up in the mode weights).
* ``SpikeSlab`` — ½N(0, 0.3²I) + ½N(0, I) in 5-D: MALA's acceptance depends on where a chain is,
  so state-dependent step adaptation shows up as bias; exact sampler, exact noised score and exact
  posterior p(x | x_t) under x_t = αx + σε.

``ess_standard_error`` gives the standard error of a mean from the effective sample size
(multi-chain autocorrelation, Geyer's initial positive + monotone sequence), so statistical
tests can state a tolerance of "k standard errors".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate
from scipy.stats import norm

from boltzpath.targets.base import Target
from boltzpath.targets.toy import GaussianMixture


def seeded(seed: int = 0) -> torch.Generator:
    """A CPU torch generator with a fixed seed."""
    return torch.Generator().manual_seed(int(seed))


# ------------------------------------------------------------------------------ Gaussian
DEFAULT_MEAN_3D = (1.0, -2.0, 0.5)
#: eigenvalues 2.98, 1.18, 0.144: anisotropic (condition number ~ 21) and correlated
DEFAULT_COV_3D = ((2.0, 1.2, 0.3), (1.2, 1.5, -0.4), (0.3, -0.4, 0.8))


class CorrelatedGaussian(Target):
    """N(μ, Σ) at T = 1: E(x) = ½(x−μ)ᵀΣ⁻¹(x−μ) + ½ log det(2πΣ), so log Z(T=1) = 0."""

    name = "correlated-gaussian"

    def __init__(self, mean=DEFAULT_MEAN_3D, cov=DEFAULT_COV_3D, temperature: float | None = None):
        mean = torch.as_tensor(mean, dtype=torch.float64)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        super().__init__(mean.shape[0], temperature)
        self.mu = mean
        self.cov_ref = cov
        self.precision_ref = torch.linalg.inv(cov)
        self.chol_ref = torch.linalg.cholesky(cov)
        self._log_norm = 0.5 * float(torch.logdet(2 * math.pi * cov))

    def _reference_energy(self, x):
        d = x - self.mu.to(x)
        return 0.5 * ((d @ self.precision_ref.to(x)) * d).sum(-1) + self._log_norm

    @property
    def temperature_ratio(self) -> float:
        return 1.0 / self.beta_scale

    def mean(self) -> torch.Tensor:
        return self.mu.clone()

    def covariance(self) -> torch.Tensor:
        """Σ_T = T Σ at the current temperature."""
        return self.temperature_ratio * self.cov_ref

    def second_moment(self) -> torch.Tensor:
        """E[x_i²] per coordinate at the current temperature."""
        return torch.diagonal(self.covariance()) + self.mu**2

    def log_z(self) -> float:
        """log ∫ exp(−E/T) = −c/T + ½ log det(2πTΣ), c = ½ log det(2πΣ)."""
        t = self.temperature_ratio
        return -self._log_norm / t + 0.5 * float(torch.logdet(2 * math.pi * t * self.cov_ref))

    has_exact_sampler = True

    def exact_sample(self, n, generator, dtype=torch.float64):
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        chol = math.sqrt(self.temperature_ratio) * self.chol_ref
        return (self.mu + eps @ chol.T).to(dtype)

    def options(self):
        return {"mean": self.mu.tolist(), "cov": self.cov_ref.tolist()}


# ------------------------------------------------------------------------------ double well
class AsymmetricDoubleWell(Target):
    """1-D E(x) = a x⁴ − b x² + c x at T = 1 (defaults: 1, 2, 0.5 — barriers 0.5 and 1.5 kT).

    The deeper well is at x < 0 for c > 0. Use ``b=4, c=1`` for a hard case (≈ 5.5 kT barrier
    from the deep well) that local samplers cross rarely but parallel tempering handles.
    """

    name = "asymmetric-double-well"

    def __init__(self, a: float = 1.0, b: float = 2.0, c: float = 0.5, temperature: float | None = None):
        super().__init__(1, temperature)
        self.a, self.b, self.c = float(a), float(b), float(c)
        self._cache: dict[float, dict[str, float]] = {}

    def energy_1d(self, x):
        return self.a * x**4 - self.b * x**2 + self.c * x

    def _reference_energy(self, x):
        return self.energy_1d(x[:, 0])

    def _quad(self) -> dict[str, float]:
        """Z, E[x], E[x²], P(x > 0) at the current temperature by adaptive quadrature."""
        key = self.temperature
        if key not in self._cache:
            beta = self.beta_scale
            xs = np.linspace(-6, 6, 10_001)
            shift = float(np.min(self.energy_1d(xs)) * beta)  # keeps exp() in range

            def w(x):
                return math.exp(-beta * self.energy_1d(x) + shift)

            def q(f, lo=-np.inf, hi=np.inf):
                return integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]

            z = q(w)
            self._cache[key] = {
                "log_z": math.log(z) - shift,
                "mean": q(lambda x: x * w(x)) / z,
                "second_moment": q(lambda x: x * x * w(x)) / z,
                "p_positive": q(w, 0.0, np.inf) / z,
            }
        return self._cache[key]

    def mean(self) -> float:
        return self._quad()["mean"]

    def second_moment(self) -> float:
        return self._quad()["second_moment"]

    def p_positive(self) -> float:
        """P(x > 0) at the current temperature."""
        return self._quad()["p_positive"]

    def log_z(self) -> float:
        return self._quad()["log_z"]

    has_exact_sampler = True

    def exact_sample(self, n, generator, dtype=torch.float64):
        """Inverse CDF on a 200,001-point grid over [−6, 6] (mass outside is < 1e-12)."""
        xs = np.linspace(-6.0, 6.0, 200_001)
        log_u = -self.energy_1d(xs) * self.beta_scale
        dens = np.exp(log_u - log_u.max())
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(xs))])
        cdf /= cdf[-1]
        u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        return torch.from_numpy(np.interp(u, cdf, xs)).reshape(n, 1).to(dtype)

    def prior_sample(self, n, generator, dtype=torch.float32):
        return torch.randn(n, 1, generator=generator, dtype=torch.float64).to(dtype)

    def options(self):
        return {"a": self.a, "b": self.b, "c": self.c}


# ------------------------------------------------------------------------------ two Gaussians
class TwoGaussians1D(GaussianMixture):
    """0.9·N(−4, 1) + 0.1·N(+4, 1) by default (normalised; log Z = 0 at T = 1).

    ``mean``, ``second_moment`` and ``p_positive`` are exact at T = 1 (a tempered mixture is not
    a mixture of Gaussians with the same weights).
    """

    name = "two-gaussians-1d"

    def __init__(self, means=(-4.0, 4.0), std=1.0, weights=(0.9, 0.1), temperature=None):
        super().__init__([[m] for m in means], std, list(weights), temperature)

    def mean(self) -> float:
        return float((self.weights * self.means[:, 0]).sum())

    def second_moment(self) -> float:
        return float((self.weights * (self.means[:, 0] ** 2 + self.std**2)).sum())

    def p_positive(self) -> float:
        """P(x > 0) exactly (from the normal CDF), at T = 1."""
        mu = self.means[:, 0].numpy()
        return float((self.weights.numpy() * norm.sf(0.0, loc=mu, scale=self.std)).sum())


# ------------------------------------------------------------------------------ ESS
class SpikeSlab(Target):
    """½N(0, 0.3²I) + ½N(0, I) in 5 dimensions (module doc)."""

    name = "spike-slab"
    scales = (0.3, 1.0)

    def __init__(self):
        super().__init__(5)

    def _reference_energy(self, x):
        r2 = (x**2).sum(-1)
        c = torch.stack([-0.5 * r2 / s**2 - self.dim * math.log(s) for s in self.scales], -1)
        return -(torch.logsumexp(c, -1) - math.log(2))

    def exact_sample(self, n, g):
        z = torch.randn(n, self.dim, generator=g, dtype=torch.float64)
        return torch.where((torch.rand(n, generator=g) < 0.5)[:, None], 0.3 * z, z)

    def noised_score(self, x_t, alpha, sigma):
        """∇log p_t: p_t = ½N(0, (α²·0.3² + σ²)I) + ½N(0, (α² + σ²)I)."""
        x = x_t.clone().requires_grad_(True)
        var = [alpha**2 * s**2 + sigma**2 for s in self.scales]
        c = torch.stack([-0.5 * (x**2).sum(-1) / v - 0.5 * self.dim * math.log(v) for v in var], -1)
        (g,) = torch.autograd.grad(torch.logsumexp(c, -1).sum(), x)
        return g

    def exact_posterior(self, x_t, alpha, sigma, n, gen):
        """n draws of p(x | x_t) for one row x_t (1, d): component k is N(v_k α x_t/σ², v_k I),
        v_k = 1/(1/s_k² + α²/σ²), weighted by ½N(x_t; 0, (α²s_k² + σ²)I)."""
        r2 = float((x_t**2).sum())
        var = [alpha**2 * s**2 + sigma**2 for s in self.scales]
        logit = torch.tensor([-0.5 * r2 / v - 0.5 * self.dim * math.log(v) for v in var])
        k = torch.multinomial(torch.softmax(logit, 0), n, replacement=True, generator=gen)
        v = torch.tensor([1 / (1 / s**2 + alpha**2 / sigma**2) for s in self.scales], dtype=torch.float64)
        v = v[k, None]
        noise = torch.randn(n, self.dim, generator=gen, dtype=torch.float64)
        return v * alpha * x_t / sigma**2 + v.sqrt() * noise


@dataclass(frozen=True)
class MeanEstimate:
    """Mean, its standard error from the ESS, the ESS, and the integrated autocorrelation time."""

    mean: np.ndarray
    se: np.ndarray
    ess: np.ndarray
    tau: np.ndarray


def chains_view(x: torch.Tensor, chains: int) -> torch.Tensor:
    """Driver output (sample i = chain i % chains at time i // chains) as (steps, chains, ...)."""
    steps = x.shape[0] // chains
    return x[: steps * chains].reshape(steps, chains, *x.shape[1:])


def _autocovariance(f: np.ndarray) -> np.ndarray:
    """Per-chain autocovariance (biased, 1/n) via FFT; f has shape (steps, chains)."""
    n = f.shape[0]
    d = f - f.mean(axis=0, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    spec = np.fft.rfft(d, n=size, axis=0)
    return np.fft.irfft(spec * np.conj(spec), n=size, axis=0)[:n] / n


def _ess_1d(f: np.ndarray) -> tuple[float, float, float, float]:
    n, m = f.shape
    acov = _autocovariance(f).mean(axis=1)  # averaged over chains
    chain_means = f.mean(axis=0)
    w = acov[0] * n / (n - 1)  # mean within-chain variance
    b_over_n = chain_means.var(ddof=1) if m > 1 else 0.0
    var_plus = (n - 1) / n * w + b_over_n
    if var_plus <= 0:
        return float(f.mean()), 0.0, float(n * m), 1.0
    rho = 1.0 - (w - acov) / var_plus
    rho[0] = 1.0
    # Geyer: sums of adjacent pairs Γ_k = ρ_2k + ρ_2k+1 while positive, made non-increasing
    pairs = rho[: (n // 2) * 2].reshape(-1, 2).sum(axis=1)
    k_end = int(np.argmax(pairs <= 0)) if (pairs <= 0).any() else len(pairs)
    gam = np.minimum.accumulate(pairs[:k_end]) if k_end > 0 else np.array([1.0])
    tau = max(-1.0 + 2.0 * float(gam.sum()), 1.0 / math.log10(n * m + 10))
    ess = n * m / tau
    return float(f.mean()), math.sqrt(var_plus / ess), ess, tau


def ess_standard_error(samples: torch.Tensor | np.ndarray) -> MeanEstimate:
    """Standard error of the mean of each statistic from its multi-chain ESS.

    ``samples`` has shape (steps, chains) or (steps, chains, k) for k statistics. Method: the
    chain-averaged FFT autocorrelation combined with between-chain variance (the split-free
    multi-chain estimator of Gelman et al., BDA3 §11.5), truncated by Geyer's initial positive
    sequence and made monotone; τ = −1 + 2 Σ Γ_k, ESS = steps·chains/τ, SE = √(var/ESS).
    """
    a = samples.detach().cpu().double().numpy() if isinstance(samples, torch.Tensor) else np.asarray(
        samples, dtype=np.float64
    )
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[0] < 4:
        raise ValueError(f"expected (steps >= 4, chains[, k]) samples, got shape {a.shape}")
    out = np.array([_ess_1d(a[:, :, j]) for j in range(a.shape[2])])
    return MeanEstimate(mean=out[:, 0], se=out[:, 1], ess=out[:, 2], tau=out[:, 3])


def ar1_chains(rho: float, steps: int, chains: int, generator: torch.Generator) -> torch.Tensor:
    """Stationary AR(1) chains x_t = ρ x_{t−1} + √(1−ρ²) ξ_t (unit variance, τ = (1+ρ)/(1−ρ))."""
    x = torch.empty(steps, chains, dtype=torch.float64)
    x[0] = torch.randn(chains, generator=generator, dtype=torch.float64)
    scale = math.sqrt(1 - rho * rho)
    noise = torch.randn(steps, chains, generator=generator, dtype=torch.float64)
    for t in range(1, steps):
        x[t] = rho * x[t - 1] + scale * noise[t]
    return x


def z_scores(values: torch.Tensor, chains: int, exact) -> tuple[np.ndarray, MeanEstimate]:
    """(estimate − exact)/SE per statistic for driver-ordered ``values`` (n,) or (n, k)."""
    est = ess_standard_error(chains_view(values, chains))
    return (est.mean - np.asarray(exact, dtype=np.float64).reshape(-1)) / est.se, est


#: a DiKL run of a few seconds on gmm40 (12 iterations, 16-wide MLPs), for run-folder tests
DIKL_TINY = {
    "target": "gmm40",
    "generator": {"hidden": 16, "layers": 2, "emb_dim": 4, "scale": 20.0},
    "score_net": {"hidden": 16, "layers": 2, "emb_dim": 4, "scale": 20.0},
    "ddpm": {"steps": 10, "beta_end": 0.5},
    "posterior": {"n_importance": 4, "mala_steps": 3, "average_last": 2},
    "train": {"iterations": 12, "batch_size": 32, "dsm_steps": 2, "checkpoint_every": 5, "log_every": 2},
    "n_samples": 64,
    "eval_max_n": 64,
    "eval_noise_floors": False,
    "plots": False,
}
