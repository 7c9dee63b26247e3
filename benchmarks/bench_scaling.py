"""Scaling beyond one process on the CPU: data-parallel training and sharded SMC, 1 vs 2 processes.

For each world size R (default 1 and 2; gloo, ``OMP_NUM_THREADS=1`` per process, so R processes use
R cores) the same job is run with ``boltzpath.parallel.launch.spawn_local``:

  training  ``diffusion.train`` with ``DataParallel`` hooks (score+energy EGNN, distillation's double
            backward), fixed *global* batch B split over ranks → global optimiser steps per second;
  SMC       ``sharded_anneal`` of that model, fixed N particles split over ranks, global resampling
            → particle·steps per second (N · n_steps / wall time).

This is strong scaling (the work per step is fixed, the ranks share it). Ratios rate(R)/rate(1) are
reported from the same invocation. Timings come from rank 0 between barriers, after warm-up. On a
shared machine the numbers move with the load: say so when quoting them.
Writes ``benchmarks/results/bench_scaling.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scaling.py [--quick] [--procs 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.parallel.launch import spawn_local

RESULT = Path(__file__).resolve().parent / "results" / "bench_scaling.json"
FULL = {"target": "lj13", "hidden": 32, "layers": 3, "batch": 128, "train_steps": 40, "warmup": 3,
        "particles": 256, "smc_steps": 20, "divergence": "hutchinson"}
QUICK = {"target": "dw4", "hidden": 8, "layers": 2, "batch": 32, "train_steps": 6, "warmup": 1,
         "particles": 64, "smc_steps": 5, "divergence": "exact"}


def worker(out: str, cfg: dict) -> None:
    from boltzpath import make_target
    from boltzpath.diffusion.buffer import TrainingBuffer
    from boltzpath.diffusion.schedule import KarrasSchedule
    from boltzpath.diffusion.train import Models, NetConfig, TrainConfig, build_models, train
    from boltzpath.parallel.ddp_train import DataParallel, rank_seed
    from boltzpath.parallel.dist import barrier, init_from_env, shutdown
    from boltzpath.parallel.sharded_smc import sharded_anneal
    from boltzpath.smc.annealing import AnnealConfig
    from boltzpath.smc.model import NetworkModel

    ctx = init_from_env("cpu")
    target = make_target(cfg["target"])
    x = target.prior_sample(512, torch.Generator().manual_seed(0))
    buffer = TrainingBuffer.from_target(target, x, temperature=1.0)
    net = NetConfig(hidden=cfg["hidden"], layers=cfg["layers"], emb_dim=16)
    torch.manual_seed(0)
    models = Models(*build_models(target, net), net_config=net)
    dp = DataParallel(ctx)

    def run_train(steps: int) -> float:
        tcfg = TrainConfig(steps=steps, batch_size=cfg["batch"], pin=0.1, log_every=10**6,
                           checkpoint_every=10**6)
        barrier(ctx)
        t0 = time.perf_counter()
        train(models, buffer, tcfg, torch.Generator().manual_seed(1), hooks=dp)
        barrier(ctx)
        return time.perf_counter() - t0

    run_train(cfg["warmup"])
    train_s = run_train(cfg["train_steps"])
    schedule = KarrasSchedule(0.05, 80.0)
    model = NetworkModel.from_diffusion(models.score, models.energy, schedule, target.dim, target.project)
    acfg = AnnealConfig(n_steps=cfg["smc_steps"], gamma=1.5, divergence=cfg["divergence"])

    def run_smc(steps: int) -> float:
        barrier(ctx)
        t0 = time.perf_counter()
        own, shared = torch.Generator().manual_seed(rank_seed(2, ctx.rank)), torch.Generator().manual_seed(3)
        sharded_anneal(model, cfg["particles"], schedule, replace(acfg, n_steps=steps), own, shared, ctx,
                       target.project)
        barrier(ctx)
        return time.perf_counter() - t0

    run_smc(1)
    smc_s = run_smc(cfg["smc_steps"])
    if ctx.is_main:
        (Path(out) / f"r{ctx.world_size}.json").write_text(json.dumps({"train_s": train_s, "smc_s": smc_s}))
    shutdown(ctx)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny DW-4 configuration (smoke test)")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if 1 not in args.procs:
        args.procs = [1, *args.procs]
    rates: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in args.procs:
            spawn_local(worker, r, tmp, cfg)
            t = json.loads((Path(tmp) / f"r{r}.json").read_text())
            rates[r] = {"train": cfg["train_steps"] / t["train_s"],
                        "smc": cfg["particles"] * cfg["smc_steps"] / t["smc_s"],
                        "train_s": t["train_s"], "smc_s": t["smc_s"]}
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_scaling.py" + (" --quick" if args.quick else "")
    machine = describe_machine()
    rows = []
    for r, v in rates.items():
        common = {"benchmark": "scaling", "target": cfg["target"], "n": r, "noise_floor": None,
                  "energy_evaluations": None, "machine": machine, "command": command, "processes": r}
        rows.append({**common, "method": "data-parallel training (gloo)", "metric": "global steps/s",
                     "value": round(v["train"], 3), "wall_time_s": round(v["train_s"], 3),
                     "speedup_vs_1": round(v["train"] / rates[1]["train"], 3)})
        rows.append({**common, "method": "sharded FK-SMC (gloo)", "metric": "particle·steps/s",
                     "value": round(v["smc"], 1), "wall_time_s": round(v["smc_s"], 3),
                     "speedup_vs_1": round(v["smc"] / rates[1]["smc"], 3)})
    result = {"benchmark": "scaling", "config": cfg, "quick": args.quick, "machine": machine,
              "note": "n = number of processes (1 torch thread each); strong scaling; shared machine",
              "rows": rows}
    atomic_write_json(args.out, result)
    for row in rows:
        print(f"{row['method']:32s} R={row['processes']}  {row['metric']:18s} {row['value']:>10}  "
              f"x{row['speedup_vs_1']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
