"""EGNN speed on CPU: the edge-list reference ("before") vs the dense broadcast path ("after").

Measures iterations per second at LJ-13, batch 256, hidden 64, 4 layers (the PITA LJ-13 size) for
  forward           F(x, c_noise) under no_grad (SMC drift evaluations),
  forward+backward  a DSM-type loss through the score model D_θ, backward to the parameters,
  double backward   the energy-distillation loss λ‖D_E − D‖² with D_E = x − σ²∇ₓU_η (create_graph),
  train step        one full ``train`` step (score+energy: DSM + distillation, Adam, EMA),
and tries ``torch.compile`` on the dense forward (reported honestly, including failures).
Writes ``benchmarks/results/egnn_speed.json``. ``--quick`` uses fewer repetitions.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_egnn.py [--quick] [--threads 1]

``--train-step`` instead measures the PITA training step (score+energy: DSM + distillation +
pinning, Adam, EMA; the ``pita_quick`` preset's sizes unless ``--size hidden,layers,emb,batch``)
in three versions built from the same weights: autograd (the default: ∇ₓU_η by autograd, the
distillation a double backward), ``analytic`` (``NetConfig.analytic_grad``: the hand-written
reverse pass, one backward) and ``analytic+compile`` (also ``TrainConfig.compile``). They run
interleaved in one process (a few steps of each in turn) and the speed-up is the median of the
per-round ratios, so a change of machine load hits all three alike. Also written: the largest
relative difference of the first steps' losses against autograd (the versions compute the same
function), and the compile time (the first compiled step; a cold inductor cache costs minutes,
a warm one seconds). Writes ``benchmarks/results/egnn_train_step.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_egnn.py --train-step [--rounds 8] \
        [--size 32,3,16,64 --size 48,3,32,128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from boltzpath import make_target
from boltzpath.diffusion import Models, NetConfig, TrainConfig, TrainingBuffer, build_models, train
from boltzpath.diffusion.losses import edm_weight
from boltzpath.diffusion.precond import edm_coefficients
from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine


def _rate(fn, reps: int, warmup: int = 1) -> tuple[float, float, float]:
    """(median rate, best rate, total seconds) over ``reps`` timed calls of fn() after ``warmup``.

    The machine is shared: the best (least-disturbed) call is the closer estimate of the code's own
    speed, the median what a run under the same load sees. Both are reported.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times), 1.0 / min(times), sum(times)


def _cases(net, path: str, x, c, sigma):
    forward = net.forward if path == "dense" else net.forward_edges
    c_skip, c_out, c_in, _ = edm_coefficients(sigma[:, None])

    def fwd():
        with torch.no_grad():
            forward(x, c)

    def fwd_bwd():
        net.zero_grad(set_to_none=True)
        d = c_skip * x + c_out * forward(c_in * x, c)
        (edm_weight(sigma)[:, None] * (d - x) ** 2).mean().backward()

    def double_bwd():
        net.zero_grad(set_to_none=True)
        xg = x.detach().requires_grad_(True)
        xin = c_in * xg
        u = (xg * xg).sum(-1) / (2 * (1 + sigma**2)) - (forward(xin, c) * xin).sum(-1) / sigma
        (g,) = torch.autograd.grad(u.sum(), xg, create_graph=True)
        d_e = xg - sigma[:, None] ** 2 * g
        (edm_weight(sigma)[:, None] * (d_e - x) ** 2).mean().backward()

    return {"forward": fwd, "forward+backward": fwd_bwd, "double_backward": double_bwd}


