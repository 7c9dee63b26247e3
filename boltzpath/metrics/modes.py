"""Mode metrics and exact moments for the toy targets (SPEC §8): gmm40-like mixtures and manywell.

Mixtures (targets with ``n_modes``, ``mode_index`` and ``mode_weights``; gmm40: 40 equal modes):
- coverage = fraction of modes k with  n̂_k / n ≥ threshold · w_k  (threshold 1 %), modes assigned
  by ``target.mode_index`` (nearest mean);
- mode-weight TVD = ½ Σ_k |n̂_k / n − w_k|.

ManyWell (targets with ``n_wells`` and ``p_right()``): the 2^16 sign patterns of manywell32 cannot
all be populated at n = 10⁴, so modes are counted **per well**: each well has two modes
(x₁ < 0 with mass 1 − p, x₁ > 0 with mass p, p = P(x₁ > 0) = 0.8443 at T = 1):
- coverage = mean over wells of the fraction of its two sides holding ≥ threshold of their mass;
- mode-weight TVD = mean over wells of |P̂(x₁ > 0) − p| (the TVD of each well's two-point law);
- ``pattern_hit_ratio`` = (# distinct sign patterns among the samples) / (expected # for n exact
  samples) = Σ_k C(K,k) [1 − (1 − p^k (1 − p)^{K−k})^n]; ≈ 1 for an exact sampler, ≪ 1 for a
  sampler stuck in a few patterns.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.metrics.distributions import as_array


def _is_manywell(target) -> bool:
    return hasattr(target, "n_wells") and hasattr(target, "p_right")


def _is_mixture(target) -> bool:
    return hasattr(target, "n_modes") and hasattr(target, "mode_weights") and hasattr(target, "mode_index")


def has_modes(target) -> bool:
    """True for targets these metrics understand (mixtures and manywell)."""
    return _is_manywell(target) or _is_mixture(target)


def _mixture_weights(target) -> np.ndarray:
    w = target.mode_weights
    w = w() if callable(w) else w
    return np.asarray(torch.as_tensor(w, dtype=torch.float64).numpy(), dtype=np.float64)


def _samples(x, target) -> torch.Tensor:
    arr = as_array(x, "samples", ndim=2)
    if arr.shape[1] != target.dim:
        raise BadInput(f"samples have dimension {arr.shape[1]}, {target.name} has {target.dim}")
    return torch.from_numpy(arr)


def mode_fractions(x, target) -> tuple[np.ndarray, np.ndarray]:
    """(observed, expected) mode masses: mixtures (n_modes,); manywell (n_wells, 2) [left, right]."""
    xt = _samples(x, target)
    if _is_manywell(target):
        right = target.mode_index(xt).double().mean(0).numpy()
        p = float(target.p_right())
        obs = np.stack([1.0 - right, right], axis=1)
        exp = np.tile([1.0 - p, p], (obs.shape[0], 1))
        return obs, exp
    if _is_mixture(target):
        w = _mixture_weights(target)
        counts = np.bincount(target.mode_index(xt).numpy(), minlength=w.size)
        return counts / xt.shape[0], w
    raise BadInput(f"{getattr(target, 'name', 'target')} has no modes to count")


def mode_coverage(x, target, threshold: float = 0.01) -> float:
    """Fraction of modes holding ≥ ``threshold`` of their expected mass (per-well for manywell)."""
    obs, exp = mode_fractions(x, target)
    return float(np.mean(obs >= threshold * exp))


def mode_weight_tvd(x, target) -> float:
    """½ Σ_k |n̂_k/n − w_k| (mixtures); mean over wells of |P̂(x₁>0) − p| (manywell)."""
    obs, exp = mode_fractions(x, target)
    if _is_manywell(target):
        return float(np.mean(np.abs(obs[:, 1] - exp[:, 1])))
    return float(0.5 * np.abs(obs - exp).sum())


def expected_distinct_patterns(n_wells: int, p: float, n: int) -> float:
    """E[# distinct sign patterns] among n exact manywell samples: Σ_k C(K,k)[1 − (1 − π_k)^n]."""
    total = 0.0
    for k in range(n_wells + 1):
        pi_k = p**k * (1.0 - p) ** (n_wells - k)
        total += math.comb(n_wells, k) * -math.expm1(n * math.log1p(-pi_k))
    return total


def pattern_hit_ratio(x, target) -> float:
    """Distinct manywell sign patterns hit / expected number for the same n of exact samples."""
    if not _is_manywell(target):
        raise BadInput("pattern_hit_ratio applies to manywell targets only")
    xt = _samples(x, target)
    signs = target.mode_index(xt).numpy().astype(np.int64)
    codes = signs @ (1 << np.arange(signs.shape[1], dtype=np.int64))
    hit = np.unique(codes).size
    return hit / expected_distinct_patterns(target.n_wells, float(target.p_right()), xt.shape[0])


def exact_second_moment(target) -> float | None:
    """E‖x‖² under the target where it is known in closed form / by quadrature, else None.

    Mixture at its reference temperature: Σ_k w_k ‖μ_k‖² + d·std² (gmm40: mean ‖μ‖² + 2·std²).
    ManyWell: K·(E[x₁²] + T), E[x₁²] by quadrature of the 1-D marginal ∝ exp(−(x⁴ − 6x² − 0.5x)/T).
    """
    if _is_manywell(target):
        xs, dens = manywell_marginal_grid(target)
        ex1sq = float(np.trapezoid(xs**2 * dens, xs))
        return target.n_wells * (ex1sq + target.temperature / target.reference_temperature)
    if _is_mixture(target) and hasattr(target, "means") and hasattr(target, "std"):
        if target.temperature != target.reference_temperature:
            return None  # a tempered mixture is not a mixture of Gaussians
        w = _mixture_weights(target)
        mu = np.asarray(torch.as_tensor(target.means, dtype=torch.float64).numpy())
        return float(w @ (mu**2).sum(1) + target.dim * float(target.std) ** 2)
    return None


def manywell_marginal_grid(target) -> tuple[np.ndarray, np.ndarray]:
    """(grid, normalised density) of one manywell x₁ marginal at the target's temperature."""
    if not _is_manywell(target):
        raise BadInput("manywell_marginal_grid applies to manywell targets only")
    # The target owns its quadrature grid (used for log Z, p_right and the exact sampler).
    xs, dens = target.marginal_grid()
    return xs, dens / np.trapezoid(dens, xs)
