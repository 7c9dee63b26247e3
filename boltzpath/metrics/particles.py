"""Metrics for particle systems (SPEC §8): interatomic distances and symmetry-aligned W2.

- ``distance_w2``: exact 1-D W2 (√ of the OT cost) between the pooled i<j pair distances of the
  samples and of the reference.
- ``distance_tvd``: histogram TVD (200 bins over the reference range + 2 overflow bins) of the same.
- ``aligned_w2``: W2 = √(min_π Σ π_ij c_ij) with c_ij = min_{P, R} ‖x_i − R·P·y_j‖², P a
  permutation of the particles and R a proper rotation (det = +1), both configurations centred.
  The inner minimum is found per pair by alternating Hungarian assignment (scipy
  ``linear_sum_assignment``) and Kabsch rotation from the best of a few principal-axes starts; it
  is a local optimum, i.e. c_ij is an upper bound of the true aligned cost (exact when the two
  configurations are copies of each other). The cost grows as n² pairs, so both sets are
  subsampled to ``max_n`` (default 500 for ≤ 4 particles, 200 for ≤ 13, else 100); the n used
  is returned.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from boltzpath.errors import BadInput
from boltzpath.metrics.distributions import as_array, tvd_hist, wasserstein_1d


def _particles(x, target, name: str) -> torch.Tensor:
    n_p, d = getattr(target, "n_particles", None), getattr(target, "spatial_dim", None)
    if n_p is None or d is None:
        raise BadInput(f"{getattr(target, 'name', 'target')} is not a particle system")
    arr = as_array(x, name)
    if arr.ndim == 3:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2 or arr.shape[1] != n_p * d:
        raise BadInput(f"{name} must have shape (n, {n_p * d}), got {arr.shape}")
    return torch.from_numpy(arr).reshape(-1, n_p, d)


def pair_distances(x, target) -> np.ndarray:
    """All i<j interatomic distances, shape (n, n_particles·(n_particles−1)/2)."""
    p = _particles(x, target, "samples")
    i, j = torch.triu_indices(p.shape[1], p.shape[1], offset=1)
    return (p[:, i] - p[:, j]).norm(dim=-1).numpy()


def distance_w2(x, y, target) -> float:
    """1-D W2 between the pooled interatomic distances of ``x`` and of ``y`` (√ of the OT cost)."""
    return wasserstein_1d(pair_distances(x, target).reshape(-1), pair_distances(y, target).reshape(-1), p=2)


def distance_tvd(x, y, target, bins: int = 200) -> float:
    """Histogram TVD of the pooled interatomic distances (``y`` is the reference)."""
    return tvd_hist(pair_distances(x, target).reshape(-1), pair_distances(y, target).reshape(-1), bins)


def default_aligned_max_n(target) -> int:
    """Subsample size for ``aligned_w2``: 500 for ≤ 4 particles, 200 for ≤ 13, else 100.

    Chosen so one call costs ≲ 10 s on one CPU core (≈ 0.1 ms per LJ-13 pair, n² pairs).
    """
    n_p = getattr(target, "n_particles", 0) or 0
    return 500 if n_p <= 4 else 200 if n_p <= 13 else 100


# --------------------------------------------------------------------------- alignment pieces
def _kabsch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Proper rotations R (batch, d, d) minimising Σ_k ‖a_k − R b_k‖² for centred a, b (batch, n, d)."""
    h = b.transpose(1, 2) @ a  # (batch, d, d) = Σ_k b_k a_kᵀ
    u, _, vt = torch.linalg.svd(h)
    sign = torch.sign(torch.linalg.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    fix = torch.ones(a.shape[0], a.shape[2], dtype=a.dtype)
    fix[:, -1] = sign
    return vt.transpose(1, 2) @ torch.diag_embed(fix) @ u.transpose(1, 2)


def _principal_frames(p: torch.Tensor) -> torch.Tensor:
    """Eigenvector frames of the gyration tensor, (batch, d, d), columns = axes, det = +1."""
    g = p.transpose(1, 2) @ p
    _, vec = torch.linalg.eigh(g)
    det = torch.sign(torch.linalg.det(vec))
    vec[:, :, -1] = vec[:, :, -1] * torch.where(det == 0, torch.ones_like(det), det)[:, None]
    return vec


def _sign_flips(d: int) -> list[torch.Tensor]:
    """Diagonal ±1 matrices with det = +1 (the proper symmetries of an axis frame)."""
    out = []
    for signs in itertools.product([1.0, -1.0], repeat=d):
        if math.prod(signs) > 0:
            out.append(torch.diag(torch.tensor(signs, dtype=torch.float64)))
    return out


def _start_rotations(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Candidate rotations (batch, k, d, d): identity and principal-axes matches with sign flips."""
    fa, fb = _principal_frames(a), _principal_frames(b)
    d = a.shape[2]
    eye = torch.eye(d, dtype=a.dtype).expand(a.shape[0], d, d)
    cands = [eye] + [fa @ s @ fb.transpose(1, 2) for s in _sign_flips(d)]
    return torch.stack(cands, dim=1)


def _chamfer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric nearest-neighbour cost, (batch,): a cheap, permutation-free alignment score."""
    d2 = torch.cdist(a, b).pow(2)
    return d2.min(dim=2).values.sum(1) + d2.min(dim=1).values.sum(1)


def aligned_sq_distances(a: torch.Tensor, b: torch.Tensor, n_iter: int = 5) -> torch.Tensor:
    """min_{P,R} ‖a − R P b‖² for paired configurations a, b of shape (batch, n, d), centred inside.

    Returns (batch,) float64. Alternates Hungarian (P given R) and Kabsch (R given P) from the
    start rotation with the best chamfer score, stopping early once no permutation changes.
    """
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    batch, n, d = a.shape
    starts = _start_rotations(a, b)  # (batch, k, d, d)
    k = starts.shape[1]
    rb = b[:, None] @ starts.transpose(2, 3)  # (batch, k, n, d): b rotated by each start
    score = _chamfer(a[:, None].expand(batch, k, n, d).reshape(-1, n, d), rb.reshape(-1, n, d))
    best = score.view(batch, k).argmin(1)
    rot = starts[torch.arange(batch), best]
    perm = torch.full((batch, n), -1, dtype=torch.long)
    active = torch.arange(batch)
    for _ in range(n_iter):
        if active.numel() == 0:
            break
        rotated = b[active] @ rot[active].transpose(1, 2)
        cost = torch.cdist(a[active], rotated).pow(2).numpy()
        new = np.stack([linear_sum_assignment(c)[1] for c in cost])
        new_t = torch.from_numpy(new)
        changed = (new_t != perm[active]).any(1)
        perm[active] = new_t
        bp = torch.gather(b[active], 1, new_t[:, :, None].expand(-1, n, d))
        rot[active] = _kabsch(a[active], bp)
        active = active[changed]
    bp = torch.gather(b, 1, perm[:, :, None].expand(-1, n, d))
    return ((a - bp @ rot.transpose(1, 2)) ** 2).sum((1, 2))


def aligned_cost_matrix(x: torch.Tensor, y: torch.Tensor, block: int = 4096) -> np.ndarray:
    """(n, m) matrix of aligned squared distances between particle sets x (n, p, d), y (m, p, d)."""
    n, m = x.shape[0], y.shape[0]
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(m), indexing="ij")
    ii, jj = ii.reshape(-1), jj.reshape(-1)
    out = torch.empty(n * m, dtype=torch.float64)
    for s in range(0, n * m, block):
        out[s:s + block] = aligned_sq_distances(x[ii[s:s + block]], y[jj[s:s + block]])
    return out.view(n, m).numpy()


def _subsample(p: torch.Tensor, max_n: int, generator: torch.Generator | None) -> torch.Tensor:
    if p.shape[0] <= max_n:
        return p
    idx = torch.randperm(p.shape[0], generator=generator)[:max_n]
    return p[idx]


def aligned_w2(x, y, target, max_n: int | None = None, generator: torch.Generator | None = None) -> float:
    """Symmetry-aligned W2 (√ of exact OT on the aligned cost matrix), on ≤ ``max_n`` of each set.

    See ``aligned_w2_with_n`` for the sample sizes actually used.
    """
    return aligned_w2_with_n(x, y, target, max_n, generator)[0]


def aligned_w2_with_n(x, y, target, max_n: int | None = None,
                      generator: torch.Generator | None = None) -> tuple[float, int, int]:
    """(aligned W2, n samples used, n reference used)."""
    import ot

    max_n = default_aligned_max_n(target) if max_n is None else int(max_n)
    if max_n < 1:
        raise BadInput(f"max_n must be >= 1, got {max_n}")
    px = _subsample(_particles(x, target, "samples"), max_n, generator)
    py = _subsample(_particles(y, target, "reference"), max_n, generator)
    cost = aligned_cost_matrix(px, py)
    wa = np.full(px.shape[0], 1.0 / px.shape[0])
    wb = np.full(py.shape[0], 1.0 / py.shape[0])
    w2 = math.sqrt(max(float(ot.emd2(wa, wb, cost, numItermax=10_000_000)), 0.0))
    return w2, int(px.shape[0]), int(py.shape[0])
