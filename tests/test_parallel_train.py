"""Data-parallel training (``boltzpath.parallel.ddp_train``) with 2 gloo processes on the CPU.

The exact answer: with the gradient averaged over R ranks of equal batches b = B/R, the update
equals one process's update on the union batch (the mean loss over the union). The reference below
replays both ranks' minibatches and noise (same generators, same draw order) in one process and
averages the two losses before ``backward()``; parameters must agree to float32 round-off.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from parallel_workers import GLOBAL_BATCH, TRAIN_STEPS, dw4_problem, flat_params, run_job, train_worker

from boltzpath.diffusion.ema import Ema
from boltzpath.diffusion.train import _step_losses, train
from boltzpath.parallel.ddp_train import DataParallel, rank_seed
from boltzpath.parallel.dist import DistContext


def _union_batch_reference(seed: int = 5, world: int = 2):
    """One process: per step, the mean of the R ranks' losses (each its own generator), one update."""
    target, buffer, models, cfg = dw4_problem()
    gens = [torch.Generator().manual_seed(rank_seed(seed, r)) for r in range(world)]
    modules = models.modules()
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, foreach=True)
    emas = {k: Ema(m, cfg.ema) for k, m in modules.items()}
    weights = {"dsm": cfg.dsm, "tsm": cfg.tsm, "distill": cfg.distill, "pin": cfg.pin}
    for step in range(TRAIN_STEPS):
        total = 0.0
        for g in gens:
            batch = buffer.sample(GLOBAL_BATCH // world, g, cfg.augment)
            losses = _step_losses(models, batch, cfg, g, 0.01)
            total = total + sum(weights[k] * v for k, v in losses.items()) / world
        opt.zero_grad(set_to_none=True)
        total.backward()
        for m in modules.values():
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
        opt.step()
        for k, m in modules.items():
            emas[k].update(m, step)
    return flat_params(modules.values()), flat_params(e.module for e in emas.values())


def _union_batch_gradient(seed: int = 11, world: int = 2) -> torch.Tensor:
    _, buffer, models, cfg = dw4_problem()
    weights = {"dsm": cfg.dsm, "tsm": cfg.tsm, "distill": cfg.distill, "pin": cfg.pin}
    total = 0.0
    for r in range(world):
        g = torch.Generator().manual_seed(rank_seed(seed, r))
        batch = buffer.sample(GLOBAL_BATCH // world, g, cfg.augment)
        losses = _step_losses(models, batch, cfg, g, 0.01)
        total = total + sum(weights[k] * v for k, v in losses.items()) / world
    total.backward()
    params = [p for m in models.modules().values() for p in m.parameters()]
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in params])


def test_two_process_training_equals_union_batch_training(tmp_path):
    out = run_job(train_worker, tmp_path)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    ref_params, ref_ema = _union_batch_reference()
    # float32 round-off only (different summation order of the two half-batch gradients through 6
    # Adam steps): 1e-5 relative. A rank that skipped the all-reduce, used the full batch, or the
    # same generator on both ranks differs by O(lr) = 1e-3 per parameter.
    for r in range(2):
        torch.testing.assert_close(ranks[r]["full"]["params"], ref_params, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ranks[r]["full"]["ema"], ref_ema, rtol=1e-5, atol=1e-6)
    # the averaged gradient itself is the union-batch gradient (the scale matters here: an all-reduce
    # that sums instead of averaging is invisible to Adam's normalised, clipped updates above)
    ref_grad = _union_batch_gradient()
    for r in range(2):
        torch.testing.assert_close(ranks[r]["grad"], ref_grad, rtol=1e-5, atol=1e-7)
    # every rank holds bit-identical weights and EMA (same averaged update applied everywhere)
    assert torch.equal(ranks[0]["full"]["params"], ranks[1]["full"]["params"])
    assert torch.equal(ranks[0]["full"]["ema"], ranks[1]["full"]["ema"])
    assert torch.equal(ranks[0]["full"]["loss"], ranks[1]["full"]["loss"])  # logged losses averaged
    # kill at step 3 + resume (with the same R) reproduces the uninterrupted run bit-for-bit
    for r in range(2):
        assert torch.equal(ranks[r]["resumed"]["params"], ranks[r]["full"]["params"])
        assert torch.equal(ranks[r]["resumed"]["ema"], ranks[r]["full"]["ema"])
    # the checkpoint holds both ranks' generator states; resuming it with ONE process runs on
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rank_generators"]) == 2 and ckpt["step"] == TRAIN_STEPS
    _, buffer, models, cfg = dw4_problem(init_seed=3)
    res = train(models, buffer, replace(cfg, steps=TRAIN_STEPS + 2), torch.Generator().manual_seed(5),
                checkpoint_path=out / "model.pt", hooks=DataParallel(DistContext()))
    assert res.step == TRAIN_STEPS + 2 and torch.isfinite(flat_params(res.models.modules().values())).all()
