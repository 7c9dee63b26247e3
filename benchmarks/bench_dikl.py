"""DiKL against parallel tempering and DiGS at equal energy evaluations (issue 12 benchmark).

For each target: train DiKL with the ``cpu`` preset (``--quick``: ``quick``) into ``--runs-dir``
(resumable: a killed benchmark continues the run), draw n samples from the trained generator (one
pass, zero evaluations), then give PT and DiGS the same number of counted target evaluations as
DiKL's training (same warm-up split as ``bench_digs.py``; a per-sample budget below 20 is raised
to 20 and the row says what was spent). Chains: gmm40/manywell32 and DiGS use ``bench_digs.py``'s
counts (``method_options``); PT on dw4/lj13 takes there the budget-dependent count of
``compare.pt_chains_for_budget`` (as many chains as leave each 40,000 steps, 4–64), because 100
short chains starved it on LJ-13 (``benchmarks/pt_chains.py``: energy W2 11.9 with 64 chains
against 0.6–1.4 with 4–8 at 7.3e5 evaluations). Metrics come from ``boltzpath.metrics.suite`` through
bench_digs' ``toy_metrics`` / ``particle_metrics`` (each with its noise floor):

* gmm40, manywell32 (n = 10,000; quick 2,000): E‖x‖² relative error, mode coverage and mode-weight
  TVD (all n), coordinate W2, MMD², energy W2 (2,000 points) against the exact sampler;
* dw4, lj13 (n = 2,000; quick 1,000): energy W1/W2, interatomic-distance W2, aligned W2 and the
  fraction above 1000 E/kT against the held-out test sets in ../shared/holdout (evaluation only;
  the particle targets are skipped when it is absent); the same metrics for DiKL's released samples
  (``dikl_model_samples_{dw4,lj13}.npy``, method ``dikl-released``), and for both DiKL sample sets
  again with configurations above 1000 E/kT dropped (``… (E<1000)``, as SPEC §9 quotes them);
* a run with generator selection (``--set select.method=mala_shift``): the same metrics for the
  run's last iterate (``dikl (last iterate)``, same n, same draw seed) beside the selected one;
* lj13: the time to draw 1,000 samples from the trained generator through ``FastGenerator`` (median
  of 5, after one warm-up; before/after and the floor: ``bench_dikl_speed.py``).

    python benchmarks/bench_dikl.py --quick [--targets gmm40,manywell32,dw4,lj13]
        [--methods dikl,pt,digs,released] [--runs-dir DIR] [--out FILE] [--set key=value ...]

Writes ``benchmarks/results/bench_dikl.json`` (``bench_dikl_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_digs import HOLDOUT, load_holdout, method_options, particle_metrics, toy_metrics

from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import Samples
from boltzpath.mcmc.registry import run_method
from boltzpath.methods.dikl import draw, load_generator, run_dikl
from boltzpath.methods.dikl.config import resolve_config
from boltzpath.methods.dikl.inference import FastGenerator
from boltzpath.methods.dikl.trainer import read_checkpoint
from boltzpath.metrics.distributions import high_energy_fraction
from boltzpath.metrics.energies import uncounted_energy
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
TARGETS = ("gmm40", "manywell32", "dw4", "lj13")
#: target → (n, n with --quick, chains for PT/DiGS)
SIZES = {"gmm40": (10_000, 2_000, 1000), "manywell32": (10_000, 2_000, 1000),
         "dw4": (2_000, 1_000, 100), "lj13": (2_000, 1_000, 100)}
DESCRIPTION = ("DiKL (one-step generator, reverse diffusive KL) against parallel tempering and DiGS given "
               "DiKL's training evaluation budget (`energy_evaluations`; DiKL's samples themselves cost 0). "
               "`dikl-released`: DiKL's published DW-4/LJ-13 samples scored with the same code. "
               "`(E<1000)` rows drop configurations above 1000 E/kT (`dropped_fraction`); "
               "`clash_fraction` (dw4/lj13, rows from 2026-12-06 on): the share of samples with E > 0, "
               "issue 12's clash. "
               "PT on dw4/lj13: chains from the budget (`options.chains`; rows before 2026-12-03 late used "
               "100 chains, which starved it on LJ-13).")
CLASH = 1000.0  # E/kT above which a configuration counts as a clash (the suite's high-energy cut)


def _metrics(samples, target, reference, seed):
    gen = torch.Generator().manual_seed(seed)
    if reference is None:
        return toy_metrics(samples, target, gen)
    out = particle_metrics(samples, target, reference, gen)
    # issue 12's clash fraction: E > 0 (a non-finite energy counts as a clash), over every sample
    out["clash_fraction"] = (high_energy_fraction(samples.energy, threshold=0.0), samples.n, None)
    return out


def _rows(method, name, metrics, evals, wall, extra, common):
    return [{"benchmark": "dikl", "method": method, "target": name, "metric": k, "value": float(v[0]),
             "n": int(v[1]), "noise_floor": None if v[2] is None else v[2][0],
             "noise_floor_std": None if v[2] is None else v[2][1], "energy_evaluations": evals,
             "wall_time_s": None if wall is None else round(wall, 2), **extra, **common}
            for k, v in metrics.items()]


def _without_clashes(samples: Samples) -> tuple[Samples, float]:
    keep = torch.isfinite(samples.energy) & (samples.energy < CLASH)
    return Samples(samples.x[keep], samples.energy[keep]), 1.0 - float(keep.double().mean())


def _released(name, target):
    path = HOLDOUT / f"dikl_model_samples_{name}.npy"
    if not path.is_file():
        return None
    x = target.project(torch.from_numpy(np.load(path)).double().reshape(-1, target.dim))
    return Samples(x.float(), uncounted_energy(target, x))


def _draw_timing(run_dir, repeats=5, n=1000) -> dict:
    """Warm draw time through ``FastGenerator`` (what ``draw`` and ``dikl-sample`` use; the reference
    path and the speed-up are in bench_dikl_speed.py)."""
    gen, target, _ = load_generator(run_dir)
    fast = FastGenerator(gen)
    rng = torch.Generator().manual_seed(0)
    fast.sample(n, rng)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fast.sample(n, rng)
        times.append(time.perf_counter() - t0)
    fast.close()
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats, "n": n,
            "path": "FastGenerator", "threads": torch.get_num_threads()}


def bench_target(name, cfg, args, common, rows, save=lambda rows: None):
    """This target's rows merged into ``rows``; ``save(rows)`` after each method, so a run stopped
    during a long baseline keeps the rows already measured."""
    quick = args.quick
    n = SIZES[name][1 if quick else 0]
    chains = SIZES[name][2]
    target = make_target(name)
    reference = None
    if target.is_particle_system:
        reference = load_holdout(name, target)
        if reference is None:
            print(f"{name}: ../shared/holdout absent, skipped", file=sys.stderr)
            return rows
    run_dir = Path(args.runs_dir) / f"{name}_{'quick' if quick else 'cpu'}"
    res = run_dikl(cfg, run_dir, resume=True)
    budget, train_wall = int(res.metrics["energy_evaluations"]["total"]), float(res.metrics["wall_time_s"])
    methods = args.methods.split(",")
    rerun = {"dikl-released" if m == "released" else m for m in methods}  # their old rows are replaced
    rows = [r for r in rows if not (r["target"] == name and r["method"].split(" ")[0] in rerun)]
    if "dikl" in methods:
        gen, target_g, _ = load_generator(run_dir)
        samples, seconds = draw(gen, target_g, n, args.seed + 11)
        extra = {"train_wall_time_s": round(train_wall, 1), "sampling_time_s": seconds,
                 "preset": "quick" if quick else "cpu", "run_dir": str(run_dir)}
        selection = res.metrics["training"].get("selection")
        if selection is not None:  # the kept generator is a selected checkpoint: say which, and score
            extra["selected_iteration"] = selection["selected_iteration"]  # the last iterate beside it
            extra["selection_evaluations"] = int(res.metrics["energy_evaluations"]["selection"])
        rows += _rows("dikl", name, _metrics(samples, target, reference, args.seed + 1), budget, train_wall,
                      extra, common)
        if selection is not None:
            gen.load_state_dict(read_checkpoint(run_dir / "checkpoint.pt")["generator"])
            last, _ = draw(gen, target_g, n, args.seed + 11)
            rows += _rows("dikl (last iterate)", name, _metrics(last, target, reference, args.seed + 1),
                          budget, train_wall, {"iteration": res.metrics["training"]["iterations"]}, common)
        if reference is not None:
            clean, dropped = _without_clashes(samples)
            rows += _rows("dikl (E<1000)", name, _metrics(clean, target, reference, args.seed + 1), budget,
                          train_wall, {"dropped_fraction": dropped}, common)
        if name == "lj13":
            timing = _draw_timing(run_dir)
            rows.append({"benchmark": "dikl", "method": "dikl", "target": name, "metric": "draw_1000_seconds",
                         "value": timing["median_s"], **timing, "energy_evaluations": 0, **common})
        print(f"{name}: dikl trained with {budget:.3e} evaluations in {train_wall:.0f} s", file=sys.stderr)
        save(rows)
    per_sample = max(budget // n, 20)
    for method in ("pt", "digs"):
        if method not in methods:
            continue
        opts = method_options(method, name, n, per_sample, chains)
        t0 = time.perf_counter()
        samples = run_method(method, target, n, torch.Generator().manual_seed(args.seed), opts)
        wall = time.perf_counter() - t0
        evals = int(samples.info["energy_evaluations"])
        samples.save(run_dir.parent / f"{run_dir.name}_{method}_samples.npz")  # kept for later checks
        rows += _rows(method, name, _metrics(samples, target, reference, args.seed + 1), evals, wall,
                      {"options": opts, "dikl_budget": budget}, common)
        print(f"{name}: {method} {evals:.3e} evaluations, {wall:.0f} s", file=sys.stderr)
        save(rows)
    if "released" in methods and reference is not None:
        released = _released(name, target)
        if released is not None:
            rows += _rows("dikl-released", name, _metrics(released, target, reference, args.seed + 1), None,
                          None, {"source": "jiajunhe98/DiKL results/ via ../shared/holdout"}, common)
            clean, dropped = _without_clashes(released)
            rows += _rows("dikl-released (E<1000)", name, _metrics(clean, target, reference, args.seed + 1),
                          None, None, {"dropped_fraction": dropped}, common)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="quick presets and smaller n")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--methods", default="dikl,pt,digs,released")
    parser.add_argument("--runs-dir", default=str(ROOT.parent / "runs" / "bench_dikl"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="DiKL config override (repeatable; smoke tests)")
    args = parser.parse_args(argv)
    out = Path(args.out or ROOT / "results" / f"bench_dikl{'_quick' if args.quick else ''}.json")
    parts = ["python benchmarks/bench_dikl.py"] + (["--quick"] if args.quick else [])
    parts += [f"--targets {args.targets}", f"--methods {args.methods}"]
    parts += [f"--set {s}" for s in args.overrides]
    command = " ".join(parts)
    common = {"machine": describe_machine(), "command": command}
    configs = {}
    for name in args.targets.split(","):  # unknown targets and a bad --set fail before any training
        if name not in TARGETS:
            parser.error(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
        preset = "quick" if args.quick else "cpu"
        configs[name] = resolve_config(name, preset, args.seed, tuple(args.overrides))
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    def save(rows):
        atomic_write_json(out, {"description": DESCRIPTION, "rows": rows})

    for name, cfg in configs.items():
        rows = bench_target(name, cfg, args, common, rows, save)
        save(rows)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
