"""The distributed pieces of one PITA ladder run (``methods.pita``) under torchrun.

``PitaParallel(ctx)`` is what ``run_pita`` calls at each step that can be shared out; with one
process every method is exactly the call ``run_pita`` made before (same generators, same draws, so
one-process runs are unchanged bit-for-bit). With R ranks:

* stage-0 data: the baseline's chains split over ranks (``sharded_mcmc.sample_shard``);
* training buffers: each rank evaluates E/kT and ∇E on its share of the positions, all-gathered, so
  every configuration is evaluated once in the whole job;
* annealing: each population of N particles is one ``sharded_anneal`` (global resampling); the
  final resampling by the FK weights uses the shared generator, so every rank ends with the same
  N particles; the ``bridge`` tail runs on the ranks' shards (``ShardedPopulation``: statistics
  all-reduced, resampling global, moves local) and ends with the same N particles on every rank;
* relaxation: each rank relaxes its share of the buffer (``sharded_relax``), then all-gather;
* training: ``DataParallel`` hooks (exact gradient averaging; rank 0 writes checkpoints);
* evaluation counts: every read of the target's counter is the sum over ranks (a collective);
* files: ranks > 0 get a ``WorkerRunDir`` whose writes do nothing (rank 0 writes the one run
  folder; all ranks read it, which assumes a shared file system across nodes), and only rank 0
  computes metrics and plots.

Random streams with R > 1: rank r draws from ``rank_seed(seed, r)`` of the stage's generator; the
resampling generator shared by all ranks is ``rank_seed(seed, 0, step=1)``.
"""

from __future__ import annotations

import torch

from boltzpath.diffusion.buffer import TrainingBuffer, rigid_shape
from boltzpath.io.runs import RunDir
from boltzpath.parallel.ddp_train import DataParallel, rank_seed
from boltzpath.parallel.dist import DistContext, all_gather_cat, barrier, shard, sum_int
from boltzpath.parallel.sharded_mcmc import sample_shard
from boltzpath.parallel.sharded_smc import ShardedPopulation, gather_result, sharded_anneal, sharded_relax
from boltzpath.smc.annealing import anneal
from boltzpath.smc.bridge import bridge, bridge_settings
from boltzpath.smc.relax import relax
from boltzpath.smc.resample import systematic
from boltzpath.smc.tail import final_log_weights


class WorkerRunDir(RunDir):
    """A run folder seen from a rank > 0: reads work, writes are silently skipped."""

    def subdir(self, name: str) -> WorkerRunDir:
        return WorkerRunDir(self.path / name)

    def write_config(self, config):
        return self.path / "config.yaml"

    def write_samples(self, samples, name: str = "samples.npz"):
        return self.path / name

    def write_metrics(self, metrics):
        return self.path / "metrics.json"

    def log(self, message: str) -> None:
        return None

    def mark_complete(self) -> None:
        return None


