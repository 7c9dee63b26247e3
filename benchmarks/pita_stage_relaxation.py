"""Continue a particle PITA run's stage samples with exact MALA at the stage's own temperature: how
far are they from equilibrium, and how many more evaluations would close the gap?

A stage's samples (``stage_K/samples.npz``) are a rung's output after its relaxation. If their
distance from the certified reference at T_K is fast relaxation left undone, more MALA steps close
it cheaply; if it stays, the error sits in modes that MALA moves slowly (cluster shape, which
particles sit where) and has to come from the model. Runs ``--blocks`` × ``--steps`` MALA steps on the
stage's samples (the first 100 steps adapt one shared step size, ``smc.relax``; the rest keep it
fixed: exact MALA) and records after every block (block 0 = the stage's own samples) energy W2 and
interatomic-distance W2 against the certified references at T_K (mean over 10 subsets of seed 0;
floor: seed-1 subsets against seed-0, ``bench_pita._subset_scores``), the mean E/kT and the
evaluations spent so far. Every energy evaluation is counted.

    python benchmarks/pita_stage_relaxation.py --run RUN --references DIR [--stages 3,4,5,6] \\
        [--blocks 4] [--steps 500] [--threads 2] [--out FILE]

Writes ``benchmarks/results/pita_stage_relaxation.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_pita import SUBSETS, _subset_scores

from boltzpath.config import load_yaml
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import Samples
from boltzpath.smc.relax import RelaxConfig, relax
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
DESCRIPTION = ("A finished particle PITA run's stage samples continued with exact MALA at the stage's own "
               "temperature (100 adapting steps of one shared step size, then fixed): energy and distance W2 "
               "against the certified references at that temperature (mean of 10 subsets; floor: seed-1 "
               "subsets against seed-0) after every block. Block 0 is the stage's own samples; "
               "`energy_evaluations`: the continuation's, on top of the run's.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished `boltzpath run pita` folder (lj13 or dw4)")
    p.add_argument("--references", required=True, help="benchmarks/particle_references.py --out-dir")
    p.add_argument("--stages", default=None, help="comma list of stage indices (default: all)")
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--steps", type=int, default=500, help="MALA steps per block")
    p.add_argument("--step-size", type=float, default=1e-4, help="initial step size (adapted, then fixed)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "results" / "pita_stage_relaxation.json"))
    args = p.parse_args(argv)
    run, refs = Path(args.run), Path(args.references)
    if not (run / "config.yaml").is_file():
        raise BadInput(f"--run {run}: no config.yaml (not a PITA run folder)")
    if not refs.is_dir():
        raise BadInput(f"--references {refs}: not a folder")
    if args.blocks < 1 or args.steps < 101:
        raise BadInput("--blocks must be >= 1 and --steps >= 101 (100 of the first block adapt)")
    cfg = load_yaml(run / "config.yaml")
    name, temps = cfg.get("target"), [float(t) for t in cfg.get("temperatures", [])]
    if name not in ("lj13", "dw4"):
        raise BadInput(f"--run {run}: target {name!r}; this script continues lj13 and dw4 stages")
    try:
        stages = list(range(len(temps))) if args.stages is None else [int(s) for s in args.stages.split(",")]
    except ValueError:
        raise BadInput(f"--stages {args.stages!r}: expected comma-separated integers") from None
    if any(not 0 <= s < len(temps) for s in stages):
        raise BadInput(f"--stages {args.stages!r}: the run has stages 0..{len(temps) - 1}")
    torch.set_num_threads(args.threads)
    target = make_target(name)
    command = ("python benchmarks/pita_stage_relaxation.py "
               + " ".join(argv if argv is not None else sys.argv[1:]))
    rows: list[dict] = []
    for k in stages:
        temp = temps[k]
        f0, f1, fs = (refs / f"{name}_T{temp:g}_seed0.npy", refs / f"{name}_T{temp:g}_seed1.npy",
                      run / f"stage_{k}" / "samples.npz")
        if not (f0.is_file() and f1.is_file() and fs.is_file()):
            print(f"stage {k} (T={temp:g}): no samples or no references at this temperature, skipped")
            continue
        r0, r1 = torch.as_tensor(np.load(f0)).float(), torch.as_tensor(np.load(f1)).float()
        tt = target.at_temperature(temp)
        x = Samples.load(fs).x.float()
        gen = torch.Generator().manual_seed(args.seed + k)
        evals, t0, step = 0, time.perf_counter(), None
        for b in range(args.blocks + 1):
            if b:
                c0 = target.counter.count
                rcfg = (RelaxConfig(n_steps=args.steps, adapt_steps=100, step_size=args.step_size)
                        if step is None else RelaxConfig(n_steps=args.steps, adapt_steps=0, step_size=step))
                res = relax(tt, x, gen, rcfg)
                step = res.info["step_size_median"]
                x, evals = res.x.detach(), evals + target.counter.count - c0
            vals, floors = _subset_scores(x, tt, r0, r1, 100 * k)
            row = {"benchmark": "pita_stage_relaxation",
                   "method": f"stage {k} samples + {b * args.steps} MALA steps",
                   "target": f"{name} T={temp:g}", "stage": k, "block": b, "mala_steps": b * args.steps,
                   "mean_energy": float(tt.energy(x).double().mean()), "n": int(x.shape[0]),
                   "energy_evaluations": int(evals), "wall_time_s": round(time.perf_counter() - t0, 1),
                   "step_size": step, "subsets": SUBSETS, "run": str(run), "machine": describe_machine(),
                   "command": command}
            for m in ("energy_w2", "distance_w2"):
                rows.append({**row, "metric": m, "value": float(np.mean(vals[m])),
                             "std_over_subsets": float(np.std(vals[m], ddof=1)),
                             "noise_floor": float(np.mean(floors[m]))})
            print(f"stage {k} T={temp:g} +{b * args.steps} steps: energy W2 {rows[-2]['value']:.3f} "
                  f"(floor {rows[-2]['noise_floor']:.3f}) distance W2 {rows[-1]['value']:.4f} "
                  f"(floor {rows[-1]['noise_floor']:.4f}) mean E/kT {row['mean_energy']:.2f} "
                  f"evals {evals:.3g}", flush=True)
            atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
