"""Noise floors: a metric computed reference-vs-reference at the same n (SPEC §8).

A sampler's metric value means little without the value a *perfect* sampler would get at the
same sample size: finite-sample OT distances, TVDs and MMDs are biased upwards. ``noise_floor``
computes ``metric(a, b)`` for ``repeats`` independent pairs (a, b) of reference sets of size n:

- with ``sampler`` (e.g. ``target.exact_sample``): two fresh independent draws per repeat;
- with a finite ``reference`` array: two *disjoint* random subsets of size n per repeat. If the
  reference holds fewer than 2n points, n is reduced to ⌊N_ref / 2⌋ and the returned ``n`` says so.

Returns ``{"mean", "std", "n", "repeats", "source"}`` (std is the sample std over repeats, ddof=1;
0 for a single repeat).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from boltzpath.errors import BadInput


def _rows(reference) -> torch.Tensor:
    if isinstance(reference, np.ndarray):
        return torch.from_numpy(reference)
    if isinstance(reference, torch.Tensor):
        return reference
    raise BadInput(f"reference must be a tensor or array, got {type(reference).__name__}")


def noise_floor(
    metric: Callable[[torch.Tensor, torch.Tensor], float],
    n: int,
    reference=None,
    sampler: Callable[[int, torch.Generator], torch.Tensor] | None = None,
    repeats: int = 3,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Mean ± std of ``metric(a, b)`` over ``repeats`` pairs of independent reference sets of size n.

    ``metric`` takes two (n, ...) tensors and returns a float. Exactly one of ``reference`` (a
    finite array, split into disjoint halves) or ``sampler`` (``sampler(n, generator)``) is used;
    the sampler wins when both are given.
    """
    if repeats < 1:
        raise BadInput(f"repeats must be >= 1, got {repeats}")
    if n < 1:
        raise BadInput(f"n must be >= 1, got {n}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    values = []
    if sampler is not None:
        source = "exact sampler"
        for _ in range(repeats):
            values.append(float(metric(sampler(n, gen), sampler(n, gen))))
    elif reference is not None:
        ref = _rows(reference)
        n = min(int(n), ref.shape[0] // 2)
        if n < 1:
            raise BadInput(f"the reference has {ref.shape[0]} points: too few to split in two")
        source = "disjoint reference subsets"
        for _ in range(repeats):
            idx = torch.randperm(ref.shape[0], generator=gen)
            values.append(float(metric(ref[idx[:n]], ref[idx[n:2 * n]])))
    else:
        raise BadInput("noise_floor needs a reference array or an exact sampler")
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": int(n), "repeats": int(repeats), "source": source}
