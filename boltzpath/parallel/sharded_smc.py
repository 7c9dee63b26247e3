"""Feynman–Kac annealing (``smc.annealing``) with its particle population split over ranks.

Choice: **global resampling with particle exchange** (not island SMC). Every rank holds n_r of the
N = Σ_r n_r particles and simulates and reweights only those (the expensive part: network and
divergence evaluations). The float64 log-weights and increments — 2N numbers — are all-gathered
after every step, so every rank computes the same global quantities as one process would:

    log Z increment  log Σ_i W_i exp(Δ_i)   (W: normalised weights of all N particles),
    ESS              1 / Σ_i W̃_i²            (W̃: the updated weights of all N particles).

Resampling (when the global ESS/N falls below the threshold) draws N ancestor indices from the
global weights with a generator that is identical on all ranks (``shared_generator``, seeded the
same everywhere and used for nothing else), so all ranks agree on the indices without sending
them; rank r keeps indices [offset_r, offset_r + n_r) and fetches those ancestors with one
all-gather of the positions (only at resampling events, which are rare). The particle system then
has exactly the law of one-process SMC with N particles — mutation noise is independent per
particle whichever rank draws it — so the log Z estimator exp(Σ log-increments) stays unbiased for
Z (and the weighted particles consistent for p^γ), with no between-island correction to choose.
Island SMC (R independent populations of N/R, combined by their Ẑ_r) would avoid the exchange but
resamples within islands only, which degenerates faster; the exchange costs one all-gather of
N·dim numbers per resampling event.

With one process and ``shared_generator is generator`` the random draws happen in the same order
as ``smc.annealing.anneal``, which this then reproduces bit-for-bit (tested).

The tempered bridge tail (``smc.bridge``) runs on the same shards through ``ShardedPopulation``,
its hooks for population statistics. Unlike the FK step it never gathers the weights to compute a
statistic: the normaliser (max and sum of the weights), the ESS, the conditional ESS evaluated at
every bisection point for β' and the survivor counts are all-reduced (a few scalars each; an
all-reduce leaves the same reduced value on every rank, so every rank takes the same branch and the
same β'). Resampling — when the global ESS drops, and the final one to equal weights — is the FK
step's ``exchange_resample`` with the shared generator (the log-weights are gathered then, as in
the FK step). MALA moves and their per-particle step sizes stay on the particle's rank (step sizes
travel with their particle when it is resampled); each rank's target counts its own evaluations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.errors import BadInput
from boltzpath.parallel.dist import (
    DistContext,
    all_gather_cat,
    all_reduce_max,
    all_reduce_sum,
    shard,
    sum_int,
)
from boltzpath.smc.annealing import (
    AnnealConfig,
    AnnealInfo,
    AnnealResult,
    FKStepInfo,
    mutate,
    non_finite_rows,
    require_a_finite_weight,
    tail_increment,
)
from boltzpath.smc.bridge import Population, check_same_beta
from boltzpath.smc.model import DiffusionModel
from boltzpath.smc.resample import RESAMPLERS, systematic
from boltzpath.smc.weights import effective_sample_size, log_weight_spread, normalised_weights

Project = Callable[[torch.Tensor], torch.Tensor]


def exchange_resample(resampler, shared: torch.Generator, log_w_all: torch.Tensor, offset: int, count: int,
                      tensors: list[torch.Tensor], ctx: DistContext):
    """Global resampling with particle exchange (module docstring): ``resampler`` draws all N ancestors
    from the gathered log-weights with the generator every rank shares; this rank keeps draws
    [offset, offset + count) and fetches those ancestors' rows of each of ``tensors`` (its own shard
    of a per-particle quantity) with one all-gather each. Returns (the kept ancestor indices, global,
    and the fetched rows); offset 0 and count N give every rank the whole resampled population."""
    idx = resampler(shared, log_w_all, log_w_all.shape[0])[offset: offset + count]
    out = []
    for t in tensors:
        t_all = all_gather_cat(t, ctx)
        out.append(t_all[idx.to(t_all.device)])
    return idx, out


def _sharded_step(model, x, log_w, log_z, t_now, t_next, schedule, cfg, generator, shared, project,
                  ctx, n_total, offset):
    """One FK step on this rank's particles (mutate → reweight → global ESS/log Z → resample)."""
    x_new, inc = mutate(model, x, t_now, t_next, schedule, cfg, generator, project)  # as fk_step
    both = all_gather_cat(torch.stack([log_w, inc], dim=1), ctx)  # (N, 2) float64, rank order
    log_w_all, inc_all = both[:, 0], tail_increment(both[:, 1], t_next, cfg)  # tail rule on all N
    inc = inc_all[offset: offset + x.shape[0]]
    finite = torch.isfinite(inc_all)
    max_abs = float(inc_all[finite].abs().max()) if finite.any() else math.nan
    log_z_inc = 0.0
    if cfg.use_weights:  # every rank sees the same gathered weights, so every rank raises together
        require_a_finite_weight(log_w_all, inc_all, t_now, t_next, schedule,
                                lambda: (sum_int(non_finite_rows(x_new), ctx), n_total))
        log_z_inc = float(torch.logsumexp(torch.log(normalised_weights(log_w_all)) + inc_all, dim=0))
        log_w_all = log_w_all + inc_all
        log_w = log_w + inc
        log_z = log_z + log_z_inc
    ess = effective_sample_size(log_w_all)
    spread = log_weight_spread(log_w_all)
    resampled = False
    if cfg.use_weights and t_next >= cfg.stop_resampling_t and ess < cfg.ess_threshold * n_total:
        _, (x_new,) = exchange_resample(RESAMPLERS[cfg.resample], shared, log_w_all, offset, x.shape[0],
                                        [x_new], ctx)
        log_w, resampled = torch.zeros_like(log_w), True
    info = FKStepInfo(float(t_next), ess, resampled, spread, log_z_inc, max_abs)
    return x_new, log_w, log_z, info


