"""Gathers and scatters over atoms as small dense matrix products.

For molecules of tens of atoms, picking atoms (``pos[:, idx]``) and summing pair values back onto
atoms (``index_add``) are cheaper as products with constant 0/±1 matrices: the forward pass and its
autograd backward are then both BLAS matmuls instead of gathers and scatter-adds (about 2× faster
energy+forces at batch 1024 on CPU). ``selection(idx)`` @ x picks rows, ``difference(a, b)`` @ x
gives x[a] − x[b].
"""

from __future__ import annotations

import torch


def selection(idx: torch.Tensor, n: int, dtype=torch.float64) -> torch.Tensor:
    """(m, n) matrix S with S[k, idx[k]] = 1, so S @ x == x[idx]."""
    idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
    out = torch.zeros(idx.numel(), n, dtype=dtype)
    out[torch.arange(idx.numel()), idx] = 1.0
    return out


def difference(a: torch.Tensor, b: torch.Tensor, n: int, dtype=torch.float64) -> torch.Tensor:
    """(m, n) matrix D with D @ x == x[a] − x[b]."""
    return selection(a, n, dtype) - selection(b, n, dtype)


def vectors(matrix: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """matrix (m, n) applied to positions (batch, n, 3): (batch, 3, m), components first.

    One (batch·3, n) @ (n, m) product (a broadcast matmul would run batch tiny products), and the
    components-first layout keeps the later per-component arithmetic on contiguous memory.
    """
    batch, n, _ = pos.shape
    return (pos.transpose(1, 2).reshape(batch * 3, n) @ matrix.T).reshape(batch, 3, matrix.shape[0])


def lengths(v: torch.Tensor) -> torch.Tensor:
    """Euclidean lengths of components-first vectors (batch, 3, m): (batch, m)."""
    return (v[:, 0] ** 2 + v[:, 1] ** 2 + v[:, 2] ** 2).sqrt()


def rows(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """matrix (m, n) applied to per-atom values x (batch, n): (batch, m)."""
    return x @ matrix.T


def scatter_sum(values: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Sum per-item values (batch, m) onto atoms with a selection matrix (m, n): (batch, n)."""
    return values @ matrix
