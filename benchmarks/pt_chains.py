"""How many chains should parallel tempering use at a fixed energy-evaluation budget? (LJ-13, T = 1)

``methods.compare.pt_at_budget`` is the "PT at equal cost" baseline of every PITA comparison. At a
fixed budget, more chains mean shorter chains; on LJ-13 burn-in dominates at the `quick` budget, so
the chain count decides whether the baseline converges at all. This script runs PT at one budget
for several chains × replicas settings and seeds, and scores the T = 1 samples against a certified
reference (energy W2 in kT, interatomic-distance W2), all with the same code.

    python benchmarks/pt_chains.py --budget 730000 --n 500 --configs 64x8,8x8,4x8 --seeds 1,2 \\
        --reference /work/pita-runs/references/lj13_T1_seed0.npy

The reference is a certified PT set (``benchmarks/particle_references.py``); a random subset of n
is used, as in ``bench_pita.py``'s stage rows. Noise floor: the same metrics between two disjoint
random n-subsets of the reference (``noise_floor``). One torch thread; wall times are comparable
within one run only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from boltzpath import make_target
from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.methods.compare import pt_at_budget
from boltzpath.metrics.distributions import energy_w
from boltzpath.metrics.particles import distance_w2

ROOT = Path(__file__).resolve().parent


def _configs(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        try:
            c, r = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise SystemExit(f"error: --configs entry {part!r} is not CHAINSxREPLICAS (e.g. 8x8)") from None
        out.append((c, r))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=int, default=730_000)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--configs", default="64x8,8x8,4x8")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--t-max", type=float, default=4.0)
    p.add_argument("--reference", required=True, help="certified LJ-13 samples at T = 1 (.npy)")
    p.add_argument("--out", default=str(ROOT / "results" / "pt_chains.json"))
    args = p.parse_args(argv)
    ref_path = Path(args.reference)
    if not ref_path.is_file():
        print(f"error: --reference {ref_path} not found", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(1)
    command = "python benchmarks/pt_chains.py " + " ".join(argv if argv is not None else sys.argv[1:])
    full = torch.as_tensor(np.load(ref_path)).float()
    perm = torch.randperm(full.shape[0], generator=torch.Generator().manual_seed(0))
    ref, ref2 = full[perm[: args.n]], full[perm[args.n: 2 * args.n]]
    scorer = make_target("lj13")  # evaluation only: not the counted target
    e_ref = scorer.energy(ref).double()
    floors = {"energy_w2": float(energy_w(scorer.energy(ref2).double(), e_ref, 2)),
              "distance_w2": float(distance_w2(ref2, ref, scorer))}
    rows, machine = [], describe_machine()
    for chains, replicas in _configs(args.configs):
        for seed in (int(s) for s in args.seeds.split(",")):
            target = make_target("lj13")
            t0 = time.perf_counter()
            s, opts = pt_at_budget(target, args.budget, args.n, seed, t_max=args.t_max, chains=chains,
                                   n_replicas=replicas)
            wall = time.perf_counter() - t0
            x = s.x.float()
            values = {"energy_w2": float(energy_w(scorer.energy(x).double(), e_ref, 2)),
                      "distance_w2": float(distance_w2(x, ref, scorer))}
            steps = args.budget // (chains * replicas)
            for metric, v in values.items():
                rows.append({"benchmark": "pt_chains", "method": f"pt {chains}x{replicas}", "target": "lj13",
                             "metric": f"{metric} vs certified (T=1)", "value": v, "n": args.n,
                             "noise_floor": floors[metric], "energy_evaluations": target.counter.count,
                             "wall_time_s": round(wall, 1), "machine": machine, "command": command,
                             "seed": seed, "steps_per_chain": steps, "burn_in": opts["burn_in"],
                             "thin": opts["thin"]})
            print(f"{chains}x{replicas} seed {seed}: energy W2 {values['energy_w2']:.3f}, distance W2 "
                  f"{values['distance_w2']:.4f}, {target.counter.count} evaluations, {wall:.0f} s",
                  flush=True)
            atomic_write_json(args.out, {"description": (
                f"Parallel tempering on LJ-13 at a fixed budget of {args.budget:,} evaluations for "
                f"n = {args.n} samples: chains × replicas against the certified T = 1 reference "
                f"({ref_path.name}); "
                "noise floor: two disjoint n-subsets of the reference. Motivates the chain rule of "
                "methods.compare.pt_chains_for_budget (docs/pita.md, 'the PT baseline was starved')."),
                "rows": rows})


if __name__ == "__main__":
    sys.exit(run_cli(main))