def sharded_anneal(
    model: DiffusionModel,
    n_particles: int,
    schedule: KarrasSchedule,
    cfg: AnnealConfig,
    generator: torch.Generator,
    shared_generator: torch.Generator,
    ctx: DistContext,
    project: Project | None = None,
    callback: Callable[[int, int, dict], None] | None = None,
) -> AnnealResult:
    """``smc.annealing.anneal`` for N = ``n_particles`` particles over ``ctx.world_size`` ranks.

    ``generator``: this rank's own stream (prior, mutation noise, Hutchinson probes) — different on
    every rank; ``shared_generator``: the same seed on every rank (resampling only). Returns this
    rank's particles and log-weights with the *global* log Z, ESS and step log (identical on all
    ranks); ``gather_result`` assembles all N particles.
    """
    cfg.validate()
    n_total = int(n_particles)
    if n_total < ctx.world_size:
        raise BadInput(f"n_particles ({n_total}) must be >= the number of processes ({ctx.world_size})")
    offset, n_local = shard(n_total, ctx)
    project = project or (lambda v: v)
    dtype = cfg.torch_dtype
    dev = torch.device(generator.device)
    prior_std = schedule.sigma_max / math.sqrt(cfg.gamma)
    x = prior_std * project(torch.randn(n_local, model.dim, generator=generator, dtype=dtype, device=dev))
    log_w, log_z = torch.zeros(n_local, dtype=torch.float64, device=dev), 0.0
    grid = schedule.time_grid(cfg.n_steps).tolist()
    info = AnnealInfo()
    for k in range(cfg.n_steps):
        x, log_w, log_z, step = _sharded_step(model, x, log_w, log_z, grid[k], grid[k + 1], schedule, cfg,
                                              generator, shared_generator, project, ctx, n_total, offset)
        info.append(step)
        if callback is not None:
            callback(k + 1, cfg.n_steps, {"t": step.t, "ess": step.ess, "resampled": step.resampled})
    ess = effective_sample_size(all_gather_cat(log_w, ctx))
    return AnnealResult(x, log_w, log_z, ess, info)


def gather_result(res: AnnealResult, ctx: DistContext) -> AnnealResult:
    """All N particles and log-weights (rank order) on every rank; log Z, ESS, info unchanged."""
    return AnnealResult(all_gather_cat(res.x, ctx), all_gather_cat(res.log_weights, ctx), res.log_z,
                        res.ess, res.info)


