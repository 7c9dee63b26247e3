"""Haar-random proper rotations, shared by training-time augmentation (``diffusion.buffer``) and
the random restarts of the alignment metrics (``metrics.alignment``); both re-export it."""

from __future__ import annotations

import torch


def random_rotations(n: int, dim: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """n Haar-random rotation matrices of SO(dim), shape (n, dim, dim), on the generator's device.

    QR of an (n, dim, dim) float64 Gaussian drawn from ``generator``, the columns' signs fixed by
    diag(R), then the first axis reflected where det = −1 (multiplied by the exact sign of the
    determinant). Computed in float64 and then cast to ``dtype``.
    """
    a = torch.randn(n, dim, dim, generator=generator, dtype=torch.float64, device=generator.device)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[:, :, 0] = q[:, :, 0] * torch.sign(torch.linalg.det(q))[:, None]
    return q.to(dtype)
