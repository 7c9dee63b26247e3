"""GPU timings of the costs that matter on a GPU (one CUDA device), with the host CPU in the same run.

Rows (``benchmark: gpu``), each with the device name, torch version and the CPU thread count used:

* ``draw_1000_seconds`` — DiKL: drawing 1,000 LJ-13 samples from the generator (``Generator.sample``
  path, ``no_grad``) at the ``quick``/``cpu``/``paper`` preset sizes (initial weights: speed does not
  depend on them); median of ``--reps`` after 3 warm-ups, ``torch.cuda.synchronize`` around each.
  Published DiKL: 0.02 s on a GPU (SPEC §7). The same on the host CPU with ``--cpu-threads``.
* ``train_steps_per_s`` — PITA: one training step of the score + energy EGNN on LJ-13 (DSM,
  distillation through ∇ₓU_η, pinning; Adam, clipping, EMA) at the ``cpu`` and ``paper`` sizes,
  eager and with ``net.analytic_grad``; timed over ``--steps`` steps after ``--warmup``.
* ``smc_steps_per_s`` — PITA: Feynman–Kac SMC steps (exact divergence, as the ``paper`` preset) of the
  ``paper`` network with 5,000 particles, γ = 4/3.
* ``energy_grad_per_s`` — LJ-13 energy + forces of 100,000 configurations (float32).

    python benchmarks/bench_gpu.py [--out FILE] [--reps 20] [--steps 30] [--cpu-threads 2]

Run it on a machine with a CUDA GPU (it exits with a message otherwise). Writes
``benchmarks/results/bench_gpu.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine

ROOT = Path(__file__).resolve().parent
CUDA = torch.device("cuda", 0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, reps: int, warm: int = 3) -> list[float]:
    for _ in range(warm):
        fn()
    _sync(device)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def dikl_draw(device: torch.device, sizes: list[str], reps: int) -> list[dict]:
    from boltzpath.methods.dikl.config import resolve_config
    from boltzpath.methods.dikl.networks import build_networks
    from boltzpath.methods.dikl.schedule import VPSchedule
    from boltzpath.targets.registry import make_target

    rows = []
    target = make_target("lj13")
    for size in sizes:
        cfg = resolve_config("lj13", size, 0, ())
        torch.manual_seed(0)
        gen, _ = build_networks(target, cfg.generator, cfg.score_net, VPSchedule(cfg.ddpm))
        gen = gen.eval().to(device)
        rng = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            ts = _timed(lambda g=gen, r=rng: g.sample(1000, r), device, reps)
        rows.append({"method": "dikl generator", "metric": "draw_1000_seconds", "preset": size,
                     "network": f"EGNN {cfg.generator.hidden}x{cfg.generator.layers}",
                     "value": statistics.median(ts),
                     "min_s": min(ts), "repeats": reps, "n": 1000, "energy_evaluations": 0})
    return rows


def _train_problem(device, hidden, layers, emb, fast):
    from lj13_training import lj13_training_problem

    return lj13_training_problem(hidden, layers, emb, fast, n_buffer=2048, device=device)


def pita_train(device: torch.device, sizes: dict, steps: int, warmup: int) -> list[dict]:
    from boltzpath.diffusion.train import TrainConfig, train

    rows = []
    for name, (hidden, layers, emb, batch) in sizes.items():
        for fast in (False, True):
            _, buffer, models = _train_problem(device, hidden, layers, emb, fast)

            def run(n, seed, models=models, buffer=buffer, batch=batch):
                cfg = TrainConfig(steps=n, batch_size=batch, pin=1.0, log_every=n, checkpoint_every=10**9)
                _sync(device)
                t0 = time.perf_counter()
                res = train(models, buffer, cfg, torch.Generator(device=device).manual_seed(seed))
                _sync(device)
                return time.perf_counter() - t0, res.history[-1]["loss"]

            run(warmup, 0)
            secs, loss = run(steps, 1)
            rows.append({"method": "pita train step" + (" (analytic ∇U)" if fast else " (autograd)"),
                         "metric": "train_steps_per_s", "preset": name, "network": f"EGNN {hidden}x{layers}",
                         "batch": batch, "value": steps / secs, "steps": steps, "final_loss": loss,
                         "energy_evaluations": 0})
    return rows


def pita_smc(device: torch.device, n_particles: int, n_steps: int) -> list[dict]:
    from boltzpath.diffusion.schedule import KarrasSchedule
    from boltzpath.smc.annealing import AnnealConfig, anneal
    from boltzpath.smc.model import NetworkModel

    target, _, models = _train_problem(device, 128, 5, 64, False)
    schedule = KarrasSchedule(0.05, 80.0)
    model = NetworkModel.from_diffusion(models.score, models.energy, schedule, target.dim, target.project)
    cfg = AnnealConfig(n_steps=n_steps, gamma=4.0 / 3.0, divergence="exact")
    gen = torch.Generator(device=device).manual_seed(0)
    warm = AnnealConfig(n_steps=2, gamma=4.0 / 3.0, divergence="exact")
    anneal(model, 64, schedule, warm, gen, target.project)
    _sync(device)
    t0 = time.perf_counter()
    anneal(model, n_particles, schedule, cfg, gen, target.project)
    _sync(device)
    secs = time.perf_counter() - t0
    return [{"method": "pita FK-SMC step (exact divergence)", "metric": "smc_steps_per_s", "preset": "paper",
             "network": "EGNN 128x5", "particles": n_particles, "value": n_steps / secs, "steps": n_steps,
             "energy_evaluations": 0}]


def lj13_energy(device: torch.device, n: int, reps: int) -> list[dict]:
    from boltzpath import make_target

    target = make_target("lj13").to(device)
    x = target.project(torch.randn(n, 39, generator=torch.Generator().manual_seed(0)) * 1.5).to(device)
    ts = _timed(lambda: target.energy_and_grad(x), device, reps)
    return [{"method": "lj13 energy + forces (float32)", "metric": "energy_grad_per_s", "n": n,
             "value": n / statistics.median(ts), "repeats": reps, "energy_evaluations": n * (reps + 3)}]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_gpu.json")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--smc-particles", type=int, default=5000)
    ap.add_argument("--smc-steps", type=int, default=10)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU on this machine", file=sys.stderr)
        return 2
    torch.set_num_threads(args.cpu_threads)
    cpu = torch.device("cpu")
    common = {"benchmark": "gpu", "target": "lj13", "gpu": torch.cuda.get_device_name(0),
              "torch": torch.__version__, "cpu_threads": args.cpu_threads, "machine": describe_machine(),
              "command": "python benchmarks/bench_gpu.py "
                         + " ".join(argv if argv is not None else sys.argv[1:])}
    train_sizes = {"cpu": (48, 3, 32, 128), "paper": (128, 5, 64, 512)}
    jobs = [
        ("cuda", lambda: dikl_draw(CUDA, ["quick", "cpu", "paper"], args.reps)),
        ("cpu", lambda: dikl_draw(cpu, ["quick", "cpu"], max(3, args.reps // 4))),
        ("cuda", lambda: lj13_energy(CUDA, 100_000, args.reps)),
        ("cpu", lambda: lj13_energy(cpu, 100_000, 3)),
        ("cuda", lambda: pita_train(CUDA, train_sizes, args.steps, args.warmup)),
        ("cpu", lambda: pita_train(cpu, {"cpu": train_sizes["cpu"]}, max(5, args.steps // 3), 2)),
        ("cuda", lambda: pita_smc(CUDA, args.smc_particles, args.smc_steps)),
    ]
    rows: list[dict] = []
    for device, job in jobs:
        t0 = time.perf_counter()
        try:
            new = job()
        except Exception as exc:  # a failing section is a result too; the others still run
            traceback.print_exc()
            new = [{"method": "error", "metric": "error", "value": None,
                    "error": f"{type(exc).__name__}: {exc}"}]
        for r in new:
            r.update({"device": device, "section_wall_s": round(time.perf_counter() - t0, 2), **common})
            print(f"{device:4s} {r['method']:40s} {r.get('preset', ''):6s} {r['metric']:20s} {r['value']}",
                  flush=True)
        rows += new
        atomic_write_json(args.out, {"description": __doc__.splitlines()[0], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
