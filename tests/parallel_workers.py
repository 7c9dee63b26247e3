"""Module-level workers run by ``boltzpath.parallel.launch.spawn_local`` in the parallel tests.

Each joins the gloo group from the environment, does one job, and writes its results (tensors via
``torch.save`` of plain dicts, read back with ``weights_only=True``, or JSON) under the folder it is
given.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from boltzpath.parallel.dist import init_from_env, shutdown


# ------------------------------------------------------------------ running a job
def run_job(fn, out: Path, nprocs: int = 2) -> Path:
    """``spawn_local(fn, nprocs, folder)`` in a fresh folder under ``out``; returns that folder.

    One retry, in a new folder, when a rank died of SIGABRT: CI has twice seen rank 0 of the
    training job abort in gloo/C++ ("terminate called without an active exception") before any
    result existed, which 45 local runs under load did not reproduce (boltzpath/parallel/launch.py).
    That is a crash of the process, not a wrong result: every assertion on the results is unchanged,
    a Python exception or a non-zero exit is never retried, and the retry is reported as a warning.
    """
    import warnings

    import torch.multiprocessing as mp

    from boltzpath.parallel.launch import spawn_local

    for attempt in (1, 2):
        folder = Path(out) / f"attempt{attempt}"
        folder.mkdir(parents=True)
        try:
            spawn_local(fn, nprocs, str(folder))
            return folder
        except mp.ProcessExitedException as exc:
            if attempt == 2 or exc.signal_name != "SIGABRT":
                raise
            warnings.warn(f"{fn.__name__}: {exc} (a crash, not a result); running the job once more",
                          RuntimeWarning, stacklevel=2)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ data-parallel training
TRAIN_STEPS, GLOBAL_BATCH = 6, 16


def dw4_problem(init_seed: int = 0):
    """DW-4 buffer and a small score+energy EGNN (the distillation loss takes a double backward)."""
    from boltzpath import make_target
    from boltzpath.diffusion.buffer import TrainingBuffer
    from boltzpath.diffusion.train import Models, NetConfig, TrainConfig, build_models

    target = make_target("dw4")
    gen = torch.Generator().manual_seed(0)
    x = target.project(2.0 * torch.randn(64, target.dim, generator=gen))
    buffer = TrainingBuffer.from_target(target, x, temperature=1.0)
    net = NetConfig(hidden=8, layers=2, emb_dim=8)
    torch.manual_seed(init_seed)
    models = Models(*build_models(target, net), net_config=net)
    cfg = TrainConfig(steps=TRAIN_STEPS, batch_size=GLOBAL_BATCH, pin=0.1, tsm=0.5, log_every=2,
                      checkpoint_every=3)
    return target, buffer, models, cfg


def flat_params(modules) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def averaged_gradient(dp, rank: int, seed: int = 11) -> torch.Tensor:
    """The gradient after ``dp.after_backward`` of rank ``rank``'s loss on its half-batch."""
    from boltzpath.diffusion.train import _step_losses
    from boltzpath.parallel.ddp_train import rank_seed

    _, buffer, models, cfg = dw4_problem()
    gen = torch.Generator().manual_seed(rank_seed(seed, rank))
    batch = buffer.sample(GLOBAL_BATCH // 2, gen, cfg.augment)
    losses = _step_losses(models, batch, cfg, gen, 0.01)
    weights = {"dsm": cfg.dsm, "tsm": cfg.tsm, "distill": cfg.distill, "pin": cfg.pin}
    sum(weights[k] * v for k, v in losses.items()).backward()
    params = [p for m in models.modules().values() for p in m.parameters()]
    dp.after_backward(params)
    return torch.cat([p.grad.flatten() for p in params])


def train_worker(out: str) -> None:
    from dataclasses import replace

    from boltzpath.diffusion.train import train
    from boltzpath.parallel.ddp_train import DataParallel

    ctx = init_from_env("cpu")
    out_dir = Path(out)
    dp = DataParallel(ctx)
    # (a) uninterrupted run
    _, buffer, models, cfg = dw4_problem()
    if ctx.rank == 1:  # a different initialisation on rank 1: the broadcast must overwrite it
        with torch.no_grad():
            for m in models.modules().values():
                for p in m.parameters():
                    p.add_(1.0)
    res = train(models, buffer, cfg, torch.Generator().manual_seed(5), hooks=dp)
    full = {"params": flat_params(res.models.modules().values()),
            "ema": flat_params(res.ema.modules().values()),
            "loss": torch.tensor([h["loss"] for h in res.history])}
    # (b) killed after 3 steps, resumed to 6 from the checkpoint only rank 0 wrote
    ckpt = out_dir / "model.pt"
    _, buffer, models, cfg = dw4_problem()
    train(models, buffer, replace(cfg, steps=3), torch.Generator().manual_seed(5), checkpoint_path=ckpt,
          hooks=dp)
    _, buffer, models, cfg = dw4_problem(init_seed=1)  # other weights: the checkpoint must restore them
    res = train(models, buffer, cfg, torch.Generator().manual_seed(5), checkpoint_path=ckpt, hooks=dp)
    resumed = {"params": flat_params(res.models.modules().values()),
               "ema": flat_params(res.ema.modules().values())}
    # (c) one averaged gradient, unclipped (Adam and clipping hide the scale of the update)
    grads = averaged_gradient(dp, ctx.rank)
    torch.save({"full": full, "resumed": resumed, "grad": grads}, out_dir / f"rank{ctx.rank}.pt")
    shutdown(ctx)


# ------------------------------------------------------------------ sharded SMC
SMC_REPLICAS, SMC_PARTICLES = 8, 1000


def smc_mixtures():
    """(schedule, 1-D two-mode mixture of tests/test_smc_annealing.py, 1-D single Gaussian)."""
    from boltzpath.diffusion.schedule import KarrasSchedule
    from boltzpath.smc.exact import GaussianMixtureVE

    schedule = KarrasSchedule(sigma_min=0.05, sigma_max=80.0)
    mix = GaussianMixtureVE([0.5, 0.5], [[-2.0], [2.0]], [0.3, 1.0], schedule)
    gauss = GaussianMixtureVE([1.0], [[1.0]], [0.5], schedule)
    return schedule, mix, gauss


def smc_worker(out: str) -> None:
    from boltzpath.parallel.ddp_train import rank_seed
    from boltzpath.parallel.sharded_smc import gather_result, sharded_anneal
    from boltzpath.smc.annealing import AnnealConfig
    from boltzpath.smc.weights import weighted_mean

    ctx = init_from_env("cpu")
    schedule, mix, gauss = smc_mixtures()
    rows = {"p_pos": [], "log_z": [], "ess": [], "resampled": []}
    for r in range(SMC_REPLICAS):
        # P(x > 0) under p^2 of the two-mode mixture (100 steps, as the one-process test)
        cfg = AnnealConfig(n_steps=100, gamma=2.0, dtype="float64", tail="fk")
        res = sharded_anneal(mix, SMC_PARTICLES, schedule, cfg,
                             torch.Generator().manual_seed(rank_seed(100 + r, ctx.rank)),
                             torch.Generator().manual_seed(10_000 + r), ctx)
        full = gather_result(res, ctx)
        rows["p_pos"].append(float(weighted_mean((full.x[:, 0] > 0).double(), full.log_weights)))
        rows["resampled"].append(res.info.n_resampling_events)
        # log Z of the single Gaussian under γ = 2 (200 steps: small discretisation bias)
        cfg = AnnealConfig(n_steps=200, gamma=2.0, dtype="float64", tail="fk")
        res = sharded_anneal(gauss, SMC_PARTICLES, schedule, cfg,
                             torch.Generator().manual_seed(rank_seed(200 + r, ctx.rank)),
                             torch.Generator().manual_seed(20_000 + r), ctx)
        rows["log_z"].append(res.log_z)
        rows["ess"].append(res.ess)
    # no resampling: the global log Z must be the log-mean-exp of all final weights (telescoping)
    cfg = AnnealConfig(n_steps=30, gamma=2.0, dtype="float64", ess_threshold=0.0, tail="fk")
    res = sharded_anneal(mix, 301, schedule, cfg, torch.Generator().manual_seed(rank_seed(7, ctx.rank)),
                         torch.Generator().manual_seed(8), ctx)
    full = gather_result(res, ctx)
    out_rows = {k: torch.tensor(v, dtype=torch.float64) for k, v in rows.items()}
    out_rows.update({"noresample_log_z": torch.tensor(res.log_z, dtype=torch.float64),
                     "noresample_local_log_w": res.log_weights, "noresample_all_log_w": full.log_weights})
    torch.save(out_rows, Path(out) / f"smc{ctx.rank}.pt")
    shutdown(ctx)


# ------------------------------------------------------------------ sharded tempered bridge
BRIDGE_REPLICAS, BRIDGE_PARTICLES, BRIDGE_MOVES = 8, 1000, 5
BRIDGE_UNEVEN = 301  # split 151 + 150: shards of different sizes


def bridge_worker(out: str) -> None:
    """The wrong-model bridge of tests/test_smc_bridge.py on a population split over the ranks."""
    from test_smc_bridge import GAMMA, MIX, PerturbedMixture, _exact_draws, _Model, _Target

    from boltzpath.parallel.ddp_train import rank_seed
    from boltzpath.parallel.dist import all_gather_json, shard, sum_int
    from boltzpath.parallel.sharded_smc import ShardedPopulation
    from boltzpath.smc.bridge import BridgeSettings, bridge

    ctx = init_from_env("cpu")
    wrong = _Model(PerturbedMixture(MIX))
    settings = BridgeSettings(moves=BRIDGE_MOVES, step_size=0.01)  # the one-process test's settings
    rows = []
    for r in range(BRIDGE_REPLICAS + 1):
        n_total = BRIDGE_PARTICLES if r < BRIDGE_REPLICAS else BRIDGE_UNEVEN
        _, n_local = shard(n_total, ctx)
        own = torch.Generator().manual_seed(rank_seed(900 + r, ctx.rank))  # draws and MALA noise
        shared = torch.Generator().manual_seed(30_000 + r)  # resampling only, the same on every rank
        x0 = _exact_draws(wrong, n_local, own)
        target = _Target()
        x, lw, idx, info = bridge(wrong, x0, torch.zeros(n_local, dtype=torch.float64), target, GAMMA,
                                  settings, own, ShardedPopulation(ctx, shared))
        rows.append({"n": n_total, "n_local": n_local, "p_pos": float((x[:, 0] > 0).double().mean()),
                     "x": x[:, 0].tolist(), "idx": idx.tolist(), "lw_shape": list(lw.shape),
                     "betas": info["betas"], "betas_all_ranks": all_gather_json(info["betas"], ctx),
                     "levels": info["levels"], "resampled": info["resampled"],
                     "reached_by_moves": info["reached_by_moves"], "ess": info["ess"],
                     "final_ess_fraction": info["final_ess_fraction"],
                     "evaluations_local": target.evaluations,
                     "evaluations": sum_int(target.evaluations, ctx)})
    # moves = 0: pure reweighting and resampling of one fixed population of BRIDGE_UNEVEN particles
    # (drawn identically on every rank, each keeps its shard) — comparable with one process exactly
    off, n_local = shard(BRIDGE_UNEVEN, ctx)
    x0 = _exact_draws(wrong, BRIDGE_UNEVEN, torch.Generator().manual_seed(5))[off: off + n_local]
    x, lw, idx, info = bridge(wrong, x0, torch.zeros(n_local, dtype=torch.float64), _Target(), GAMMA,
                              BridgeSettings(moves=0), torch.Generator().manual_seed(rank_seed(6, ctx.rank)),
                              ShardedPopulation(ctx, torch.Generator().manual_seed(6)))
    fixed = {"x": x[:, 0].tolist(), "lw": lw.tolist(), "idx": idx.tolist(), "betas": info["betas"],
             "ess": info["ess"], "resampled": info["resampled"],
             "final_ess_fraction": info["final_ess_fraction"]}
    (Path(out) / f"bridge{ctx.rank}.json").write_text(json.dumps({"rows": rows, "fixed": fixed}))
    shutdown(ctx)


# ------------------------------------------------------------------ the launcher itself
def exit_worker(out: str) -> None:
    """No process group: rank 0 writes a file and returns; rank 1 raises (spawn_local must report it)."""
    import os
    import time

    rank = int(os.environ["RANK"])
    done = Path(out, "rank0.json")
    if rank == 1:
        deadline = time.monotonic() + 120.0  # fail only after rank 0 is done (spawn then kills the rest)
        while not done.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise ValueError("rank 1 fails on purpose")
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rank": rank, "gloo_ifname": os.environ.get("GLOO_SOCKET_IFNAME")}))
    tmp.replace(done)


def abort_once_worker(out: str) -> None:
    """Rank 0 aborts (SIGABRT, like the CI crash) in the first attempt's folder; otherwise a file."""
    import os

    rank = int(os.environ["RANK"])
    if rank == 0 and Path(out).name == "attempt1":
        os.abort()
    Path(out, f"ok{rank}").write_text("ok")


# ------------------------------------------------------------------ relaxation with recorded energies
RELAX_N, RELAX_STEPS, RELAX_ADAPT = 301, 12, 4  # 301: shards of 151 + 150


def relax_path_worker(out: str) -> None:
    """``PitaParallel.relax_path`` over two ranks: the gathered frozen-step energies (steps, n) and
    the gathered final energies, in the same particle order."""
    from boltzpath.parallel.pita_parallel import PitaParallel
    from boltzpath.smc.relax import RelaxConfig
    from boltzpath.targets.base import Target

    class Quadratic(Target):
        name = "quadratic"

        def _reference_energy(self, x):
            return 0.5 * (x ** 2).sum(-1)

    ctx = init_from_env("cpu")
    x = torch.randn(RELAX_N, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cfg = RelaxConfig(n_steps=RELAX_STEPS, adapt_steps=RELAX_ADAPT, step_size=0.05, repair_above=None)
    rx, e, _, info, frozen = PitaParallel(ctx).relax_path(Quadratic(3), x, torch.Generator().manual_seed(1),
                                                           cfg, callback=None)
    torch.save({"x": rx, "energy": e, "frozen": frozen, "start": x}, Path(out) / f"relax{ctx.rank}.pt")
    shutdown(ctx)
