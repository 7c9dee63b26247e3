"""Importance-weight arithmetic in float64: log-sum-exp, normalised weights, ESS.

Every function takes log-weights of shape (n,) (any float dtype) and works in float64 (SPEC §1:
float64 for log-weights, log-sum-exp and log Z). Non-finite log-weights (−inf, NaN) count as
zero weight; if every weight is zero the caller gets a ``ValueError`` rather than NaNs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]


def _clean(log_weights: torch.Tensor) -> torch.Tensor:
    lw = log_weights.detach().to(torch.float64).reshape(-1)
    return torch.where(torch.isfinite(lw), lw, torch.full_like(lw, -math.inf))


def log_sum_exp(log_weights: torch.Tensor) -> float:
    """log Σ_i exp(lw_i), float64; −inf when every weight is zero."""
    lw = _clean(log_weights)
    return float(torch.logsumexp(lw, dim=0))


def log_mean_exp(log_weights: torch.Tensor) -> float:
    """log (1/n) Σ_i exp(lw_i): the log-normaliser increment of one SMC step."""
    n = log_weights.numel()
    return log_sum_exp(log_weights) - math.log(n)


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def normalised_weights(log_weights: torch.Tensor, reduce_max: Reduce = _same,
                       reduce_sum: Reduce = _same) -> torch.Tensor:
    """W_i = exp(lw_i) / Σ_j exp(lw_j), float64, shape (n,). Raises if all weights are zero.

    ``reduce_max`` / ``reduce_sum`` turn this shard's max and sum into the population's when the
    particles are split over processes (``parallel.sharded_smc.ShardedPopulation``); by default the
    tensor holds the whole population."""
    lw = _clean(log_weights)
    top = reduce_max(lw.max())
    if not torch.isfinite(top):
        raise ValueError("all importance weights are zero or non-finite")
    w = torch.exp(lw - top)
    return w / reduce_sum(w.sum())


def effective_sample_size(log_weights: torch.Tensor, reduce_max: Reduce = _same,
                          reduce_sum: Reduce = _same) -> float:
    """Kish ESS = (Σ w)² / Σ w² = 1 / Σ W_i², in [1, n] (reductions as in ``normalised_weights``)."""
    w = normalised_weights(log_weights, reduce_max, reduce_sum)
    return float(1.0 / reduce_sum((w * w).sum()))


def log_weight_spread(log_weights: torch.Tensor) -> float:
    """max − min of the finite log-weights (0 when the weights are uniform)."""
    lw = _clean(log_weights)
    fin = lw[torch.isfinite(lw)]
    if fin.numel() == 0:
        return math.nan
    return float(fin.max() - fin.min())


def weighted_mean(values: torch.Tensor, log_weights: torch.Tensor | None) -> torch.Tensor:
    """Self-normalised Σ W_i f(x_i) over the first axis of ``values`` (float64)."""
    v = values.detach().to(torch.float64)
    if log_weights is None:
        return v.mean(0)
    w = normalised_weights(log_weights)
    return torch.tensordot(w, v, dims=([0], [0]))
