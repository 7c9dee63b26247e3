"""Distances between a sample set and a reference set (SPEC §8): 1-D OT, coordinate W2, MMD, TVD.

Conventions (stated once, used everywhere):
- ``W_p = (OT cost)^(1/p)`` with cost |a − b|^p; W2 is the **square root** of the optimal
  transport cost (DEM logged the squared value — we never do).
- 1-D OT is exact: W_p^p = ∫₀¹ |F⁻¹(u) − G⁻¹(u)|^p du over the empirical quantile functions,
  which handles unequal sample sizes without resampling.
- Coordinate W2 solves the discrete OT problem exactly with POT (``ot.emd2``) on the squared
  Euclidean cost matrix, uniform weights, and returns √cost.
- MMD is the unbiased estimate of MMD² with a Gaussian kernel k(x, y) = exp(−‖x − y‖² / (2h²))
  summed over the bandwidths h (default: the median pairwise distance of the pooled set); it can be
  slightly negative when the two sets come from the same distribution.
- Histogram TVD uses bins spanning the *reference* range plus two overflow bins, so mass a sampler
  puts outside the reference support counts fully as disagreement.

Inputs are torch tensors or numpy arrays; outputs are plain Python floats.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from boltzpath.errors import BadInput

HIGH_ENERGY_THRESHOLD = 1000.0  # E/kT above which a sample counts as "exploded" (SPEC §8)


def as_array(x, name: str = "input", ndim: int | None = None) -> np.ndarray:
    """float64 numpy copy of a tensor/array, with a shape check and a finiteness check."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise BadInput(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise BadInput(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise BadInput(f"{name} contains non-finite values")
    return arr


def wasserstein_1d(a, b, p: int = 2) -> float:
    """Exact W_p between two 1-D empirical measures: (∫₀¹ |F⁻¹(u) − G⁻¹(u)|^p du)^(1/p).

    ``a`` (n,), ``b`` (m,). The integral is a finite sum over the merged quantile breakpoints
    {i/n} ∪ {j/m}; on each piece both quantile functions are constant.
    """
    if p < 1:
        raise BadInput(f"p must be >= 1, got {p}")
    a = np.sort(as_array(a, "first sample").reshape(-1))
    b = np.sort(as_array(b, "second sample").reshape(-1))
    n, m = a.size, b.size
    if n == m:
        cost = float(np.mean(np.abs(a - b) ** p))
    else:
        u = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
        du = np.diff(np.concatenate([[0.0], u]))
        mid = u - 0.5 * du
        qa = a[np.minimum((mid * n).astype(np.int64), n - 1)]
        qb = b[np.minimum((mid * m).astype(np.int64), m - 1)]
        cost = float(np.sum(du * np.abs(qa - qb) ** p))
    return cost ** (1.0 / p)


def energy_w(e_samples, e_ref, p: int = 1) -> float:
    """Energy W1 (p=1) or W2 (p=2, √ of the OT cost) between E/kT samples and reference E/kT."""
    if p not in (1, 2):
        raise BadInput(f"energy_w supports p = 1 or 2, got {p}")
    return wasserstein_1d(e_samples, e_ref, p=p)


def high_energy_fraction(energy, threshold: float = HIGH_ENERGY_THRESHOLD) -> float:
    """Fraction of samples with E/kT > threshold or a non-finite energy."""
    if isinstance(energy, torch.Tensor):
        energy = energy.detach().cpu().numpy()
    e = np.asarray(energy, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise BadInput("energy is empty")
    bad = ~np.isfinite(e) | (np.nan_to_num(e, nan=np.inf) > threshold)
    return float(bad.mean())


def coordinate_w2(x, y, num_iter_max: int = 10_000_000) -> float:
    """W2 = √(min_π Σ π_ij ‖x_i − y_j‖²), exact discrete OT (POT ``emd2``), uniform weights.

    ``x`` (n, dim), ``y`` (m, dim). Memory and time grow as n·m (5000 × 5000 ≈ 5 s, 200 MB).
    """
    import ot

    x = as_array(x, "samples", ndim=2)
    y = as_array(y, "reference", ndim=2)
    if x.shape[1] != y.shape[1]:
        raise BadInput(f"dimension mismatch: samples {x.shape[1]}, reference {y.shape[1]}")
    cost = ot.dist(x, y, metric="sqeuclidean")
    wa = np.full(x.shape[0], 1.0 / x.shape[0])
    wb = np.full(y.shape[0], 1.0 / y.shape[0])
    return math.sqrt(max(float(ot.emd2(wa, wb, cost, numItermax=num_iter_max)), 0.0))


def median_bandwidth(x, y, max_points: int = 2000) -> float:
    """Median pairwise Euclidean distance of the pooled set (first ``max_points`` of each)."""
    z = torch.cat([torch.as_tensor(x[:max_points]), torch.as_tensor(y[:max_points])]).double()
    d = torch.cdist(z, z)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    return float(d[iu[0], iu[1]].median())


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, bandwidths, exclude_diag: bool, block: int = 2048):
    """Σ_ij Σ_h exp(−‖a_i − b_j‖²/(2h²)), optionally without i = j, computed in row blocks."""
    total = 0.0
    for s in range(0, a.shape[0], block):
        d2 = torch.cdist(a[s:s + block], b).pow(2)
        k = sum(torch.exp(-d2 / (2.0 * h * h)) for h in bandwidths)
        if exclude_diag:
            rows = torch.arange(k.shape[0])
            k[rows, rows + s] = 0.0
        total += float(k.sum())
    return total


