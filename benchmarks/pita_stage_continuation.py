"""Continue one stage of a peptide PITA run with BAOAB dynamics at the stage's own temperature: do
its basin shares and its αR − C7eq/C5 energy gap stay, or drift?

A stage whose αR samples sit too high in energy against its C7eq/C5 ones loses αR at the next
true-energy rung (docs/pita.md, nineteenth session). If the excess is within-basin relaxation that the
run's short relaxation left, longer dynamics at the stage temperature lowers the gap (and, on a long
enough run, moves the shares toward equilibrium); if the gap stays, the stage's samples are what the
dynamics keep. Takes ``--n`` samples of ``stage_K/samples.npz`` (evenly spaced), gives them
Maxwell–Boltzmann velocities and runs ``--blocks`` × ``--steps`` BAOAB steps
(``mcmc.langevin.baoab_step``, unit mass, step ``--step-size``, friction 1: the peptide Langevin
defaults) on the torch force field at T_K, recording after every block (block 0 = the stage's own
samples) the backbone basin fractions of every residue and the first residue's energy gap with its
i.i.d. standard error (``pita_peptide_stages.gap_rows``). Every energy evaluation is counted.

    python benchmarks/pita_stage_continuation.py --run RUN --stage K [--n 500] [--blocks 4] \\
        [--steps 1000] [--step-size 2e-3] [--threads 2] [--seed 0] [--out FILE]

Writes ``benchmarks/results/pita_stage_continuation.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pita_peptide_stages import dihedral_view, gap_rows

from boltzpath.config import load_yaml
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import Samples
from boltzpath.mcmc.langevin import baoab_step, init_langevin
from boltzpath.metrics.peptides import residue_basin_fractions
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
DESCRIPTION = ("One stage of a peptide PITA run continued with BAOAB at the stage's temperature "
               "(`benchmarks/pita_stage_continuation.py`): backbone basin fractions per residue and the "
               "first residue's αR − C7eq/C5 mean-energy gap (kT, i.i.d. standard error) after each block "
               "of steps; block 0 is the stage's own samples")


def _block_rows(common: dict, x: np.ndarray, target, temperature: float) -> list[dict]:
    rows = []
    for r, fr in enumerate(residue_basin_fractions(x, target.topology), start=1):
        rows += [{**common, "metric": f"basin_{name}_residue{r}", "value": v} for name, v in fr.items()]
    _, masks = dihedral_view(x, target.topology)
    return rows + gap_rows(common, x, masks, target, temperature)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--run", type=Path, required=True, help="a peptide PITA run folder")
    ap.add_argument("--stage", type=int, required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1000, help="BAOAB steps per block")
    ap.add_argument("--step-size", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "pita_stage_continuation.json")
    args = ap.parse_args(argv)
    cfg_file, samples_file = args.run / "config.yaml", args.run / f"stage_{args.stage}" / "samples.npz"
    if not cfg_file.is_file() or not samples_file.is_file():
        raise BadInput(f"--run {args.run} --stage {args.stage}: no config.yaml or "
                       f"stage_{args.stage}/samples.npz")
    if min(args.n, args.blocks, args.steps) < 1 or not args.step_size > 0:
        raise BadInput("--n, --blocks and --steps must be >= 1 and --step-size > 0")
    torch.set_num_threads(args.threads)
    cfg = load_yaml(cfg_file)
    temperature = float(cfg["temperatures"][args.stage])
    base = make_target(cfg["target"])
    if not getattr(base, "is_peptide", False):
        raise BadInput(f"--run {args.run}: target {cfg['target']} is not a peptide")
    target = base.at_temperature(temperature)
    x_all = Samples.load(samples_file).x
    x0 = x_all[np.linspace(0, len(x_all) - 1, min(args.n, len(x_all))).astype(int)].double()
    given = argv if argv is not None else sys.argv[1:]
    common = {"benchmark": "pita_stage_continuation", "method": f"stage {args.stage} + BAOAB",
              "target": base.name, "temperature": temperature, "stage": args.stage, "n": len(x0),
              "run": str(args.run), "machine": describe_machine(), "step_size": args.step_size,
              "command": "python benchmarks/pita_stage_continuation.py " + " ".join(given)}
    rows = _block_rows({**common, "block": 0, "steps": 0, "energy_evaluations": 0}, x0.numpy(), target,
                       temperature)
    gen = torch.Generator().manual_seed(args.seed)
    c0, t0 = target.counter.count, time.perf_counter()
    state = init_langevin(target, x0, gen)
    for b in range(1, args.blocks + 1):
        for _ in range(args.steps):
            state, _ = baoab_step(target, state, gen, args.step_size, 1.0)
        more = {"block": b, "steps": b * args.steps, "energy_evaluations": target.counter.count - c0,
                "wall_time_s": round(time.perf_counter() - t0, 1)}
        block = _block_rows({**common, **more}, state.position.detach().float().numpy(), target, temperature)
        rows += block
        print(f"block {b}: " + ", ".join(f"{r['metric']} {r['value']:.3f}" for r in block
                                          if "alpha_r" in r["metric"]), file=sys.stderr)
    atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows})
    print(f"wrote {args.out} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
