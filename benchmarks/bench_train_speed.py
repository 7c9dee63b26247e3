"""PITA's training step on 2 CPU cores: the original eager step against the fast path, in one run.

Issue 10's speed goal is ≥ 3× on the training step (score + energy EGNN: DSM, distillation through
∇ₓU_η, pinning; Adam, gradient clipping, EMA) on 2 CPU cores. Each configuration below is run as
its own job (``parallel.launch.spawn_local``, gloo, a fresh process group), with the LJ-13 `quick`
preset's sizes unless ``--size`` (EGNN hidden 32, 3 layers, embedding 16, global batch 64):

  before[1x1]   autograd double backward, eager, n² first layer, the unused last node update,
                multi-tensor Adam, a Python loop for the EMA: 1 process, 1 thread
  before[1x2]   the same, 1 process, 2 intra-op threads
  after[1x1]    hand-written ∇ₓU_η (``net.analytic_grad``) + ``torch.compile`` (``train.compile``) +
                the first layer on unordered pairs + no unused last node update + fused Adam +
                a multi-tensor EMA: 1 process, 1 thread
  after[1x2]    the same, 1 process, 2 intra-op threads (the alternative to data parallelism)
  after[2x1]    the same, data-parallel over 2 processes (``torchrun``'s layout, exact gradient
                averaging, global batch unchanged), 1 thread each

"before" is the better of before[1x1] and before[1x2], per round. Rounds interleave the
configurations (each round runs every configuration once, in turn), so a change of machine load
hits them alike; each row's speed-up is the median over rounds of its rate / best-before. Every job
first trains ``--warmup`` steps (for the compiled ones: loading or building the compiled kernels)
and is then timed over ``--steps`` steps between barriers on rank 0. The first compiled job's
warm-up is reported as ``compile_s`` (a cold inductor cache: minutes; a warm one: seconds).
Also written: the loss after the timed steps for each configuration from the same weights and
seed (the 1-process versions compute the same function, so they agree closely; the 2-process one
draws different minibatches per rank).

    .venv/bin/python benchmarks/bench_train_speed.py [--rounds 3] [--steps 60] [--size 32,3,16,64] [--quick]

Writes ``benchmarks/results/bench_train_speed.json`` (``--out``). Check ``uptime`` first: the
2-process job needs both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.parallel.launch import spawn_local

DESCRIPTION = (
    "PITA training step (LJ-13, score + energy EGNN, DSM + distillation + pinning, Adam, clipping, EMA) "
    "on 2 CPU cores. before: autograd double backward, eager, n² first layer, unused last node update, "
    "multi-tensor Adam, Python-loop EMA; after: analytic ∇ₓU_η + torch.compile + first layer on unordered "
    "pairs + no unused last node update + fused Adam + multi-tensor EMA. [PxT] = P processes (data "
    "parallel, gloo) × T threads. Each configuration is its own job, interleaved over rounds; "
    "speed-up = median over rounds of the rate / the better of before[1x1] and before[1x2] in that "
    "round. first_warmup_s of a compiled configuration is its (cold) compile.")
RESULT = Path(__file__).resolve().parent / "results" / "bench_train_speed.json"
CONFIGS = {  # name: (processes, threads per process, fast path)
    "before[1x1]": (1, 1, False),
    "before[1x2]": (1, 2, False),
    "after[1x1]": (1, 1, True),
    "after[1x2]": (1, 2, True),
    "after[2x1]": (2, 1, True),
}


def _use_the_old_optimiser_and_ema() -> None:
    """"before" also keeps the old per-step bookkeeping: Adam's multi-tensor update (not the fused
    one) and an EMA that loops over the parameters and buffers in Python. Patched into this worker
    process only (each configuration runs in its own processes)."""
    import importlib

    import torch

    train_mod = importlib.import_module("boltzpath.diffusion.train")
    ema_mod = importlib.import_module("boltzpath.diffusion.ema")
    train_mod.adam = lambda params, lr: torch.optim.Adam(params, lr=lr, foreach=True)

    @torch.no_grad()
    def update(self, model, step):
        d = self.decay_at(int(step))
        for p_ema, p in zip(self.module.parameters(), model.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    ema_mod.Ema.update = update


def worker(out: str, size: list[int], fast: bool, warmup: int, steps: int) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # inductor's own deprecation notices
    from lj13_training import lj13_training_problem

    from boltzpath.diffusion.train import TrainConfig, train
    from boltzpath.parallel.ddp_train import DataParallel
    from boltzpath.parallel.dist import barrier, init_from_env, shutdown

    hidden, layers, emb, batch = size
    if not fast:
        _use_the_old_optimiser_and_ema()
    ctx = init_from_env("cpu")
    # the same initial weights in every configuration; "before" also runs the first layer on n²
    _, buffer, models = lj13_training_problem(hidden, layers, emb, fast, n_buffer=512, first_layer_pairs=fast)
    hooks = DataParallel(ctx) if ctx.world_size > 1 else None

    def run(n: int, seed: int):
        cfg = TrainConfig(steps=n, batch_size=batch, pin=1.0, log_every=n, checkpoint_every=10**9,
                          compile=fast)
        barrier(ctx)
        t0 = time.perf_counter()
        result = train(models, buffer, cfg, torch.Generator().manual_seed(seed), hooks=hooks)
        barrier(ctx)
        return time.perf_counter() - t0, result.history[-1]["loss"]

    warm_s, _ = run(warmup, 0)
    timed_s, loss = run(steps, 1)
    if ctx.is_main:
        Path(out).write_text(json.dumps({"warmup_s": warm_s, "timed_s": timed_s, "loss": loss}))
    shutdown(ctx)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--size", default="32,3,16,64", help="hidden,layers,emb_dim,global batch")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 round of 10 steps")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 10, 2
    size = [int(v) for v in args.size.split(",")]
    if len(size) != 4 or size[3] % 2:
        ap.error("--size is hidden,layers,emb_dim,batch with an even batch")
    load0 = os.getloadavg()[0]
    rates: dict[str, list[float]] = {k: [] for k in CONFIGS}
    info: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, (procs, threads, fast) in CONFIGS.items():
                out = str(Path(tmp) / f"{r}_{procs}_{threads}_{int(fast)}.json")
                spawn_local(worker, procs, out, size, fast, args.warmup, args.steps, threads=threads)
                res = json.loads(Path(out).read_text())
                rates[name].append(args.steps / res["timed_s"])
                info.setdefault(name, {"first_warmup_s": res["warmup_s"], "loss": res["loss"]})
                print(f"round {r} {name:12s} {rates[name][-1]:7.2f} steps/s "
                      f"(warm-up {res['warmup_s']:.1f} s)", file=sys.stderr)
    best_before = [max(a, b) for a, b in zip(rates["before[1x1]"], rates["before[1x2]"], strict=True)]
    machine = describe_machine()
    command = (f"python benchmarks/bench_train_speed.py --rounds {args.rounds} --steps {args.steps} "
               f"--size {args.size}" + ("" if args.out == RESULT else f" --out {args.out.name}"))
    rows = []
    for name, (procs, threads, fast) in CONFIGS.items():
        ratios = [a / b for a, b in zip(rates[name], best_before, strict=True)]
        rows.append({
            "benchmark": "train_speed", "method": f"train step {name}", "target": "lj13",
            "metric": "global_train_steps_per_s", "value": round(statistics.median(rates[name]), 3),
            "n": args.rounds, "noise_floor": None, "energy_evaluations": None,
            "wall_time_s": round(sum(args.steps / v for v in rates[name]), 2), "machine": machine,
            "command": command, "processes": procs, "threads": threads,
            "path": "analytic+compile+pair layer+fused Adam/EMA" if fast else "autograd, eager",
            "net": f"hidden {size[0]}, {size[1]} layers, emb {size[2]}, global batch {size[3]}",
            "speedup_vs_best_before": round(statistics.median(ratios), 3),
            "speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "per_round": [round(v, 3) for v in rates[name]],
            "first_warmup_s": round(info[name]["first_warmup_s"], 1),
            "loss_after": round(info[name]["loss"], 5),
            "load_average_1min_start": round(load0, 2),
            "load_average_1min_end": round(os.getloadavg()[0], 2),
        })
    atomic_write_json(args.out, {"benchmark": "train_speed", "rows": rows, "machine": machine,
                                 "description": DESCRIPTION})
    for row in rows:
        print(f"{row['method']:24s} {row['value']:8.2f} steps/s  x{row['speedup_vs_best_before']} "
              f"{row['speedup_range']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