def _train_step_rows(args, size: list[int], machine: str) -> list[dict]:
    """The training-step comparison of the module docstring (``--train-step``) at one size."""
    hidden, layers, emb, batch = size
    target = make_target("lj13")
    g = torch.Generator().manual_seed(0)
    buffer = TrainingBuffer.from_target(target, target.project(torch.randn(512, target.dim, generator=g)))
    variants = {"autograd": (False, False), "analytic": (True, False), "analytic+compile": (True, True)}
    models = {}
    for name, (analytic, _) in variants.items():
        torch.manual_seed(0)  # the same initial weights for every version
        net_cfg = NetConfig(hidden=hidden, layers=layers, emb_dim=emb, analytic_grad=analytic)
        models[name] = Models(*build_models(target, net_cfg), net_config=net_cfg)

    def cfg(steps, compile_):
        return TrainConfig(steps=steps, batch_size=batch, pin=1.0, log_every=1, compile=compile_)

    first = {}  # the first 3 steps from the same weights and draws: losses, and the compile time
    for name, (_, compile_) in variants.items():
        t0 = time.perf_counter()
        first[name] = train(models[name], buffer, cfg(3, compile_), torch.Generator().manual_seed(1))
        print(f"{name}: first 3 steps {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    times = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (_, compile_) in variants.items():
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(2 + r)
            train(models[name], buffer, cfg(args.steps_per_round, compile_), gen)
            times[name].append((time.perf_counter() - t0) / args.steps_per_round)
    command = (
        f"OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/bench_egnn.py --train-step "
        + " ".join(f"--size {','.join(map(str, sz))}" for sz in args.size)
        + f" --rounds {args.rounds} --steps-per-round {args.steps_per_round} --threads {args.threads}"
        + (f" --out {args.out}" if args.out else "")
    )
    size = f"hidden {hidden}, {layers} layers, emb {emb}"
    rows = []

    def row(method, metric, value, wall=None, **extra):
        rows.append({
            "benchmark": "egnn_train_step", "method": method, "target": "lj13", "metric": metric,
            "value": None if value is None else round(value, 4), "n": batch, "noise_floor": None,
            "energy_evaluations": None, "wall_time_s": None if wall is None else round(wall, 2),
            "machine": machine, "command": command, "net": size, "threads": args.threads,
            "load_average_1min": round(os.getloadavg()[0], 2), **extra,
        })
        print(f"{method:>28s}  {metric:<30s} {value}", file=sys.stderr)

    keys = [k for k in first["autograd"].history[0] if k in ("dsm", "distill", "pin")]
    for name in variants:
        t = times[name]
        ratios = [a / b for a, b in zip(times["autograd"], t, strict=True)]
        wall = sum(t) * args.steps_per_round
        row(f"train_step[{name}]", "train_steps_per_s", 1.0 / statistics.median(t), wall,
            best=round(1.0 / min(t), 3), speedup_vs_autograd=round(statistics.median(ratios), 3),
            rounds=args.rounds)
        if name != "autograd":  # step 1: the same weights and draws, so the same function's values
            a, b = first["autograd"].history[0], first[name].history[0]
            rel = abs(b["loss"] - a["loss"]) / a["loss"]
            row(f"train_step[{name}]", "step1_loss_rel_diff_vs_autograd", rel)
            # per term, absolute: at initialisation D_E ≈ D_θ ≈ c_skip·x, so the distillation term is
            # ~1e-9, a difference of two O(1) vectors, and its own relative rounding is large
            for k in keys:
                diff = abs(b[k] - a[k])
                row(f"train_step[{name}]", f"step1_{k}_abs_diff_vs_autograd", diff, autograd_value=a[k])
    compile_s = first["analytic+compile"].history[-1].get("compile_s")
    row("train_step[analytic+compile]", "compile_time_s", compile_s, compile_s)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--train-step", action="store_true", help="the training-step comparison instead")
    ap.add_argument("--size", action="append", help="--train-step: hidden,layers,emb_dim,batch "
                    "(repeatable; default 32,3,16,64, the pita_quick preset)")
    ap.add_argument("--rounds", type=int, default=8, help="--train-step: interleaved rounds")
    ap.add_argument("--steps-per-round", type=int, default=3)
    ap.add_argument("--out", help="the JSON to write (default: results/egnn_train_step.json with "
                                  "--train-step, results/egnn_speed.json without)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train_step:
        args.size = [[int(v) for v in sz.split(",")] for sz in (args.size or ["32,3,16,64"])]
        machine = describe_machine()
        rows = [r for sz in args.size for r in _train_step_rows(args, sz, machine)]
        out = Path(args.out or Path(__file__).resolve().parent / "results" / "egnn_train_step.json")
        atomic_write_json(out, {"rows": rows, "threads": args.threads, "description": (
            "PITA training step on LJ-13 (score+energy, DSM + distillation + pinning): autograd vs the "
            "hand-written ∇ₓU_η (analytic) vs analytic + torch.compile, interleaved in one process."
        )})
        print(json.dumps({"written": str(out), "rows": len(rows)}), file=sys.stderr)
        return 0
    torch.manual_seed(0)
    target = make_target("lj13")
    reps = 3 if args.quick else 10
    cfg = NetConfig(hidden=64, layers=4, emb_dim=32)
    score, energy = build_models(target, cfg)
    net = score.net
    g = torch.Generator().manual_seed(0)
    x = target.project(torch.randn(args.batch, target.dim, generator=g))
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(args.batch, generator=g))
    c = 0.25 * torch.log(sigma)
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_egnn.py" + (
        " --quick" if args.quick else ""
    )
    machine = describe_machine()
    rows = []

    def row(method, metric, value, wall, best=None):
        rows.append(
            {
                "benchmark": "egnn_speed",
                "method": method,
                "target": "lj13",
                "metric": metric,
                "value": round(value, 3),
                "n": args.batch,
                "noise_floor": None,
                "energy_evaluations": None,
                "wall_time_s": round(wall, 3),
                "machine": machine,
                "command": command,
                "best": None if best is None else round(best, 3),
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )
        extra = "" if best is None else f"  (best {best:.2f})"
        print(f"{method:>30s}  {metric:<34s} {value:9.3f}{extra}", file=sys.stderr)

    cases = {path: _cases(net, path, x, c, sigma) for path in ("edge_list", "dense")}
    for name in cases["dense"]:
        for path in ("edge_list", "dense"):  # interleaved, so both see similar machine load
            fn = cases[path][name]
            rate, best, wall = _rate(fn, reps)
            row(f"egnn_{path}", f"{name}_iterations_per_s", rate, wall, best)

    buffer = TrainingBuffer.from_target(target, x)
    for mode in ("score+energy", "energy"):
        mcfg = NetConfig(hidden=64, layers=4, emb_dim=32, mode=mode)
        models = Models(*build_models(target, mcfg), net_config=mcfg)
        tcfg = TrainConfig(steps=2, batch_size=args.batch, log_every=1000)
        train(models, buffer, tcfg, torch.Generator().manual_seed(1))  # warm-up
        tcfg = TrainConfig(steps=reps, batch_size=args.batch, log_every=1000)
        t0 = time.perf_counter()
        train(models, buffer, tcfg, torch.Generator().manual_seed(2))
        wall = time.perf_counter() - t0
        row(f"egnn_dense_train[{mode}]", "train_steps_per_s", reps / wall, wall)

    if not args.no_compile:
        try:
            t0 = time.perf_counter()
            compiled = torch.compile(net)
            with torch.no_grad():
                compiled(x, c)
            compile_s = time.perf_counter() - t0

            def cfwd():
                with torch.no_grad():
                    compiled(x, c)

            rate, best, wall = _rate(cfwd, reps)
            row("egnn_dense_compiled", "forward_iterations_per_s", rate, wall, best)
            row("egnn_dense_compiled", "compile_time_s", compile_s, compile_s)
        except Exception as exc:  # report the failure instead of a number
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            print(f"torch.compile failed: {msg}", file=sys.stderr)
            rows.append(
                {
                    "benchmark": "egnn_speed",
                    "method": "egnn_dense_compiled",
                    "target": "lj13",
                    "metric": "forward_iterations_per_s",
                    "value": None,
                    "n": args.batch,
                    "noise_floor": None,
                    "energy_evaluations": None,
                    "wall_time_s": None,
                    "machine": machine,
                    "command": command,
                    "error": msg,
                }
            )

    out = Path(args.out or Path(__file__).resolve().parent / "results" / "egnn_speed.json")
    atomic_write_json(out, {"rows": rows, "threads": args.threads, "quick": args.quick})
    print(json.dumps({"written": str(out), "rows": len(rows)}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
