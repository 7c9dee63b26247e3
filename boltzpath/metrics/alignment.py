"""Pairwise symmetry alignment of particle configurations: min over permutation P and rotation R.

For centred configurations a, b of shape (n, d) the aligned squared distance is
    c(a, b) = min_{P, R ∈ SO(d)} ‖a − R·P·b‖².
Given P the best R is Kabsch's: with H = Σ_k b_k a_kᵀ = U S Vᵀ, R = V·diag(1, …, 1, s)·Uᵀ,
s = sign det(V Uᵀ), and min_R ‖a − R b‖² = ‖a‖² + ‖b‖² − 2(Σ σ_i − (1 − s)·σ_min).

- ``exact_aligned_sq`` enumerates every permutation (n! of them; used for n ≤ 5, e.g. DW-4) and
  is the global minimum.
- ``local_aligned_sq`` alternates Hungarian assignment (P given R, scipy
  ``linear_sum_assignment``) and Kabsch (R given P) from given start rotations and keeps the best:
  a local optimum, so an upper bound of c. It is exact when b is a rotated, permuted copy of a
  whose gyration tensor has distinct eigenvalues (a principal-axes start then hits R exactly).

All functions are batched over pairs: inputs (batch, n, d) float64, outputs (batch,).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from boltzpath._rotations import random_rotations  # noqa: F401  (float64; used by metrics.particles)


def centre(p: torch.Tensor) -> torch.Tensor:
    return p - p.mean(1, keepdim=True)


def kabsch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Proper rotations R (batch, d, d) minimising Σ_k ‖a_k − R b_k‖² for centred a, b."""
    h = b.transpose(1, 2) @ a
    u, _, vt = torch.linalg.svd(h)
    sign = torch.sign(torch.linalg.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    fix = torch.ones(a.shape[0], a.shape[2], dtype=a.dtype)
    fix[:, -1] = torch.where(sign == 0, torch.ones_like(sign), sign)
    return vt.transpose(1, 2) @ torch.diag_embed(fix) @ u.transpose(1, 2)


def max_rotation_trace(h: torch.Tensor) -> torch.Tensor:
    """max_{R ∈ SO(d)} tr(R H) for a batch of (d, d) matrices H; closed form in 2-D."""
    if h.shape[-1] == 2:
        return torch.hypot(h[..., 0, 0] + h[..., 1, 1], h[..., 0, 1] - h[..., 1, 0])
    s = torch.linalg.svdvals(h)
    neg = torch.linalg.det(h) < 0
    return s.sum(-1) - 2.0 * neg.to(h.dtype) * s[..., -1]


def exact_aligned_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Global min over all n! permutations and SO(d) of ‖a − R P b‖² (centres a and b)."""
    a, b = centre(a), centre(b)
    n = a.shape[1]
    perms = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)  # (P, n)
    bp = b[:, perms]  # (batch, P, n, d)
    h = torch.einsum("bpnd,bne->bpde", bp, a)
    norms = (a * a).sum((1, 2)) + (b * b).sum((1, 2))
    return (norms[:, None] - 2.0 * max_rotation_trace(h)).min(1).values.clamp_min(0.0)


def principal_frames(p: torch.Tensor) -> torch.Tensor:
    """Eigenvector frames (columns) of the gyration tensor, (batch, d, d), det = +1."""
    _, vec = torch.linalg.eigh(p.transpose(1, 2) @ p)
    det = torch.sign(torch.linalg.det(vec))
    vec[:, :, -1] = vec[:, :, -1] * torch.where(det == 0, torch.ones_like(det), det)[:, None]
    return vec


def structured_starts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Start rotations (batch, k, d, d): identity and the 2^(d−1) principal-axes matches."""
    d = a.shape[2]
    fa, fb = principal_frames(a), principal_frames(b)
    cands = [torch.eye(d, dtype=a.dtype).expand(a.shape[0], d, d)]
    for signs in itertools.product([1.0, -1.0], repeat=d):
        if math.prod(signs) > 0:
            s = torch.diag(torch.tensor(signs, dtype=a.dtype))
            cands.append(fa @ s @ fb.transpose(1, 2))
    return torch.stack(cands, dim=1)


def _alternate(a: torch.Tensor, b: torch.Tensor, rot: torch.Tensor, n_iter: int) -> torch.Tensor:
    """Hungarian/Kabsch alternation from rotations ``rot``; stops early per pair. Returns costs."""
    batch, n, d = a.shape
    rot = rot.clone()
    perm = torch.full((batch, n), -1, dtype=torch.long)
    active = torch.arange(batch)
    for _ in range(n_iter):
        if active.numel() == 0:
            break
        cost = torch.cdist(a[active], b[active] @ rot[active].transpose(1, 2)).square_().numpy()
        new = torch.from_numpy(np.stack([linear_sum_assignment(c)[1] for c in cost]))
        changed = (new != perm[active]).any(1)
        perm[active] = new
        bp = torch.gather(b[active], 1, new[:, :, None].expand(-1, n, d))
        rot[active] = kabsch(a[active], bp)
        active = active[changed]
    bp = torch.gather(b, 1, perm[:, :, None].expand(-1, n, d))
    return ((a - bp @ rot.transpose(1, 2)) ** 2).sum((1, 2))


def local_aligned_sq(a: torch.Tensor, b: torch.Tensor, extra_starts: torch.Tensor | None = None,
                     all_starts: bool = False, n_iter: int = 8) -> torch.Tensor:
    """Upper bound of min_{P,R} ‖a − R P b‖² by Hungarian/Kabsch alternation (centres a and b).

    ``all_starts=False``: one alternation from the structured start with the best symmetric
    nearest-neighbour (chamfer) score — cheap. ``all_starts=True``: from every structured start
    plus ``extra_starts`` (k, d, d), keeping the lowest cost — k+2^(d−1)+1 times dearer.
    Never above ‖a − b‖² (the identity permutation and rotation are a candidate).
    """
    a, b = centre(a), centre(b)
    batch, n, d = a.shape
    starts = structured_starts(a, b)
    if all_starts and extra_starts is not None:
        starts = torch.cat([starts, extra_starts[None].expand(batch, -1, d, d)], dim=1)
    k = starts.shape[1]
    if all_starts:
        aa = a[:, None].expand(batch, k, n, d).reshape(-1, n, d)
        bb = b[:, None].expand(batch, k, n, d).reshape(-1, n, d)
        cost = _alternate(aa, bb, starts.reshape(-1, d, d), n_iter).view(batch, k).min(1).values
    else:
        rb = b[:, None] @ starts.transpose(2, 3)  # (batch, k, n, d)
        d2 = torch.cdist(a[:, None].expand(batch, k, n, d).reshape(-1, n, d), rb.reshape(-1, n, d)).square_()
        chamfer = (d2.min(2).values.sum(1) + d2.min(1).values.sum(1)).view(batch, k)
        cost = _alternate(a, b, starts[torch.arange(batch), chamfer.argmin(1)], n_iter)
    return torch.minimum(cost, ((a - b) ** 2).sum((1, 2)))
