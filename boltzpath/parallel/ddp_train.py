"""Data-parallel training under ``torchrun``: a hook object any training loop can call.

Design choice — a manual gradient all-reduce instead of ``DistributedDataParallel``:
the energy model's distillation/DSM losses differentiate U_η twice (``autograd.grad(...,
create_graph=True)`` inside the forward, then ``backward()``). DDP's reducer fires its hooks when a
parameter's gradient is *accumulated*, and with a double backward some parameters receive
gradient contributions more than once or through the inner ``autograd.grad`` (which DDP does not
see), so bucket readiness is ill-defined (it needs ``find_unused_parameters``/static-graph
workarounds and has no guarantee of being exact). Averaging ``.grad`` once after ``backward()``
is simple and exact: with equal per-rank batches b = B/R,

    ∇ (1/B) Σ_{i ∈ union} ℓ_i = (1/R) Σ_r ∇ (1/b) Σ_{i ∈ rank r} ℓ_i,

so every rank then takes the optimiser step one process would take on the union batch. Its only
cost over DDP is no overlap of communication with the backward pass (one flat all-reduce per step).

What ``DataParallel`` guarantees (``diffusion.train.train(..., hooks=DataParallel(ctx))``):

* ``cfg.batch_size`` is the *global* batch: each rank draws ``batch_size / R`` samples (must
  divide) from the shared buffer with its own generator, so the run's statistics do not depend on R;
* rank r's generator is re-seeded with ``rank_seed(seed, r)`` (rank 0 keeps the caller's), starting
  weights are broadcast from rank 0, gradients averaged (``dist.average_gradients``); since every
  rank then applies the same update, the weights, Adam moments and EMA stay identical on all ranks;
* checkpoints carry every rank's generator state (``rank_generators``); only rank 0 writes them and
  every rank waits at a barrier until the file exists;
  Resume with the same R continues each rank's stream exactly; with a different R, ranks that
  existed keep their streams and new ranks start fresh streams seeded by ``rank_seed(seed, r, step)``
  (the run then continues correctly but not bit-for-bit as the R-rank run would have).

A generic loop (e.g. DiKL's) uses the same object: ``dp.start(modules, gen, None)``, draw
``dp.local_batch_size(B)`` samples, ``loss.backward()``, ``dp.after_backward(params)``, step,
``dp.write_checkpoint(path, state)`` (after ``dp.start`` has seen the generator) or
``if dp.is_writer: save(...)`` followed by a barrier.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_torch_save
from boltzpath.parallel.dist import (
    DistContext,
    all_gather_cat,
    all_reduce_mean,
    average_gradients,
    barrier,
    broadcast_parameters,
)

_RANK_PRIME = 1_000_000_007


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed of rank ``rank``'s stream (rank 0, step 0: ``seed`` itself); distinct per (rank, step)."""
    if rank == 0 and step == 0:
        return int(seed)
    return (int(seed) + _RANK_PRIME * int(rank) + 7919 * int(step)) % (2**63 - 1)


class DataParallel:
    """Hooks for ``diffusion.train.train`` (or any loop) that make R processes train as one."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx

    @property
    def is_writer(self) -> bool:
        return self.ctx.is_main

    def local_batch_size(self, batch_size: int) -> int:
        r = self.ctx.world_size
        if batch_size % r:
            raise BadInput(f"batch_size {batch_size} is not divisible by the {r} processes; "
                           "the global batch is split evenly over ranks")
        return batch_size // r

    def start(self, modules: Iterable[torch.nn.Module], generator: torch.Generator,
              checkpoint: dict[str, Any] | None) -> None:
        """Seed this rank's generator (fresh or from a checkpoint) and broadcast rank 0's weights."""
        ctx = self.ctx
        if checkpoint is None:
            seed = generator.initial_seed()
            if ctx.rank > 0:
                generator.manual_seed(rank_seed(seed, ctx.rank))
        else:
            states = checkpoint.get("rank_generators")
            if states is not None and ctx.rank < len(states):
                generator.set_state(states[ctx.rank].clone())
            elif ctx.rank > 0:  # a rank the checkpointed run did not have: a fresh stream
                base = int(checkpoint.get("rank_seed_base", 0))
                generator.manual_seed(rank_seed(base, ctx.rank, int(checkpoint["step"])))
        self._seed_base = int(checkpoint.get("rank_seed_base", 0)) if checkpoint else generator.initial_seed()
        self._generator = generator
        broadcast_parameters(list(modules), ctx)

    def after_backward(self, params: Iterable[torch.nn.Parameter]) -> None:
        average_gradients(params, self.ctx)

    def reduce_log(self, info: dict[str, float]) -> dict[str, float]:
        """Losses in a log record averaged over ranks (step and wall time left as they are)."""
        if not self.ctx.distributed:
            return info
        keys = [k for k in info if k not in ("step", "wall_time_s")]
        vals = torch.tensor([float(info[k]) for k in keys], dtype=torch.float64, device=self.ctx.device)
        all_reduce_mean(vals, self.ctx)
        return {**info, **dict(zip(keys, vals.tolist(), strict=True))}

    def write_checkpoint(self, path: str | Path, state: dict[str, Any]) -> None:
        """Add every rank's generator state (a collective: call on all ranks), write on rank 0,
        then wait, so no rank reads the file (e.g. to resume) before it exists."""
        gen = self._generator
        local = gen.get_state()
        if self.ctx.distributed:
            gathered = all_gather_cat(local.to(self.ctx.device)[None], self.ctx).cpu()
            states = [gathered[r].clone() for r in range(self.ctx.world_size)]
        else:
            states = [local]
        if self.is_writer:
            atomic_torch_save(path, {**state, "rank_generators": states, "world_size": self.ctx.world_size,
                                     "rank_seed_base": self._seed_base})
        barrier(self.ctx)