class PitaParallel:
    """See the module docstring. ``PitaParallel(DistContext())`` is the one-process behaviour."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    def run_dir(self, out, overwrite: bool, resume: bool) -> RunDir:
        """Rank 0 creates (or reopens) the folder; the others wait for it, then read only."""
        rd = RunDir.create(out, overwrite=overwrite, resume=resume) if self.is_main else WorkerRunDir(out)
        barrier(self.ctx)
        return rd

    def barrier(self) -> None:
        barrier(self.ctx)

    def count(self, counter) -> int:
        """The job's evaluation count (Σ over ranks); a collective with R > 1."""
        return sum_int(counter.count, self.ctx)

    def hooks(self) -> DataParallel | None:
        return DataParallel(self.ctx) if self.ctx.distributed else None

    def stage0(self, method, target, n, gen, options, callback):
        from boltzpath.mcmc.registry import method_config, run_method

        if not self.ctx.distributed:
            return run_method(method, target, n, gen, options, callback=callback)
        cfg = method_config(method, options)
        return sample_shard(method, target, n, gen.initial_seed(), cfg, self.ctx,
                            callback=callback, device=torch.device(gen.device))

    def buffer(self, target, x: torch.Tensor, temperature: float | None = None) -> TrainingBuffer:
        """``TrainingBuffer.from_target`` with the evaluations split over ranks."""
        if not self.ctx.distributed:
            return TrainingBuffer.from_target(target, x, temperature)
        off, cnt = shard(x.shape[0], self.ctx)
        e, grad = target.energy_and_grad(torch.as_tensor(x[off: off + cnt], dtype=torch.float32))
        e, grad = all_gather_cat(e, self.ctx), all_gather_cat(grad, self.ctx)
        temps = None if temperature is None else torch.full((e.shape[0],), float(temperature),
                                                            device=e.device)
        return TrainingBuffer(x, e, -grad, temps, *rigid_shape(target))

    def _streams(self, gen: torch.Generator) -> tuple[torch.Generator, torch.Generator]:
        dev = gen.device
        if not hasattr(self, "_own"):
            seed = gen.initial_seed()
            self._own = torch.Generator(device=dev).manual_seed(rank_seed(seed, self.ctx.rank))
            self._shared = torch.Generator(device=dev).manual_seed(rank_seed(seed, 0, step=1))
        return self._own, self._shared

    def anneal_population(self, model, n, schedule, acfg, gen, project, callback, target):
        """One annealed population, its tail correction (``smc.tail``: the true E/kT of every
        particle from ``target``, evaluations split over ranks) and its final resampling
        → (result, final log-weights, indices, equal-weight x)."""
        bridged = acfg.tail == "bridge" and acfg.use_weights
        if not self.ctx.distributed:
            res = anneal(model, n, schedule, acfg, gen, project, callback=callback)
            if bridged:  # the tail correction, its moves and the final resampling in one (smc.bridge)
                x_eq, lw, idx, res.info.tail = bridge(model, res.x, res.log_weights, target, acfg.gamma,
                                                      bridge_settings(acfg), gen)
                return res, lw, idx, x_eq
            lw = self._tail(model, res, acfg, target)
            idx = systematic(gen, lw, n)
            return res, lw, idx, res.x[idx]
        own, shared = self._streams(gen)
        res = sharded_anneal(model, n, schedule, acfg, own, shared, self.ctx, project, callback=callback)
        if bridged:  # on this rank's shard; the results are the whole population's on every rank
            x_eq, lw, idx, tail = bridge(model, res.x, res.log_weights, target, acfg.gamma,
                                         bridge_settings(acfg), own, ShardedPopulation(self.ctx, shared))
            res = gather_result(res, self.ctx)
            res.info.tail = tail
            return res, lw, idx, x_eq
        res = gather_result(res, self.ctx)
        lw = self._tail(model, res, acfg, target)
        idx = systematic(shared, lw, n)
        return res, lw, idx, res.x[idx]

    def _tail(self, model, res, acfg, target):
        x = res.x.detach()
        if not acfg.reweights_on_true_energy:  # no energy needed: final_log_weights keeps log w
            return final_log_weights(model, x, res.log_weights, torch.zeros(x.shape[0], dtype=torch.float64),
                                     acfg)
        with torch.no_grad():
            if self.ctx.distributed:
                off, cnt = shard(x.shape[0], self.ctx)
                e = all_gather_cat(target.energy(x[off: off + cnt]).to(torch.float64), self.ctx)
            else:
                e = target.energy(x).to(torch.float64)
        return final_log_weights(model, x, res.log_weights, e, acfg)

    def relax(self, target, x, gen, cfg, callback):
        """Relaxed (x, energy, grad, info) of all of ``x`` (each rank relaxes its share)."""
        return self._relax(target, x, gen, cfg, callback, record_energies=False)[:4]

    def relax_path(self, target, x, gen, cfg, callback):
        """``relax`` that also returns the E/kT of every chain after each frozen MALA step,
        (steps, n) over all of ``x`` (``smc.relax.relax(record_energies=True)``)."""
        return self._relax(target, x, gen, cfg, callback, record_energies=True)

    def _relax(self, target, x, gen, cfg, callback, record_energies: bool):
        """(x, energy, grad, info, frozen-step energies or None) of all of ``x``, gathered over ranks
        in particle order (the frozen energies along their particle axis)."""
        if not self.ctx.distributed:
            rel = relax(target, x, gen, cfg, callback=callback, record_energies=record_energies)
            return rel.x, rel.energy, rel.grad, rel.info, rel.frozen_energies
        own, _ = self._streams(gen)
        off, cnt = shard(x.shape[0], self.ctx)
        rel = sharded_relax(target, x[off: off + cnt], own, cfg, self.ctx, callback=callback,
                            record_energies=record_energies)
        gather = (all_gather_cat(t, self.ctx) for t in (rel.x, rel.energy, rel.grad))
        frozen = rel.frozen_energies
        if frozen is not None:
            frozen = all_gather_cat(frozen.T.contiguous(), self.ctx).T
        return (*gather, rel.info, frozen)

    def reset_streams(self) -> None:
        """Forget the per-stage streams (call at the start of each stage)."""
        for name in ("_own", "_shared"):
            self.__dict__.pop(name, None)
