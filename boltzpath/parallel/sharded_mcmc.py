"""Baseline samplers (MALA, HMC, Langevin, PT, DiGS) with their chains split over ranks.

Every method in ``mcmc.registry`` runs a batch of independent chains (PT: independent ladders,
one per chain column; DiGS: independent Gibbs chains) and returns samples *chain-interleaved*:
sample i is chain i mod C at collection step ⌊i / C⌋, with ⌈n / C⌉ collections per chain.
``sample_shard`` gives rank r the chains [c_r, c_r + C_r) (``dist.shard``), runs the method there
for exactly ⌈n / C⌉·C_r samples — the same chain length as one process — with its own generator
(seed ``rank_seed(seed, r)``; rank 0 keeps ``seed``, so one process reproduces the unsharded run
bit-for-bit), and reassembles on every rank the global layout (steps × all C chains, truncated to
n). Chains never interact, so this is the one-process sampler with C chains except for random
streams and step-size adaptation, which each rank does on its own chains.

Evaluation counts are summed over ranks (each rank's target counts its own calls); wall time is
the slowest rank's; ``acceptance`` is the chain-weighted mean over ranks; every other numeric
diagnostic is kept per rank under ``info["per_rank"]`` (rank 0's value stays at the top level).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.mcmc.registry import run_method
from boltzpath.parallel.ddp_train import rank_seed
from boltzpath.parallel.dist import DistContext, all_gather_cat, all_gather_json, shard


def _scalar_items(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def sample_shard(method: str, target, n: int, seed: int, cfg, ctx: DistContext, callback=None,
                 device: torch.device | None = None) -> Samples:
    """``run_method`` over all ranks; every rank returns the same combined ``Samples``."""
    chains = int(cfg.chains)
    if chains < ctx.world_size:
        raise BadInput(f"{method}: {chains} chains cannot be split over {ctx.world_size} processes "
                       "(set sampler.chains >= the number of processes)")
    offset, local_chains = shard(chains, ctx)
    per_chain = math.ceil(int(n) / chains)
    local_cfg = dataclasses.replace(cfg, chains=local_chains) if ctx.distributed else cfg
    local_n = per_chain * local_chains if ctx.distributed else int(n)
    gen = torch.Generator(device=device or "cpu").manual_seed(rank_seed(seed, ctx.rank))
    samples = run_method(method, target, local_n, gen, local_cfg, callback=callback if ctx.is_main else None)
    if not ctx.distributed:
        return samples
    x = samples.x.reshape(per_chain, local_chains, -1).transpose(0, 1).contiguous()
    e = samples.energy.reshape(per_chain, local_chains).transpose(0, 1).contiguous()
    x = all_gather_cat(x, ctx).transpose(0, 1).reshape(per_chain * chains, -1)[: int(n)]
    e = all_gather_cat(e, ctx).transpose(0, 1).reshape(-1)[: int(n)]
    scalars = all_gather_json({**_scalar_items(samples.info), "chains": local_chains}, ctx)
    info = dict(samples.info)
    info["energy_evaluations"] = int(sum(s.get("energy_evaluations", 0) for s in scalars))
    info["wall_time_s"] = max(float(s.get("wall_time_s", 0.0)) for s in scalars)
    if all("acceptance" in s for s in scalars):
        info["acceptance"] = sum(s["acceptance"] * s["chains"] for s in scalars) / chains
    info["config"] = {**info.get("config", {}), "chains": chains}
    info["per_rank"] = {k: [s.get(k) for s in scalars] for k in scalars[0]}
    info["parallel"] = {"world_size": ctx.world_size, "chain_offsets": [shard(chains, _at(ctx, r))[0]
                                                                        for r in range(ctx.world_size)]}
    return Samples(x=x, energy=e, log_weights=None, info=info)


def _at(ctx: DistContext, rank: int) -> DistContext:
    return DistContext(rank, ctx.world_size, rank, ctx.device)
