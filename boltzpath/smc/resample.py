"""Resampling schemes. Every scheme is ``(generator, log_weights, n) -> indices`` (int64, (n,)).

Both are unbiased: E[#copies of particle i] = n·W_i. Systematic resampling uses one uniform
u ~ U[0, 1/n) and the points u + j/n, so the number of copies of i is ⌊n·W_i⌋ or ⌈n·W_i⌉
(lowest variance of the standard schemes); multinomial draws n i.i.d. indices from W.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from boltzpath.smc.weights import normalised_weights


def systematic(generator: torch.Generator, log_weights: torch.Tensor, n: int) -> torch.Tensor:
    """Indices at the points (u + j)/n, j = 0..n−1, u ~ U[0, 1), of the weights' CDF (float64)."""
    w = normalised_weights(log_weights)
    cdf = torch.cumsum(w, dim=0)
    cdf[-1] = 1.0  # guard against round-off leaving the last point beyond the CDF
    u = torch.rand((), generator=generator, dtype=torch.float64, device=generator.device).to(w.device)
    points = (u + torch.arange(n, dtype=torch.float64, device=w.device)) / n
    idx = torch.searchsorted(cdf, points, right=True)
    return idx.clamp_(max=w.numel() - 1).to(torch.int64)


def multinomial(generator: torch.Generator, log_weights: torch.Tensor, n: int) -> torch.Tensor:
    """n i.i.d. draws from the normalised weights."""
    w = normalised_weights(log_weights)
    return torch.multinomial(w.to(generator.device), n, replacement=True, generator=generator).to(
        device=w.device, dtype=torch.int64)


Resampler = Callable[[torch.Generator, torch.Tensor, int], torch.Tensor]

RESAMPLERS: dict[str, Resampler] = {"systematic": systematic, "multinomial": multinomial}
