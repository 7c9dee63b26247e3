"""The peptide PITA training step, eager against ``train.compile``, in one run (issue 10 speed item,
issue 11's `cpu` budget).

The peptide transformer has no hand-written ``forward_vjp``, so its distillation and force-matching
losses need a double backward. Eagerly that is autograd's double backward: hundreds of small
element-wise kernels (the tanh-GELU's second derivative alone is ≈ 15 passes over (batch, atoms, 4H)).
With ``TrainConfig.compile`` the energy model's ∇ₓU_η is taken with ``torch.func.grad``
(``EnergyModel._func_energy_and_grad``), which ``torch.compile`` traces, so the whole step's losses —
DSM, distillation, pinning, force matching — and their backward compile into fused kernels.

For each ``--target``, the network and training sizes of the PITA ``--preset`` (default ``cpu``: the
ladder whose stage-0 training is most of its wall time), on a buffer of the target's initial
structure plus 0.01 nm Gaussian noise with its true energies and forces (speed does not depend on
the data; no reference or held-out set is read). Two copies of the same initial weights train from
the same seed: "eager" and "compiled". The compiled one first trains ``--warmup`` steps, which
compile (reported as ``compile_s``: a cold inductor cache takes minutes, a warm one seconds), then
rounds alternate the two, ``--steps`` each, so a change of machine load hits both alike. Speed-up =
median over rounds of eager s/step / compiled s/step. Also written: the losses after each timed
block from the same weights and draws (they agree to float rounding).

    .venv/bin/python benchmarks/bench_peptide_train_speed.py [--target al3,aldp-fab] [--preset cpu] \
        [--rounds 3] [--steps 20] [--threads 2]

Writes ``benchmarks/results/bench_peptide_train_speed.json`` (``--out``). Check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from boltzpath import make_target
from boltzpath.diffusion.buffer import TrainingBuffer
from boltzpath.diffusion.train import Models, build_models, train
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.methods.pita_config import resolve_config
from boltzpath.targets.peptide_systems import PEPTIDES

RESULT = Path(__file__).resolve().parent / "results" / "bench_peptide_train_speed.json"
DESCRIPTION = (
    "PITA training step on the peptides (transformer with pair head; DSM + distillation + pinning + "
    "force matching, Adam, clipping, EMA) at a preset's sizes: eager (autograd double backward) vs "
    "train.compile (∇ₓU_η by torch.func.grad inside torch.compile). Rounds alternate the two from "
    "the same weights and draws; speed-up = median over rounds of eager s/step / compiled s/step.")


def problem(target_name: str, preset: str, seed: int = 0):
    """(buffer, models, train config, σ_min, net config) at the preset's sizes."""
    cfg = resolve_config(target_name, preset, seed)
    target = make_target(target_name)
    x0 = torch.as_tensor(target.initial_positions_nm, dtype=torch.float32).reshape(1, -1)
    x = x0 + 0.01 * torch.randn(512, target.dim, generator=torch.Generator().manual_seed(seed))
    buffer = TrainingBuffer.from_target(target, x)
    torch.manual_seed(seed)
    models = Models(*build_models(target, cfg.net), net_config=cfg.net)
    return buffer, models, cfg.train, float(cfg.schedule.sigma_min), cfg.net


def timed(models, buffer, tcfg, steps: int, seed: int, sigma_min: float) -> tuple[float, float]:
    """(seconds per step, loss of the last step) of ``steps`` training steps."""
    cfg = replace(tcfg, steps=steps, log_every=steps, checkpoint_every=10**9)
    t0 = time.perf_counter()
    result = train(models, buffer, cfg, torch.Generator().manual_seed(seed), pin_sigma_default=sigma_min)
    return (time.perf_counter() - t0) / steps, float(result.history[-1]["loss"])


def bench_target(name: str, args, machine: str, command: str) -> list[dict]:
    buffer, models, tcfg, sigma_min, nc = problem(name, args.preset)
    eager_models = models
    compiled_models = copy.deepcopy(models)
    eager_cfg, compiled_cfg = replace(tcfg, compile=False), replace(tcfg, compile=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would void the comparison
        timed(compiled_models, buffer, compiled_cfg, args.warmup, 0, sigma_min)
    compile_s = time.perf_counter() - t0
    timed(eager_models, buffer, eager_cfg, args.warmup, 0, sigma_min)  # the same weights as compiled
    per: dict[str, list[float]] = {"eager": [], "compiled": []}
    losses: dict[str, list[float]] = {"eager": [], "compiled": []}
    for r in range(args.rounds):
        for label, m, c in (("eager", eager_models, eager_cfg), ("compiled", compiled_models, compiled_cfg)):
            s, loss = timed(m, buffer, c, args.steps, 1 + r, sigma_min)
            per[label].append(s)
            losses[label].append(loss)
            print(f"{name} round {r} {label:8s} {s:.3f} s/step (loss {loss:.4f})", file=sys.stderr)
    ratios = [e / c for e, c in zip(per["eager"], per["compiled"], strict=True)]
    net = (f"{nc.kind} hidden {nc.hidden}, {nc.layers} layers, {nc.heads} heads, "
           f"pair features {nc.pair_features}, batch {tcfg.batch_size}")
    rows = []
    for label in ("eager", "compiled"):
        rows.append({
            "benchmark": "peptide_train_speed", "method": f"train step {label}", "target": name,
            "metric": "s_per_step", "value": round(statistics.median(per[label]), 4), "n": args.rounds,
            "noise_floor": None, "energy_evaluations": None,
            "wall_time_s": round(sum(per[label]) * args.steps, 2), "machine": machine, "command": command,
            "preset": args.preset, "net": net, "threads": args.threads,
            "per_round_s_per_step": [round(v, 4) for v in per[label]],
            "loss_per_round": [round(v, 5) for v in losses[label]],
            "speedup_vs_eager": round(statistics.median(ratios), 3) if label == "compiled" else 1.0,
            "speedup_range": ([round(min(ratios), 3), round(max(ratios), 3)] if label == "compiled"
                              else None),
            "compile_s": round(compile_s, 1) if label == "compiled" else None,
        })
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="al3,aldp-fab", help="comma list of peptide targets")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.warmup < 1 or args.threads < 1:
        raise BadInput("--rounds, --steps, --warmup and --threads must be >= 1")
    targets = [t for t in args.target.split(",") if t]
    for name in targets:
        if name not in PEPTIDES:
            raise BadInput(f"--target {name}: not a peptide target ({', '.join(PEPTIDES)})")
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    machine = describe_machine()
    command = (f"python benchmarks/bench_peptide_train_speed.py --target {args.target} "
               f"--preset {args.preset} --rounds {args.rounds} --steps {args.steps} --threads {args.threads}")
    rows = []
    for name in targets:
        rows += bench_target(name, args, machine, command)
    for row in rows:
        row["load_average_1min_start"], row["load_average_1min_end"] = round(load0, 2), round(
            os.getloadavg()[0], 2)
    atomic_write_json(args.out, {"benchmark": "peptide_train_speed", "rows": rows, "machine": machine,
                                 "description": DESCRIPTION})
    for row in rows:
        print(f"{row['target']:9s} {row['method']:20s} {row['value']:.3f} s/step  x{row['speedup_vs_eager']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