def sharded_relax(target, x: torch.Tensor, generator: torch.Generator, cfg, ctx: DistContext,
                  callback: Callable[[int, int, dict], None] | None = None, record_energies: bool = False):
    """``smc.relax.relax`` of this rank's particles (each chain is independent; with ``adapt:
    shared`` each rank adapts one step size on its own chains' mean acceptance, so splitting particles
    over ranks changes the random streams and that step's noise, not what the chains sample).

    Returns this rank's ``RelaxResult`` with ``info`` combined over ranks: counts summed, acceptance
    and mean displacement weighted by particle counts, step-size min/max over all particles, the
    ranks' medians listed (``step_size_median`` is rank 0's).
    """
    from boltzpath.parallel.dist import all_gather_json
    from boltzpath.smc.relax import relax

    res = relax(target, x, generator, cfg, callback=callback if ctx.is_main else None,
                record_energies=record_energies)
    if not ctx.distributed:
        return res
    parts = all_gather_json({**res.info, "n": int(x.shape[0])}, ctx)
    n = sum(p["n"] for p in parts)
    info = dict(res.info)
    for key in ("acceptance", "mean_rms_displacement"):
        info[key] = sum(p[key] * p["n"] for p in parts) / n
    info["step_size_min"] = min(p["step_size_min"] for p in parts)
    info["step_size_max"] = max(p["step_size_max"] for p in parts)
    info["step_size_median_per_rank"] = [p["step_size_median"] for p in parts]
    for key in ("repaired", "still_above_threshold"):
        if key in info:
            info[key] = sum(p[key] for p in parts)
    if "repair_steps_taken" in info:
        info["repair_steps_taken"] = max(p["repair_steps_taken"] for p in parts)
    if "extended_steps" in info:  # each rank extends on its own drift check
        info["extended_steps_per_rank"] = [p["extended_steps"] for p in parts]
        info["extended_steps"] = max(info["extended_steps_per_rank"])
        info["steps"] = max(p["steps"] for p in parts)
    drifts = [(p["drift"], p["n"]) for p in parts if p.get("drift")]
    if drifts:  # the ensemble's change over all ranks: count-weighted mean, standard errors combined
        m = sum(d["mean_change"] * k for d, k in drifts) / sum(k for _, k in drifts)
        se = math.sqrt(sum((d["standard_error"] * k) ** 2 for d, k in drifts)) / sum(k for _, k in drifts)
        info["drift"] = {**drifts[0][0], "mean_change": m, "standard_error": se,
                         "z": m / se if se > 0 else 0.0, "chains": sum(d["chains"] for d, _ in drifts),
                         "per_rank_z": [d["z"] for d, _ in drifts]}
    return dataclasses.replace(res, info=info)  # every other field (x, energies, grad) is this rank's


class ShardedPopulation(Population):
    """``smc.bridge.Population`` for a population split over ranks (module docstring, last part).

    ``shared``: the resampling generator, seeded the same on every rank and used for nothing else.
    ``bridge(…, generator=own, population=ShardedPopulation(ctx, shared))`` on this rank's particles
    returns the whole population's equal-weight particles, final log-weights and ancestor indices on
    every rank. With one process and ``shared`` the bridge's own generator it is ``bridge()`` bit for
    bit (tested): each hook does the one-process arithmetic with the sum or max all-reduced.
    """

    def __init__(self, ctx: DistContext, shared: torch.Generator) -> None:
        super().__init__(shared)
        self.ctx = ctx

    def size(self, n_local: int) -> int:
        counts = all_gather_cat(torch.tensor([int(n_local)], dtype=torch.int64, device=self.ctx.device),
                                self.ctx).tolist()
        if min(counts) < 1:
            raise BadInput(f"the bridge needs particles on every process (shards: {counts})")
        self.offset, self.n_local, self.n_total = sum(counts[: self.ctx.rank]), int(n_local), sum(counts)
        return self.n_total

    def count(self, k: int) -> int:
        return sum_int(k, self.ctx)

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return all_reduce_max(t.clone(), self.ctx)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(t.clone(), self.ctx)

    def mean(self, t: torch.Tensor) -> float:
        return float(self.sum(t.sum()) / self.n_total)

    def weights(self, log_w: torch.Tensor) -> torch.Tensor:
        """``smc.weights.normalised_weights`` with the max and the sum over all ranks."""
        return normalised_weights(log_w, self.max, self.sum)

    def ess(self, log_w: torch.Tensor) -> float:
        return effective_sample_size(log_w, self.max, self.sum)

    def check_beta(self, level: int, beta: float) -> None:
        """``smc.bridge.check_same_beta`` with the max and min all-reduced (min = −max(−β), exact); no
        collective with one process."""
        if self.ctx.distributed:
            check_same_beta(level, beta, lambda t: self.max(t.to(self.ctx.device)),
                            lambda t: -self.max(-t.to(self.ctx.device)))

    def resample(self, log_w: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        log_w_all = all_gather_cat(log_w, self.ctx)
        return exchange_resample(systematic, self.generator, log_w_all, self.offset, self.n_local, tensors,
                                 self.ctx)[1]

    def finish(self, log_w: torch.Tensor, x: torch.Tensor):
        log_w_all = all_gather_cat(log_w, self.ctx)
        idx, (x_eq,) = exchange_resample(systematic, self.generator, log_w_all, 0, self.n_total, [x],
                                         self.ctx)
        return x_eq, log_w_all, idx