def mmd(x, y, bandwidths=None) -> float:
    """Unbiased MMD² with a (sum of) Gaussian kernel(s) k(x, y) = exp(−‖x − y‖²/(2h²)).

    MMD²_u = 1/(n(n−1)) Σ_{i≠j} k(x_i,x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i,y_j) − 2/(nm) Σ_ij k(x_i,y_j).
    ``bandwidths=None`` uses h = median pairwise distance of the pooled set.
    """
    xa = torch.from_numpy(as_array(x, "samples", ndim=2))
    ya = torch.from_numpy(as_array(y, "reference", ndim=2))
    if xa.shape[1] != ya.shape[1]:
        raise BadInput(f"dimension mismatch: samples {xa.shape[1]}, reference {ya.shape[1]}")
    n, m = xa.shape[0], ya.shape[0]
    if n < 2 or m < 2:
        raise BadInput("MMD needs at least 2 points in each set")
    hs = [median_bandwidth(xa, ya)] if bandwidths is None else [float(h) for h in np.atleast_1d(bandwidths)]
    if not all(h > 0 for h in hs):
        raise BadInput(f"MMD bandwidths must be > 0, got {hs}")
    kxx = _kernel_sum(xa, xa, hs, exclude_diag=True) / (n * (n - 1))
    kyy = _kernel_sum(ya, ya, hs, exclude_diag=True) / (m * (m - 1))
    kxy = _kernel_sum(xa, ya, hs, exclude_diag=False) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


def second_moment(x) -> float:
    """E‖x‖², the plain sample mean of the squared norm."""
    xa = as_array(x, "samples", ndim=2)
    return float(np.mean(np.sum(xa * xa, axis=1)))


def relative_error_second_moment(x, ref_value_or_ref_samples) -> float:
    """|E‖x‖² − ref| / ref, where ref is a number or the E‖y‖² of reference samples y."""
    ref = ref_value_or_ref_samples
    if isinstance(ref, (torch.Tensor, np.ndarray)) and np.ndim(ref) == 2:
        ref = second_moment(ref)
    ref = float(ref)
    if not ref > 0:
        raise BadInput(f"reference second moment must be > 0, got {ref}")
    return abs(second_moment(x) - ref) / ref


def tvd_hist(a, b, bins: int = 200) -> float:
    """½ Σ_k |p_k − q_k| over ``bins`` equal bins spanning the range of the reference ``b``.

    Two extra overflow bins collect what falls below / above that range. Not symmetric in (a, b).
    """
    a = as_array(a, "samples").reshape(-1)
    b = as_array(b, "reference").reshape(-1)
    lo, hi = float(b.min()), float(b.max())
    if hi <= lo:
        hi = lo + 1.0
    p = _binned(a, lo, hi, bins) / a.size
    q = _binned(b, lo, hi, bins) / b.size
    return float(0.5 * np.abs(p - q).sum())


def _binned(v: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Counts in [below lo, ``bins`` equal bins of [lo, hi] (hi included), above hi]."""
    k = np.floor((v - lo) / (hi - lo) * bins).astype(np.int64)
    k[v == hi] = bins - 1
    k = np.clip(k, -1, bins) + 1
    return np.bincount(k, minlength=bins + 2).astype(np.float64)
